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

LOG_LEVEL_VARIABLE = "LSTMKIT_LOG_LEVEL"


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


if __name__ == "__main__":
    sys.exit(main())
