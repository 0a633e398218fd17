"""Helpers shared by the compiled kernels."""

from typing import Callable

import tensorflow as tf

try:
    # NOTE: private TensorFlow API; there is no public way to ask whether a
    # gradient tape is recording. Without it every forward pass keeps the
    # states a backward pass needs.
    from tensorflow.python.eager.record import could_possibly_record
except ImportError:  # pragma: no cover - depends on the TensorFlow version
    could_possibly_record = None


def gradients_may_be_taken() -> bool:
    """Returns whether a gradient tape may record the ops being built now.

    The kernels keep the per-step states for their backward pass only when
    this is True. A gradient can still be requested when it is False: a
    tape around a `tf.function` traced without one, or `tf.gradients`. The
    backward pass then runs the forward loop again to get the states, so
    the gradient is exact either way.
    """
    if could_possibly_record is None:
        return True
    return bool(could_possibly_record())


def stop_tape(*tensors: tf.Tensor) -> list[tf.Tensor]:
    """Returns `tensors` cut off from every gradient tape.

    A kernel's compiled loop must not be differentiated by a tape: that
    would ask XLA for the loop's intermediate lists, which it cannot return.
    Each kernel supplies its own gradient instead.
    """
    return [tf.stop_gradient(tensor) for tensor in tensors]


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
