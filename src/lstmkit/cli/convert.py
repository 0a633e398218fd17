"""`lstmkit convert`: move LSTM weights between formats and check them.

SOURCE and TARGET formats are guessed from the path unless `--from` /
`--to` names them. `lstmkit.convert.formats` describes the formats.

A TF1 checkpoint stores neither `forget_bias` nor clipping or the
activation, because they are constructor arguments of the v1 cell. The
command reads a TF1 source as a cell with `--forget-bias`, no clipping and
tanh, and prints the constructor arguments of a TF1 target.

After writing, the command reads the target back and runs both files on
one seeded random probe batch with `lstmkit.convert.probe`.

This module imports `lstmkit.convert` only inside functions, because
that package loads TensorFlow, and `lstmkit` configures TensorFlow's
logging after parsing the command line.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from lstmkit.cli.arguments import seed_int

if TYPE_CHECKING:
    from lstmkit.convert.formats import Layers, LoadedModel

FORMATS = ("tf1", "keras", "torch")
DEFAULT_FORGET_BIAS = 1.0
# Largest absolute output difference accepted between source and target.
# The small float32 models of tests/test_cli_convert.py differ by about 1e-7.
MAX_DIFFERENCE = 1e-4


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `convert` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="convert LSTM weights between TF1, Keras and PyTorch files",
        description=(
            "Convert the weights of one LSTM or BiLSTM from SOURCE to "
            "TARGET, then run both files on the same random probe batch "
            "and print the largest absolute output difference. Formats: "
            "tf1 (a TF1 checkpoint of tf.compat.v1.nn.dynamic_rnn or "
            "bidirectional_dynamic_rnn with the v1 LSTMCell), keras (a "
            ".keras model file) and torch (an nn.LSTM state dict as .npz, "
            ".pt or .pth). An nn.LSTM with num_layers > 1 converts only to "
            "another state dict. The target is read back and run with its "
            "own framework. Exits with 0 when the difference is at most "
            f"{MAX_DIFFERENCE:g}, 1 when it is larger, and 2 on invalid "
            "input."
        ),
    )
    parser.add_argument(
        "source", type=pathlib.Path, metavar="SOURCE",
        help="TF1 checkpoint prefix or folder, .keras file, or .npz, .pt "
        "or .pth state dict",
    )
    parser.add_argument(
        "target", type=pathlib.Path, metavar="TARGET",
        help=".keras file, .npz, .pt or .pth state dict, or a TF1 "
        "checkpoint prefix (a .ckpt name, or any name with --to tf1)",
    )
    parser.add_argument(
        "--from", dest="source_format", choices=FORMATS, default=None,
        help="format of SOURCE (default: guessed from the path)",
    )
    parser.add_argument(
        "--to", dest="target_format", choices=FORMATS, default=None,
        help="format of TARGET (default: guessed from the extension)",
    )
    parser.add_argument(
        "--prefix", default=None,
        # The scopes are TF1_SCOPE and TF1_BIDIRECTIONAL_SCOPE of
        # lstmkit.convert.formats, written out because importing that
        # module loads TensorFlow.
        help="tf1 source: variable scope of the cell, such as "
        "rnn/lstm_cell, or of a bidirectional RNN, such as "
        "bidirectional_rnn (default: whichever of the two the "
        "checkpoint has). torch source: key prefix of the nn.LSTM module "
        "in a larger state dict, such as encoder.lstm (default: the only "
        "module with a weight_ih_l0 key)",
    )
    parser.add_argument(
        "--forget-bias", type=_finite_float, default=DEFAULT_FORGET_BIAS,
        help="forget_bias of the v1 LSTMCell on the tf1 side (default: "
        f"{DEFAULT_FORGET_BIAS}, the v1 default). A TF1 checkpoint does not "
        "store it, so pass the value a tf1 source was built with, and build "
        "the v1 cell of a tf1 target with this value. Keras and PyTorch "
        "keep the whole bias in their weights, so conversions without a "
        "tf1 side give the same outputs with any value",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace TARGET if it exists",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0,
        help="seed of the random probe batch (default: 0)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Converts SOURCE to TARGET and compares their outputs.

    Returns:
        0 when the outputs match within `MAX_DIFFERENCE`, 1 when they do
        not, and 2 on invalid input.
    """
    import tensorflow as tf

    from lstmkit.convert.formats import ConversionError, error_message

    try:
        source, target, differences = _convert(args)
    except (ConversionError, ValueError, OSError, tf.errors.OpError) as error:
        print(
            f"lstmkit convert: error: {error_message(error)}",
            file=sys.stderr,
        )
        return 2

    print_report(source, target, differences, args)
    worst = differences["all"]
    if not worst <= MAX_DIFFERENCE:
        print(
            f"lstmkit convert: error: the outputs of {args.target} differ "
            f"from those of {args.source} by up to {worst:.3g}, more than "
            f"{MAX_DIFFERENCE:g}. The target was written but does not "
            "compute what the source does. Do not use it.",
            file=sys.stderr,
        )
        return 1
    return 0


def _convert(
    args: argparse.Namespace,
) -> tuple[LoadedModel, LoadedModel, dict[str, Any]]:
    """Writes TARGET from SOURCE, reads it back and compares the outputs.

    Returns:
        `(source, target, differences)`, with the differences of
        `compare_outputs`.
    """
    from lstmkit.convert.formats import (
        guess_source_format,
        guess_target_format,
        options_not_stored,
    )
    from lstmkit.convert.loading import load_model
    from lstmkit.convert.probe import compare_outputs
    from lstmkit.convert.saving import save_model

    source_format = guess_source_format(args.source, args.source_format)
    target_format = guess_target_format(args.target, args.target_format)
    _check_arguments(args, source_format)
    _check_target_path(args, target_format)

    source = load_model(
        source_format, args.source, args.prefix, args.forget_bias
    )
    save_model(target_format, source.layers, args.target, args.overwrite)
    target = load_model(
        target_format,
        args.target,
        None,
        args.forget_bias,
        options_not_stored(source.first_cell),
    )
    differences = compare_outputs(source, target, args.seed)
    return source, target, differences


def _check_arguments(args: argparse.Namespace, source_format: str) -> None:
    from lstmkit.convert.formats import ConversionError

    if args.prefix is not None and source_format == "keras":
        raise ConversionError(
            "--prefix selects a TF1 variable scope or a PyTorch key prefix, "
            "but SOURCE is a .keras file, whose first LSTM layer is used."
        )


def _check_target_path(args: argparse.Namespace, target_format: str) -> None:
    """Rejects a TARGET that exists (without `--overwrite`) or is SOURCE."""
    from lstmkit.convert.formats import ConversionError, target_files

    if args.source.resolve() == args.target.resolve():
        raise ConversionError(
            f"SOURCE and TARGET are the same path, {args.source}. Choose "
            "another TARGET."
        )
    existing = [
        str(path) for path in target_files(args.target, target_format)
        if path.exists()
    ]
    if existing and not args.overwrite:
        raise ConversionError(
            f"TARGET {args.target} already exists ({', '.join(existing)}). "
            "Choose another TARGET or pass --overwrite to replace it."
        )
    for parent in args.target.parents:
        if parent.exists() and not parent.is_dir():
            raise ConversionError(
                f"TARGET {args.target} is inside {parent}, which is a file."
            )


def print_report(
    source: LoadedModel,
    target: LoadedModel,
    differences: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    """Prints the formats, shapes and output differences as a table."""
    probe = differences["probe"]
    print(f"source  {source.format:<6} {source.location}")
    print(f"target  {target.format:<6} {target.location}")
    print(f"model   {_describe_layers(source.layers)}")
    print(f"probe   {list(probe.shape)} {probe.dtype}, seed {args.seed}")
    print()

    rows = [
        ("side", "format", "output shape", "runtime"),
        _runtime_row("source", source, differences["source"]),
        _runtime_row("target", target, differences["target"]),
    ]
    _print_table(rows)
    print()

    rows = [("direction", "max abs diff")]
    for direction in ("forward", "backward"):
        if direction in differences:
            rows.append((direction, f"{differences[direction]:.3g}"))
    rows.append(("all", f"{differences['all']:.3g}"))
    _print_table(rows)

    if target.format == "tf1":
        print()
        print(
            f"To restore {args.target}, run {target.runtime} with the v1 "
            f"cell {_v1_cell_call(target.first_cell)}."
        )


def _runtime_row(
    side: str, model: LoadedModel, outputs: np.ndarray
) -> tuple[str, ...]:
    return (side, model.format, str(list(outputs.shape)), model.runtime)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [value.ljust(width) for value, width in zip(row, widths)]
        print("  ".join(cells).rstrip())


def _describe_layers(layers: Layers) -> str:
    cell = layers[0][0]
    kind = "BiLSTM" if layers[0][1] is not None else "LSTM"
    text = (
        f"{kind}, num_layers {len(layers)}, input_depth {cell.input_depth}, "
        f"num_units {cell.num_units}"
    )
    if cell.num_proj is not None:
        text += f", num_proj {cell.num_proj}"
    if cell.use_peepholes:
        text += ", peepholes"
    return text


def _v1_cell_call(cell: Any) -> str:
    """Formats the v1 `LSTMCell` call that matches a TF1 target."""
    from lstmkit.convert import v1_cell_options

    options = v1_cell_options(cell)
    arguments = [str(options["num_units"])]
    for name in ("use_peepholes", "cell_clip", "num_proj", "proj_clip"):
        if options[name] not in (None, False):
            arguments.append(f"{name}={options[name]!r}")
    arguments.append(f"forget_bias={options['forget_bias']!r}")
    if options["activation"] != "tanh":
        arguments.append(f"activation={options['activation']!r}")
    return f"LSTMCell({', '.join(arguments)})"


def _finite_float(text: str) -> float:
    """Parses a command-line number that must be finite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"expected a finite number, got {text}"
        )
    return value
