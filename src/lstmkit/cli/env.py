"""`lstmkit env`: print the versions and hardware a bug report needs."""

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `env` subcommand."""
    parser = subparsers.add_parser(
        "env",
        help="print versions of lstmkit, TensorFlow, Keras and the hardware",
        description="Print the versions and hardware a bug report needs.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Prints one `name: version` line per component."""
    from lstmkit.compare.report import versions

    for name, value in versions().items():
        print(f"{name}: {value}")
    return 0
