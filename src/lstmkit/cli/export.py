"""`lstmkit export`: write a model as SavedModel, TFLite or ONNX and check it.

The model is a `.keras` file (`--model`) or, without one, a small demo
tagger on an lstmkit LSTM or BiLSTM. The command writes the format, runs
it in its own runtime on a seeded probe batch with variable lengths and
prints the max abs output difference from TensorFlow, the file sizes and
the median latencies.

This module imports TensorFlow only inside functions, because `lstmkit`
configures TensorFlow's logging after parsing the command line.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import shutil
import sys
from typing import TYPE_CHECKING

from lstmkit.cli.arguments import positive_int, seed_int

if TYPE_CHECKING:
    from lstmkit.export import ExportResult

FORMATS = ("savedmodel", "tflite", "onnx")
SUFFIXES = {"savedmodel": "_savedmodel", "tflite": ".tflite", "onnx": ".onnx"}
# The exit status for invalid input, as argparse uses.
INVALID_INPUT = 2
MISMATCH = 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `export` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export a model with lstmkit layers to SavedModel, TFLite or "
        "ONNX",
        description=(
            "Export a .keras model with lstmkit layers (or a demo model) to "
            "a SavedModel folder, a .tflite file or an .onnx file whose "
            "signature takes inputs [batch, time, depth] and lengths "
            "[batch]. The export is run in its own runtime on a seeded "
            "probe batch with variable lengths, and the largest absolute "
            "difference from TensorFlow's outputs is printed with file "
            "sizes and median latencies. Exits with 0 when the difference "
            "is at most 1e-4, 1 when it is larger, and 2 on invalid input."
        ),
    )
    parser.add_argument(
        "--format", dest="export_format", choices=FORMATS, required=True,
        help="savedmodel (a folder, dynamic batch and time), tflite (fixed "
        "batch and time, fused sequence-LSTM ops where possible) or onnx "
        "(dynamic batch and time, run with onnxruntime)",
    )
    parser.add_argument(
        "--model", type=pathlib.Path, default=None,
        help=".keras model file with lstmkit.layers.LSTM, RNN or "
        "Bidirectional layers (default: a demo model built from the "
        "options below)",
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=None,
        help="where to write (default: the model's name with the format's "
        "suffix, in the current folder)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace --out if it exists",
    )
    parser.add_argument(
        "--units", type=positive_int, default=8,
        help="demo model: LSTM units per direction (default: 8)",
    )
    parser.add_argument(
        "--input-depth", type=positive_int, default=4,
        help="demo model: features per time step (default: 4)",
    )
    parser.add_argument(
        "--bidirectional", action="store_true",
        help="demo model: a BiLSTM instead of an LSTM",
    )
    parser.add_argument(
        "--semantics", choices=("keras", "tf1"), default="keras",
        help="demo model: weights and masking rules of the lstmkit LSTM "
        "(default: keras)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=4,
        help="rows of the probe batch, and the fixed batch size of a "
        "TFLite model (default: 4)",
    )
    parser.add_argument(
        "--time-steps", type=positive_int, default=9,
        help="time steps of the probe batch, and the fixed number of steps "
        "of a TFLite model (default: 9)",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0,
        help="seed of the probe batch and of the demo model's weights "
        "(default: 0)",
    )
    parser.add_argument(
        "--runs", type=positive_int, default=20,
        help="timed calls per runtime, whose median is printed (default: 20)",
    )
    parser.add_argument(
        "--opset", type=positive_int, default=17,
        help="onnx: the ONNX opset (default: 17)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Exports the model and prints the comparison.

    Returns:
        0 when every exported file matches TensorFlow within 1e-4, 1 when
        one does not, and 2 on invalid input.
    """
    import tensorflow as tf

    from lstmkit.export import MAX_DIFFERENCE, ExportError

    # tf2onnx logs every conversion step at INFO level.
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    try:
        model, source = _model(args)
        out = _out_path(args, model.name)
        result = _export(model, out, args)
    except (ExportError, OSError, tf.errors.OpError) as error:
        print(f"lstmkit export: error: {error}", file=sys.stderr)
        return INVALID_INPUT
    except RuntimeError as error:
        # A runtime or a converter failed on a valid model.
        print(f"lstmkit export: error: {error}", file=sys.stderr)
        return MISMATCH

    print_report(result, source, args)
    worst = result.max_difference
    if not worst <= MAX_DIFFERENCE:
        print(
            f"lstmkit export: error: the exported outputs differ from "
            f"TensorFlow's by up to {worst:.3g}, more than "
            f"{MAX_DIFFERENCE:g}. Do not use the exported file.",
            file=sys.stderr,
        )
        return MISMATCH
    return 0


def _model(args: argparse.Namespace):
    """Returns `(model, description of its source)`."""
    from lstmkit.export import build_demo_model, load_model

    if args.model is not None:
        return load_model(args.model), str(args.model)
    model = build_demo_model(
        args.units,
        args.input_depth,
        args.bidirectional,
        semantics=args.semantics,
        seed=args.seed,
    )
    kind = "BiLSTM" if args.bidirectional else "LSTM"
    description = (
        f"demo {kind} ({args.semantics} semantics), {args.units} units, "
        f"input depth {args.input_depth}, Dense(3) on every step"
    )
    return model, description


def _out_path(args: argparse.Namespace, name: str) -> pathlib.Path:
    """Returns `--out` or the default, after checking it can be written."""
    from lstmkit.export import ExportError

    out = args.out
    if out is None:
        out = pathlib.Path(name + SUFFIXES[args.export_format])
    if out.exists() and not args.overwrite:
        raise ExportError(
            f"{out} already exists. Choose another --out or pass "
            "--overwrite to replace it."
        )
    if out.exists() and out.is_dir() != (args.export_format == "savedmodel"):
        kind = "folder" if out.is_dir() else "file"
        raise ExportError(
            f"--out {out} is a {kind}, but a {args.export_format} export "
            "writes a " + ("folder." if kind == "file" else "file.")
        )
    if not out.parent.is_dir():
        raise ExportError(
            f"the folder of --out, {out.parent}, does not exist."
        )
    if out.is_dir():
        shutil.rmtree(out)
    return out


def _export(model, out: pathlib.Path, args: argparse.Namespace):
    from lstmkit.export import export_model

    return export_model(
        model,
        args.export_format,
        out,
        batch=args.batch_size,
        time_steps=args.time_steps,
        seed=args.seed,
        runs=args.runs,
        opset=args.opset,
    )


def print_report(
    result: ExportResult, source: str, args: argparse.Namespace
) -> None:
    """Prints the model, the probe and one row per runtime."""
    print(f"model   {source}")
    print(f"format  {result.format}")
    print(f"probe   {result.probe.describe()}")
    print()
    rows = [("runtime", "file", "size", "median latency", "max abs diff")]
    for measurement in result.measurements:
        rows.append(
            (
                measurement.runtime,
                str(measurement.path) if measurement.path else "-",
                _size(measurement.size_bytes),
                f"{measurement.latency_ms:.3f} ms",
                f"{measurement.difference:.3g}",
            )
        )
    _print_table(rows)

    details = [m for m in result.measurements if m.details]
    if details or result.notes:
        print()
    for measurement in details:
        print(f"{measurement.runtime}: {measurement.details}")
    for note in result.notes:
        print(note)


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "-"
    return f"{size_bytes / 1024:.1f} KiB"


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [value.ljust(width) for value, width in zip(row, widths)]
        print("  ".join(cells).rstrip())
