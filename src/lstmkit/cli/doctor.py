"""`lstmkit doctor`: find why a hand-written LSTM differs from the built-in.

TARGET names an adapter (`lstmkit.doctor.FunctionAdapter`,
`KerasLayerAdapter` or `ModuleAdapter`) as `module:attribute` (imported
with the current folder on the path) or `path/to/file.py:attribute`. The
attribute may also be a function without arguments that returns the
adapter.

This module imports `lstmkit.doctor` only inside functions, because that
package loads TensorFlow, and `lstmkit` configures TensorFlow's logging
after parsing the command line.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import pathlib
import sys
from typing import Any

from lstmkit.cli.arguments import seed_int

EXIT_ERROR = 2


class TargetError(Exception):
    """TARGET could not be imported or is not an adapter."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `doctor` subcommand."""
    parser = subparsers.add_parser(
        "doctor",
        help="find why your own LSTM or BiLSTM differs from the built-in",
        description=(
            "Run independent probes on your LSTM or BiLSTM (gate order, "
            "forget bias, initialization, padding, BiLSTM reversal, state "
            "order, first diverging step) and print a table of the checks "
            "with their evidence and fix. Exits with 0 when every check "
            "passes, 1 when a fault is found and 2 when the code could not "
            "be run. docs/doctor.md describes the adapter contract."
        ),
    )
    parser.add_argument(
        "target", metavar="TARGET",
        help="the adapter around your code, as module:attribute or "
        "path/to/file.py:attribute",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print the report as JSON instead of a table",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0,
        help="seed of the probes' random weights and inputs (default: 0)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Loads the target, diagnoses it and prints the report."""
    try:
        adapter = load_target(args.target)
    except TargetError as error:
        print(f"lstmkit doctor: {error}", file=sys.stderr)
        return EXIT_ERROR

    from lstmkit import doctor

    # The probes run lstmkit's reference cells many times, and the kernel
    # choice that lstmkit.kernels logs for each at INFO is not about the
    # user's code.
    logging.getLogger("lstmkit.kernels").setLevel(logging.WARNING)
    report = doctor.diagnose(adapter, seed=args.seed)
    if args.json:
        print(report.to_json())
    else:
        print(report.format_table())
    return report.exit_status


def load_target(target: str) -> Any:
    """Imports the adapter named by `module:attribute` or `file.py:attribute`.

    Raises:
        TargetError: the target is malformed, cannot be imported, lacks the
            attribute, or is not an adapter.
    """
    from lstmkit import doctor

    location, _, attribute = target.rpartition(":")
    if not location or not attribute:
        raise TargetError(
            f"Invalid TARGET {target!r}: expected module:attribute or "
            "path/to/file.py:attribute."
        )
    module = _import(location)
    if not hasattr(module, attribute):
        raise TargetError(
            f"{location} has no attribute {attribute!r}. Name the adapter "
            "that wraps your code."
        )
    value = getattr(module, attribute)
    if not isinstance(value, doctor.Adapter) and callable(value):
        try:
            value = value()
        except Exception as error:  # noqa: BLE001 - any failure of user code
            raise TargetError(
                f"{target}() raised {type(error).__name__}: {error}"
            ) from error
    if not isinstance(value, doctor.Adapter):
        raise TargetError(
            f"{target} is of type {type(value).__name__}, not an "
            "adapter. Wrap your code in lstmkit.doctor.FunctionAdapter, "
            "KerasLayerAdapter or ModuleAdapter."
        )
    return value


def _import(location: str) -> Any:
    if location.endswith(".py"):
        path = pathlib.Path(location)
        if not path.is_file():
            raise TargetError(f"File {location} not found.")
        name, root = _module_name(path.resolve())
    else:
        name, root = location, pathlib.Path(os.getcwd())
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - any failure of user code
        raise TargetError(
            f"Importing {location} failed: {type(error).__name__}: {error}"
        ) from error
    if location.endswith(".py"):
        _check_imported_file(module, name, path.resolve())
    return module


def _check_imported_file(
    module: Any, name: str, path: pathlib.Path
) -> None:
    """Rejects a module that is not the requested file.

    `import_module` returns a module already imported under the same name
    (a file called random.py gets the standard library's `random`).
    """
    loaded = getattr(module, "__file__", None)
    if loaded is not None and pathlib.Path(loaded).resolve() == path:
        return
    raise TargetError(
        f"{path} is imported as module {name!r}, but that name is already "
        f"taken by {loaded or 'a built-in module'}. Rename the file (or "
        "its package folder) so that its module name is unique."
    )


def _module_name(path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """Finds the dotted module name of a file and the folder to import from.

    A file inside packages (folders with `__init__.py`) is imported as part
    of them, so that its relative imports work.
    """
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder
