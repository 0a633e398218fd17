"""TFLite export in two variants: fused sequence-LSTM ops, and the loop.

* `fused`: the model with each standard lstmkit LSTM replaced by
  `lstmkit.export.sequence_lstm.SequenceLSTM`, whose composite function
  the converter turns into `UNIDIRECTIONAL_SEQUENCE_LSTM`. A
  `Bidirectional` becomes two such ops, because TensorFlow 2.21's converter
  has no rule that emits `BIDIRECTIONAL_SEQUENCE_LSTM` from a TensorFlow
  graph.
* `loop`: the model as it is, with lstmkit's `autodiff` kernel, which the
  converter turns into a `WHILE` op per direction.

Both have a fixed `[batch, time, depth]` input. The fused op needs a
fixed batch size, because the converter requires static shapes for the
initial states.
"""

import collections
import dataclasses
import logging
import pathlib
import tempfile
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lstmkit.export import serving
from lstmkit.export.models import recurrent_layers
from lstmkit.export.probe import (
    Measurement,
    Probe,
    max_difference,
    median_latency_ms,
)
from lstmkit.export.sequence_lstm import replace_lstm_layers

logger = logging.getLogger(__name__)

FUSED_OPS = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM")
LOOP_OP = "WHILE"


@dataclasses.dataclass
class Variant:
    """One converted TFLite model.

    Attributes:
        name: "fused" or "loop".
        content: the flatbuffer.
        ops: how often each builtin op occurs.
        path: where it was written.
    """

    name: str
    content: bytes
    ops: collections.Counter
    path: pathlib.Path | None = None

    @property
    def fused(self) -> bool:
        """Whether the converter produced a fused sequence-LSTM op."""
        return any(self.ops[op] for op in FUSED_OPS)

    def describe_ops(self) -> str:
        """Returns the recurrent ops and the op total as one line."""
        parts = [
            f"{op} x{self.ops[op]}"
            for op in FUSED_OPS + (LOOP_OP,)
            if self.ops[op]
        ]
        parts.append(f"{sum(self.ops.values())} ops in all")
        return ", ".join(parts)


def convert(
    model: keras.Model, depth: int, batch: int, time_steps: int
) -> bytes:
    """Converts `model` with a fixed input shape to a TFLite flatbuffer.

    The converter reads a SavedModel, because only its SavedModel importer
    keeps the composite LSTM functions whole until the fusion pass runs.

    Raises:
        RuntimeError: the converter failed. The message contains its
            first error line.
    """
    serve = serving.serving_function(model, depth, batch, time_steps)
    with tempfile.TemporaryDirectory(prefix="lstmkit-tflite-") as folder:
        serving.write_saved_model(model, serve, pathlib.Path(folder))
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        try:
            return converter.convert()
        # TensorFlow 2.21 has no public name for the converter's
        # ConverterError, which subclasses Exception directly.
        except Exception as error:  # noqa: BLE001
            if type(error).__name__ != "ConverterError":
                raise
            first_line = str(error).strip().splitlines()[0]
            raise RuntimeError(
                f"the TFLite converter failed: {first_line}"
            ) from error


def export(
    model: keras.Model,
    depth: int,
    path: pathlib.Path,
    batch: int,
    time_steps: int,
) -> tuple[list[Variant], list[str]]:
    """Writes the fused variant to `path` and the loop variant beside it.

    When no layer can be fused, or the converter does not fuse, the loop
    variant goes to `path`. Otherwise it goes to `<stem>.loop.tflite`.

    Returns:
        `(variants, notes)`: the written variants, the one at `path`
        first, and sentences on layers left as loops and on a variant
        that failed to convert.

    Raises:
        RuntimeError: both variants failed to convert.
    """
    try:
        clone, reasons = replace_lstm_layers(model)
    except ValueError as error:
        clone, reasons = None, [str(error)]
    notes = [f"left as a loop: {reason}" for reason in reasons]
    replaced = clone is not None and len(reasons) < len(
        recurrent_layers(model)
    )

    variants = []
    if replaced:
        try:
            content = convert(clone, depth, batch, time_steps)
        except RuntimeError as error:
            notes.append(f"fused variant not written: {error}")
        else:
            variants.append(Variant("fused", content, op_counts(content)))
    try:
        content = convert(model, depth, batch, time_steps)
    except RuntimeError as error:
        if not variants:
            raise
        notes.append(f"loop variant not written: {error}")
    else:
        variants.append(Variant("loop", content, op_counts(content)))

    if variants[0].name == "fused" and not variants[0].fused:
        notes.append(
            "the converter produced no fused LSTM op for the composite "
            "functions"
        )
        variants.reverse()
    variants[0].path = path
    for variant in variants[1:]:
        variant.path = path.with_suffix(f".{variant.name}.tflite")
    for variant in variants:
        variant.path.write_bytes(variant.content)
        logger.info("wrote %s (%s)", variant.path, variant.describe_ops())
    return variants, notes


def op_counts(content: bytes) -> collections.Counter:
    """Counts the builtin ops of a TFLite flatbuffer."""
    interpreter = make_interpreter(content)
    # NOTE: `_get_ops_details` is private in TensorFlow 2.21's interpreter,
    # but the public Analyzer only prints its report.
    return collections.Counter(
        op["op_name"] for op in interpreter._get_ops_details()
    )


def make_interpreter(content: bytes) -> Any:
    """Creates an interpreter, from `ai-edge-litert` when it is installed.

    TensorFlow 2.21 still ships `tf.lite.Interpreter` but marks it as
    deprecated in favor of LiteRT's, which has the same interface.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is deprecated.*")
            interpreter = tf.lite.Interpreter(model_content=content)
    else:
        interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    return interpreter


def run(content: bytes, probe: Probe, runs: int) -> tuple[np.ndarray, float]:
    """Runs the probe in the TFLite interpreter.

    Returns:
        `(outputs, median latency in ms)`.
    """
    runner = make_interpreter(content).get_signature_runner(
        serving.SIGNATURE
    )
    arguments = {
        serving.INPUTS: probe.inputs,
        serving.LENGTHS: probe.lengths,
    }
    outputs = runner(**arguments)[serving.OUTPUTS].copy()
    latency = median_latency_ms(lambda: runner(**arguments), runs)
    return outputs, latency


def measure(
    variant: Variant, probe: Probe, expected: np.ndarray, runs: int
) -> Measurement:
    """Compares a variant's interpreter outputs with TensorFlow's."""
    outputs, latency = run(variant.content, probe, runs)
    return Measurement(
        runtime=f"tflite ({variant.name})",
        path=variant.path,
        size_bytes=len(variant.content),
        latency_ms=latency,
        difference=max_difference(outputs, expected),
        details=variant.describe_ops(),
    )
