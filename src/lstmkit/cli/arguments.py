"""Argument types and output-folder checks shared by the subcommands."""

import argparse
import datetime
import pathlib


def positive_int(text: str) -> int:
    """Parses a command-line integer that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {value}"
        )
    return value


def positive_float(text: str) -> float:
    """Parses a command-line number that must be positive and finite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number, got {text!r}"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a positive finite number, got {text}"
        )
    return value


MAX_SEED = 2**32 - 1


def seed_int(text: str) -> int:
    """Parses a seed, an integer in `[0, 2**32 - 1]` as NumPy requires."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer seed, got {text!r}"
        ) from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"expected a seed from 0 to {MAX_SEED}, got {value}"
        )
    return value


def check_out_dir(out: pathlib.Path, report_name: str, overwrite: bool) -> None:
    """Checks that `out` can receive the reports, before any work starts.

    Raises:
        ValueError: `out` is a file, already contains `report_name` without
            `overwrite`, or lies under a path that is not a folder.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--out {out} exists and is not a folder; choose a folder path."
        )
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(
                f"--out {out} is inside {parent}, which is a file; choose a "
                "folder path."
            )
    if (out / report_name).exists() and not overwrite:
        raise ValueError(
            f"--out {out} already contains {report_name}; choose another "
            "folder or pass --overwrite to replace it."
        )


def make_out_dir(out: pathlib.Path) -> None:
    """Creates `out` and its parents.

    Raises:
        ValueError: the folder cannot be created, with the system's reason.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"--out {out} could not be created: {error.strerror}; choose a "
            "writable folder."
        ) from error


def default_out_dir(*parts: str) -> pathlib.Path:
    """Returns `runs/<parts joined by ->-<date>-<time>`."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / "-".join([*parts, stamp])


def apply_bucketing(args: argparse.Namespace, task_data: object) -> None:
    """Applies `--no-bucketing` to a tagging task.

    Raises:
        ValueError: `--no-bucketing` was given for a task without sentences.
    """
    if not args.no_bucketing:
        return
    if not hasattr(task_data, "bucketing"):
        raise ValueError(
            f"--no-bucketing applies to the tagging tasks (chunking, pos); "
            f"--task {args.task} does not bucket its batches."
        )
    task_data.bucketing = False
