"""Atomic file writes shared by every command that writes reports."""

import os
import pathlib
import tempfile
from typing import BinaryIO, Callable


def atomic_write(
    path: pathlib.Path, write: Callable[[BinaryIO], None]
) -> None:
    """Writes a file through a temporary file in its folder and a rename.

    `write` fills the open temporary file. The file is flushed to disk and
    then renamed over `path`, so a reader sees the old or the new content,
    never a part, even if the process is killed. If `write` raises, the
    temporary file is removed and `path` is left as it was.
    """
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file readable by its owner only, so the
        # report is given the permissions that open() would give it.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    # The umask can only be read by setting it, so set it back at once.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(text: str, path: pathlib.Path) -> None:
    """Writes UTF-8 text to `path` atomically (see `atomic_write`)."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
