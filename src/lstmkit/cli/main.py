"""The `lstmkit` command: one entry point with subcommands."""

import argparse
import logging
import os
import sys
import warnings

# Set before TensorFlow is imported: hides the C++ INFO and WARNING lines
# that TensorFlow logs after start-up. The lines it prints while loading
# (oneDNN and CUDA notes) ignore this variable in TensorFlow 2.21.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lstmkit.cli import bench, compare, convert, env, pitfalls  # noqa: E402
from lstmkit.cli import export  # noqa: E402
from lstmkit.cli import doctor  # noqa: E402

LOG_LEVEL_VARIABLE = "LSTMKIT_LOG_LEVEL"
# Exit status for invalid input, as argparse uses for invalid arguments.
EXIT_INVALID_INPUT = 2
# Exit status for an exception that lstmkit did not expect (a bug).
EXIT_INTERNAL_ERROR = 1

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Builds the parser of `lstmkit` and all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="lstmkit",
        description=(
            "LSTM and BiLSTM for TensorFlow 2 that match the built-ins "
            "exactly."
        ),
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands"
    )
    subparsers.required = True
    compare.add_parser(subparsers)
    convert.add_parser(subparsers)
    pitfalls.add_parser(subparsers)
    env.add_parser(subparsers)
    bench.add_parser(subparsers)
    export.add_parser(subparsers)
    doctor.add_parser(subparsers)
    return parser


def configure_logging() -> None:
    """Logs to stderr at the level in `$LSTMKIT_LOG_LEVEL` (default INFO)."""
    level = os.environ.get(LOG_LEVEL_VARIABLE, "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # TensorFlow's own Python logger repeats deprecation notices about the
    # v1 functions that `compare` uses on purpose as the reference.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore", message=".*layer.updates.*", category=UserWarning
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    configure_logging()
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("lstmkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _close_broken_stdout()
    except Exception as error:  # noqa: BLE001 - no traceback reaches a user
        return report_error(error)


def report_error(error: Exception) -> int:
    """Prints `error` without a traceback; returns the exit status.

    Invalid input, missing or malformed files and failed file operations
    print `lstmkit: error: <message>` and return `EXIT_INVALID_INPUT`. Any
    other exception is a bug: it prints its type and message and how to
    see the traceback, and returns `EXIT_INTERNAL_ERROR`. With
    `$LSTMKIT_LOG_LEVEL` set to DEBUG the traceback is logged too.
    """
    logger.debug("Traceback of the error:", exc_info=error)
    text = _error_text(error)
    if isinstance(error, _expected_errors()):
        print(f"lstmkit: error: {text}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    print(
        f"lstmkit: internal error: {type(error).__name__}: {text}\n"
        f"This is a bug. Run the command again with "
        f"{LOG_LEVEL_VARIABLE}=DEBUG to print the traceback, and include "
        "it in a bug report.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL_ERROR


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Error types that describe bad input, files or the environment.

    `ValueError` covers `DataFormatError`, `OSError` covers
    `DataNotFoundError` and every failed file operation.
    """
    from lstmkit.convert.formats import ConversionError

    expected: tuple[type[BaseException], ...] = (
        ValueError,
        OSError,
        ConversionError,
    )
    # TensorFlow is imported only by the commands that need it. Its OpError
    # reports invalid tensors and unreadable checkpoints.
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None:
        expected += (tensorflow.errors.OpError,)
    return expected


def _error_text(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        # "Permission denied: out/report.json" without "[Errno 13]".
        names = [error.filename, error.filename2]
        paths = " -> ".join(str(name) for name in names if name is not None)
        return f"{error.strerror}: {paths}"
    # TensorFlow's OpError keeps its message without the op context in
    # `message`.
    text = getattr(error, "message", None) or str(error)
    return text.strip() or "(no message)"


def _close_broken_stdout() -> int:
    """Returns 1 without a message when the reader of stdout went away.

    Pointing stdout at /dev/null keeps Python's final flush at exit from
    printing a second BrokenPipeError.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout has no file descriptor, so nothing is flushed to it.
    finally:
        os.close(devnull)
    return 1


if __name__ == "__main__":
    sys.exit(main())
