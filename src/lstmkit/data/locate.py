"""Locate a data set's files on disk and the errors for missing or bad data.

A data set is searched for in two places, in this order:

1. The ``data_dir`` argument (``--data-dir`` on the command line), which
   names the folder that contains the files themselves.
2. ``$LSTMKIT_DATA/<name>``, where ``$LSTMKIT_DATA`` is a folder with one
   subfolder per data set (``mnist``, ``conll2000``, ``japanese-vowels``,
   ``treebank-pos``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

DATA_ENV_VAR = "LSTMKIT_DATA"

_GZIP_SUFFIX = ".gz"


class DataNotFoundError(FileNotFoundError):
    """A data set that is in none of the searched places.

    Attributes:
        searched: One line per place searched, each with the reason it was
            rejected, in search order.
    """

    def __init__(self, message: str, searched: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.searched = tuple(searched)


class DataFormatError(ValueError):
    """A data file whose contents do not match its expected format."""


def resolve_file(folder: Path, name: str) -> Path | None:
    """Return the path of the required file ``name`` in ``folder``.

    A name that ends in ``.gz`` also matches the uncompressed file, which is
    the same name without ``.gz``. The exact name is tried first.

    Args:
        folder: Folder to look in.
        name: Required file name, for example ``train-labels-idx1-ubyte.gz``.

    Returns:
        The path of the first matching regular file, or None if none exists.
    """
    candidates = [name]
    if name.endswith(_GZIP_SUFFIX):
        candidates.append(name[: -len(_GZIP_SUFFIX)])

    for candidate in candidates:
        path = folder / candidate
        if path.is_file():
            return path
    return None


def find_data_dir(
    name: str,
    required: list[str],
    data_dir: str | os.PathLike | None = None,
    hint: str | None = None,
) -> Path:
    """Find the folder that contains all of a data set's required files.

    If ``data_dir`` is given, it is the only place searched: a missing
    folder or file there raises at once instead of falling back to
    ``$LSTMKIT_DATA``. Otherwise ``$LSTMKIT_DATA/<name>`` is searched.

    Each entry of ``required`` is a file name. An entry that ends in ``.gz``
    is also satisfied by the uncompressed file (the name without ``.gz``),
    so IDX files may be stored either way. Use ``resolve_file`` to get the
    path of the file that matched.

    Args:
        name: Data set name, which is also its subfolder of
            ``$LSTMKIT_DATA``, for example ``mnist``.
        required: File names that the folder must contain.
        data_dir: Folder that contains the files themselves, or None to
            search ``$LSTMKIT_DATA/<name>``.
        hint: Instructions for getting the data, appended to the error
            message. None lists the required files instead.

    Returns:
        The folder that contains every required file.

    Raises:
        DataNotFoundError: No searched folder contains every required file.
            The message lists each place searched with the reason it was
            rejected, then how to get the data.
    """
    if data_dir is not None:
        return _check_given_dir(name, required, Path(data_dir), hint)

    folder, searched = _search_env_dir(name, required)
    if folder is None:
        raise not_found_error(name, required, searched, hint)

    logger.info("Found %s data in %s (from $%s)", name, folder, DATA_ENV_VAR)
    return folder


def not_found_error(
    name: str,
    required: Sequence[str],
    searched: Sequence[str],
    hint: str | None = None,
) -> DataNotFoundError:
    """Build the error for a data set that is in none of the searched places.

    Args:
        name: Data set name, for example ``mnist``.
        required: File names the data set needs.
        searched: One line per place searched, with the reason it was
            rejected.
        hint: Instructions for getting the data. None lists the required
            files instead.

    Returns:
        The error, ready to raise.
    """
    places = "\n".join(f"  - {line}" for line in searched)
    message = (
        f"{name} data not found. Searched:\n{places}\n"
        f"{_how_to_get(name, required, hint)}"
    )
    return DataNotFoundError(message, searched)


def _check_given_dir(
    name: str, required: list[str], folder: Path, hint: str | None
) -> Path:
    folder = folder.expanduser()
    reason = _reject_reason(folder, required)
    if reason is None:
        logger.info("Found %s data in %s (from data_dir)", name, folder)
        return folder

    place = f"data_dir {folder.absolute()}: {reason}"
    message = (
        f"{name} data not found in data_dir {folder.absolute()}: {reason}.\n"
        f"{_how_to_get(name, required, hint)}"
    )
    raise DataNotFoundError(message, [place])


def _search_env_dir(
    name: str, required: list[str]
) -> tuple[Path | None, list[str]]:
    label = f"${DATA_ENV_VAR}/{name}"
    root = os.environ.get(DATA_ENV_VAR)
    if root is None:
        return None, [f"{label}: {DATA_ENV_VAR} is not set"]
    if not root:
        return None, [f"{label}: {DATA_ENV_VAR} is set but empty"]

    folder = Path(root).expanduser() / name
    reason = _reject_reason(folder, required)
    if reason is None:
        return folder, []
    return None, [f"{label} ({folder.absolute()}): {reason}"]


def _reject_reason(folder: Path, required: Sequence[str]) -> str | None:
    """Return why ``folder`` cannot be used, or None when it can."""
    if not folder.exists():
        return "folder does not exist"
    if not folder.is_dir():
        return "not a folder"

    missing = [file for file in required if resolve_file(folder, file) is None]
    if missing:
        return "missing " + ", ".join(missing)
    return None


def _how_to_get(name: str, required: Sequence[str], hint: str | None) -> str:
    if hint is None:
        hint = f"The {name} data set needs these files: {', '.join(required)}."
    return (
        f"{hint}\n"
        f"Pass the folder that contains the files with --data-dir "
        f"(data_dir= in Python), or set ${DATA_ENV_VAR} to a folder with a "
        f"'{name}' subfolder that contains them."
    )
