"""Helpers shared by the compiled kernels."""

from typing import Callable

import tensorflow as tf


def if_steps(time_source: tf.Tensor, run: Callable, empty: Callable):
    """Returns `run()`, or `empty()` when the time axis has no steps.

    XLA cannot compile a loop's per-step slice of a zero-length axis, so a
    kernel whose number of steps is unknown while tracing chooses at run
    time with `tf.cond`.

    Args:
        time_source: a `[time, ...]` tensor.
        run: builds the results with the compiled loop.
        empty: builds the same results for zero steps, without XLA.
    """
    steps = time_source.shape[0]
    if steps is not None:
        return run() if steps > 0 else empty()
    return tf.cond(tf.shape(time_source)[0] > 0, run, empty)
