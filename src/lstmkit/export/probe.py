"""The probe batch, the TensorFlow reference outputs and the timings."""

import dataclasses
import logging
import pathlib
import time
import warnings
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

# Largest absolute output difference accepted between TensorFlow and an
# exported model. The float32 models of tests/test_export.py differ by
# less than 1e-6.
MAX_DIFFERENCE = 1e-4


@dataclasses.dataclass
class Probe:
    """A seeded batch of right-padded sequences with their lengths.

    Attributes:
        inputs: float32 `[batch, time, depth]`, zeros past each length.
        lengths: int32 `[batch]`. With three or more rows the first is the
            full `time`, the last is 0 and the others are random in
            `[1, time]`.
        seed: the seed the batch was drawn with.
    """

    inputs: np.ndarray
    lengths: np.ndarray
    seed: int

    def describe(self) -> str:
        """Returns the shape, lengths and seed as one line."""
        return (
            f"{list(self.inputs.shape)} float32, lengths "
            f"{self.lengths.tolist()}, seed {self.seed}"
        )


@dataclasses.dataclass
class Measurement:
    """One runtime's result on the probe batch.

    Attributes:
        runtime: what ran, such as "tflite (fused)".
        path: the exported file or folder, or `None` for TensorFlow itself.
        size_bytes: its size on disk, or `None` for TensorFlow itself.
        latency_ms: median wall time of one call on the probe batch.
        difference: max abs difference from the TensorFlow outputs.
        details: further facts, such as the TFLite ops.
    """

    runtime: str
    path: pathlib.Path | None
    size_bytes: int | None
    latency_ms: float
    difference: float
    details: str = ""


def make_probe(batch: int, time_steps: int, depth: int, seed: int) -> Probe:
    """Draws a probe batch with variable lengths.

    Args:
        batch: rows, at least 1.
        time_steps: time steps, at least 1.
        depth: features per step.
        seed: seed of NumPy's generator.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, time_steps + 1, size=batch)
    lengths[0] = time_steps
    if batch >= 3:
        lengths[-1] = 0
    inputs = rng.standard_normal([batch, time_steps, depth])
    padding = np.arange(time_steps)[None, :] >= lengths[:, None]
    inputs[padding] = 0.0
    return Probe(inputs.astype(np.float32), lengths.astype(np.int32), seed)


def call_with_lengths(
    model: keras.Model, inputs: tf.Tensor, lengths: tf.Tensor
) -> tf.Tensor:
    """Calls `model` with the mask of right-padded `lengths`.

    The mask reaches every layer that supports masking, so lstmkit's
    layers skip the padding as with their `sequence_length` argument.
    """
    mask = tf.sequence_mask(lengths, tf.shape(inputs)[1])
    with warnings.catch_warnings():
        # Keras 3.15 warns that a Sequential model "does not support
        # masking", yet passes the mask to its layers.
        warnings.filterwarnings(
            "ignore", message=".*does not support masking.*"
        )
        return model(inputs, mask=mask, training=False)


def reference_outputs(
    model: keras.Model, probe: Probe, runs: int
) -> tuple[np.ndarray, float]:
    """Runs `model` in TensorFlow on the probe, compiled with `tf.function`.

    The function uses lstmkit's default kernels, as the model does when it
    is trained or evaluated.

    Returns:
        `(outputs, median latency in ms)`.
    """
    function = tf.function(lambda x, n: call_with_lengths(model, x, n))
    inputs = tf.constant(probe.inputs)
    lengths = tf.constant(probe.lengths)
    outputs = function(inputs, lengths).numpy()
    latency = median_latency_ms(lambda: function(inputs, lengths), runs)
    return outputs, latency


def median_latency_ms(call: Callable[[], Any], runs: int) -> float:
    """Returns the median wall time of `call()` over `runs` calls, in ms.

    One call before the timed ones absorbs compilation and allocation.
    """
    _block(call())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        _block(call())
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def _block(result: Any) -> None:
    """Waits for TensorFlow results, which may run asynchronously."""
    for value in tf.nest.flatten(result):
        if isinstance(value, tf.Tensor):
            value.numpy()


def max_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """Returns the max abs difference, or inf when the shapes differ."""
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        logger.error(
            "output shape %s differs from TensorFlow's %s",
            actual.shape,
            expected.shape,
        )
        return float("inf")
    if actual.size == 0:
        return 0.0
    return float(np.max(np.abs(actual.astype(np.float64) - expected)))


def path_size(path: pathlib.Path) -> int:
    """Returns the size of a file, or of all files in a folder, in bytes."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
