"""ONNX export through tf2onnx, run in onnxruntime.

The exported graph is the model with each standard lstmkit LSTM replaced
by `lstmkit.export.sequence_lstm.SequenceLSTM`. tf2onnx turns its loop
into an ONNX `Loop` with dynamic batch and time.

Layers that cannot be replaced keep lstmkit's own `autodiff` loop, which
tf2onnx 1.17.0 does not convert correctly. That loop stacks the step
outputs in a `tf.cond` (for sequences of zero steps), which tf2onnx
rejects. With a fixed number of steps there is no `tf.cond`, but tf2onnx
then feeds the loop's int32 step limit with the int64 trip count of the
ONNX `Loop`, which onnxruntime rejects. Such models raise an error that
names the layers.
"""

import logging
import pathlib
from typing import Any

import keras
import numpy as np

from lstmkit.export import serving
from lstmkit.export.models import ExportError
from lstmkit.export.probe import (
    Measurement,
    Probe,
    max_difference,
    median_latency_ms,
)
from lstmkit.export.sequence_lstm import replace_lstm_layers

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def export(
    model: keras.Model, depth: int, path: pathlib.Path, opset: int
) -> None:
    """Writes `model` as an ONNX file with dynamic batch and time.

    Raises:
        ExportError: an lstmkit layer cannot be replaced by the export
            layer, or the model is subclassed.
    """
    tf2onnx = _import_tf2onnx()
    try:
        clone, reasons = replace_lstm_layers(model)
    except ValueError as error:
        raise ExportError(f"cannot export {model.name} to ONNX: {error}")
    if reasons:
        raise ExportError(
            "cannot export to ONNX: tf2onnx 1.17.0 cannot convert lstmkit's "
            "own loop, and these layers do not run the standard LSTM step "
            f"of the export layer: {'; '.join(reasons)}."
        )
    serve = serving.serving_function(clone, depth)
    tf2onnx.convert.from_function(
        serve,
        input_signature=serve.input_signature,
        opset=opset,
        output_path=str(path),
    )
    logger.info("wrote ONNX model %s (opset %d)", path, opset)


def _import_tf2onnx():
    try:
        import onnxruntime  # noqa: F401 - checked here, used by `run`
        import tf2onnx
    except ImportError as error:
        raise ExportError(
            f"ONNX export needs tf2onnx and onnxruntime ({error}). Install "
            "them with pip install 'lstmkit[onnx]'."
        ) from error
    return tf2onnx


def make_session(path: pathlib.Path) -> Any:
    """Opens `path` in onnxruntime on the CPU."""
    import onnxruntime

    return onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )


def run(
    path: pathlib.Path, probe: Probe, runs: int
) -> tuple[np.ndarray, float]:
    """Runs the probe in onnxruntime.

    Returns:
        `(outputs, median latency in ms)`.
    """
    session = make_session(path)
    feeds = {serving.INPUTS: probe.inputs, serving.LENGTHS: probe.lengths}
    outputs = session.run([serving.OUTPUTS], feeds)[0]
    latency = median_latency_ms(
        lambda: session.run([serving.OUTPUTS], feeds), runs
    )
    return outputs, latency


def measure(
    path: pathlib.Path, probe: Probe, expected: np.ndarray, runs: int
) -> Measurement:
    """Compares onnxruntime's outputs with TensorFlow's."""
    import onnx

    outputs, latency = run(path, probe, runs)
    opset = onnx.load(str(path)).opset_import[0].version
    return Measurement(
        runtime="onnxruntime",
        path=path,
        size_bytes=path.stat().st_size,
        latency_ms=latency,
        difference=max_difference(outputs, expected),
        details=f"opset {opset}",
    )
