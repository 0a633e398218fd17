"""Serving functions that take `inputs` and `lengths`, and their SavedModels.

Every exported model has one signature, `serving_default`, with the
arguments `inputs` (float32 `[batch, time, depth]`) and `lengths` (int32
`[batch]`, right padding) and one result, `outputs`.

The functions are traced with lstmkit's `autodiff` kernel, a plain
`tf.while_loop`. The `fused_lstm` and `derived` kernels are not used
because they run inside `tf.function(jit_compile=True)`. That needs XLA in
the serving binary, and the TFLite converter and tf2onnx do not read it.
"""

import logging
import pathlib
from typing import Any

import keras
import tensorflow as tf

from lstmkit import kernels
from lstmkit.export.probe import call_with_lengths

logger = logging.getLogger(__name__)

SIGNATURE = "serving_default"
INPUTS = "inputs"
LENGTHS = "lengths"
OUTPUTS = "outputs"


def serving_function(
    model: keras.Model,
    depth: int,
    batch: int | None = None,
    time_steps: int | None = None,
) -> Any:
    """Returns a traced `tf.function(inputs, lengths) -> {"outputs": ...}`.

    Args:
        model: the model to serve.
        depth: the input depth.
        batch: a fixed batch size, or `None` for any.
        time_steps: a fixed number of time steps, or `None` for any.
    """
    signature = [
        tf.TensorSpec([batch, time_steps, depth], tf.float32, name=INPUTS),
        tf.TensorSpec([batch], tf.int32, name=LENGTHS),
    ]

    @tf.function(input_signature=signature)
    def serve(inputs, lengths):
        return {OUTPUTS: call_with_lengths(model, inputs, lengths)}

    with kernels.use("autodiff"):
        serve.get_concrete_function()
    return serve


def write_saved_model(
    model: keras.Model, serve: Any, path: pathlib.Path
) -> None:
    """Writes `serve` as the `serving_default` signature of a SavedModel.

    `keras.export.ExportArchive` stores the model's Keras variables as
    plain TensorFlow variables, which the TFLite converter freezes into
    constants. A `tf.Module` that contains the model would keep them as
    resource variables that the TFLite interpreter starts uninitialized.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(str(path), verbose=False)
