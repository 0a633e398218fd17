"""Export models with lstmkit layers to SavedModel, TFLite and ONNX.

`export_model` writes one format and checks it in its own runtime: the
SavedModel reloaded in a fresh Python process, the TFLite file in the
TFLite interpreter, the ONNX file in onnxruntime. Each runs a seeded probe
batch with variable lengths, and the result has the max abs difference
from the model's TensorFlow outputs, the file size and the latency.

Every exported model takes `inputs` (float32 `[batch, time, depth]`) and
`lengths` (int32 `[batch]`) and returns `outputs`, as defined in
`lstmkit.export.serving`.
"""

import dataclasses
import logging
import pathlib

import keras

from lstmkit.export import onnx, saved_model, tflite
from lstmkit.export.models import (
    ExportError,
    build_demo_model,
    check_model,
    input_depth,
    load_model,
)
from lstmkit.export.probe import (
    MAX_DIFFERENCE,
    Measurement,
    Probe,
    make_probe,
    reference_outputs,
)

logger = logging.getLogger(__name__)

FORMATS = ("savedmodel", "tflite", "onnx")

__all__ = [
    "ExportError",
    "ExportResult",
    "FORMATS",
    "MAX_DIFFERENCE",
    "build_demo_model",
    "export_model",
    "load_model",
]


@dataclasses.dataclass
class ExportResult:
    """The files written by `export_model` and their measurements.

    Attributes:
        format: one of `FORMATS`.
        probe: the probe batch.
        measurements: TensorFlow first, then each exported file.
        notes: facts about the export, such as layers left as loops.
    """

    format: str
    probe: Probe
    measurements: list[Measurement]
    notes: list[str]

    @property
    def max_difference(self) -> float:
        """The largest difference of any exported file from TensorFlow."""
        return max(m.difference for m in self.measurements[1:])


def export_model(
    model: keras.Model,
    export_format: str,
    path: pathlib.Path,
    batch: int = 4,
    time_steps: int = 9,
    seed: int = 0,
    runs: int = 20,
    opset: int = onnx.DEFAULT_OPSET,
) -> ExportResult:
    """Exports `model` to `path` and compares it with TensorFlow.

    Args:
        model: a Keras model with lstmkit layers, see `check_model`.
        export_format: one of `FORMATS`.
        path: the SavedModel folder, `.tflite` or `.onnx` file to write.
        batch: rows of the probe batch, and the fixed batch size of the
            TFLite model.
        time_steps: steps of the probe batch, and the fixed number of
            steps of the TFLite model.
        seed: seed of the probe batch.
        runs: timed calls per runtime. The median is reported.
        opset: the ONNX opset.

    Raises:
        ExportError: invalid model or format.
    """
    if export_format not in FORMATS:
        raise ExportError(
            f"format must be one of {', '.join(FORMATS)}; got "
            f"{export_format!r}."
        )
    check_model(model, model.name)
    depth = input_depth(model)
    probe = make_probe(batch, time_steps, depth, seed)
    expected, latency = reference_outputs(model, probe, runs)
    measurements = [Measurement("tensorflow", None, None, latency, 0.0)]
    notes = []

    if export_format == "savedmodel":
        saved_model.export(model, depth, path)
        measurements.append(saved_model.measure(path, probe, expected, runs))
    elif export_format == "tflite":
        variants, notes = tflite.export(
            model, depth, path, batch, time_steps
        )
        for variant in variants:
            measurements.append(
                tflite.measure(variant, probe, expected, runs)
            )
    else:
        onnx.export(model, depth, path, opset)
        measurements.append(onnx.measure(path, probe, expected, runs))
    return ExportResult(export_format, probe, measurements, notes)
