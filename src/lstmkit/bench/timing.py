"""Timed steps: one `tf.function` per implementation and case.

A step takes no arguments because its inputs and lengths are captured
tensors, so each step is traced once. The first call, which traces and
(under XLA) compiles, is timed on its own. Untimed warm-up calls follow.
Then the timed calls of all implementations of a case run round-robin.
"""

import dataclasses
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from lstmkit.bench.cases import CaseData
from lstmkit.bench.models import BenchModel

logger = logging.getLogger(__name__)


def make_step(
    model: BenchModel, data: CaseData, mode: str, jit_compile: bool
) -> Any:
    """Creates the `tf.function` that one timed call runs.

    Args:
        model: the implementation, built for the case of `data`.
        data: inputs `[batch, time, input_depth]` and optional lengths.
        mode: "forward": the step returns the outputs
            `[batch, time, units * directions]`. "train": the step returns
            `(outputs, gradients)`, the gradients of the sum of the outputs
            with respect to the inputs and then to each of
            `model.variables`.
        jit_compile: compile the step with XLA.

    Returns:
        A `tf.function` without arguments.

    NOTE: TensorFlow may log that these functions "triggered tf.function
    retracing", because every step is made from the same Python code. Each
    step is traced once, which `Result.traces` records.
    """
    inputs = tf.constant(data.inputs)
    lengths = None if data.lengths is None else tf.constant(data.lengths)

    def forward() -> Any:
        return model(inputs, lengths)

    def train() -> Any:
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = model(inputs, lengths)
            loss = tf.reduce_sum(outputs)
        gradients = tape.gradient(
            loss,
            [inputs, *model.variables],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return outputs, gradients

    step = forward if mode == "forward" else train
    return tf.function(step, jit_compile=jit_compile)


def _synchronizer() -> Callable[[], None]:
    # On CPU, eager calls return after their kernels finish. A GPU runs
    # kernels asynchronously, so the timer must wait for them.
    if tf.config.list_logical_devices("GPU"):
        return tf.test.experimental.sync_devices
    return lambda: None


def time_call(step: Callable[[], Any]) -> tuple[float, Any]:
    """Runs `step` once; returns `(seconds, result)`."""
    synchronize = _synchronizer()
    start = time.perf_counter()
    result = step()
    synchronize()
    return time.perf_counter() - start, result


def time_interleaved(
    steps: dict[str, Callable[[], Any]],
    repeats: int,
    on_call: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Times every step `repeats` times, round-robin.

    Each repeat calls every step once, so that all steps see the same
    machine load. The order rotates by one step per repeat, so that no
    step always runs first. Python's garbage collector is paused during a
    repeat and runs between repeats.

    Args:
        steps: name to step.
        repeats: timed calls per step.
        on_call: called after each timed call (to advance a progress bar).

    Returns:
        Name to the seconds of each timed call, in call order.
    """
    names = list(steps)
    samples = {name: [] for name in names}
    synchronize = _synchronizer()
    for repeat in range(repeats):
        offset = repeat % len(names) if names else 0
        gc.collect()
        gc.disable()
        try:
            for name in names[offset:] + names[:offset]:
                start = time.perf_counter()
                steps[name]()
                synchronize()
                samples[name].append(time.perf_counter() - start)
                on_call()
        finally:
            gc.enable()
    return samples


@dataclasses.dataclass(frozen=True)
class TimingStats:
    """Summary of the timed calls of one step, in seconds.

    Attributes:
        median: the median.
        q1: the first quartile (25th percentile).
        q3: the third quartile (75th percentile).
        min: the fastest call.
        max: the slowest call.
        samples: every timed call, in call order.
    """

    median: float
    q1: float
    q3: float
    min: float
    max: float
    samples: list[float]

    @classmethod
    def from_samples(cls, samples: list[float]) -> "TimingStats":
        """Summarizes at least one sample."""
        values = np.asarray(samples, np.float64)
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        return cls(
            median=float(median),
            q1=float(q1),
            q3=float(q3),
            min=float(values.min()),
            max=float(values.max()),
            samples=[float(value) for value in values],
        )
