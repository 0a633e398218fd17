"""Step masks for the Keras layers: from Keras masks or sequence lengths."""

import logging
import sys
from typing import Any

import numpy as np
import tensorflow as tf

from lstmkit import validation

logger = logging.getLogger(__name__)

_warned_unmasked_padding = False


def step_mask(
    mask: Any, sequence_length: Any, batch: Any, time: Any
) -> tf.Tensor | None:
    """Combines a Keras mask and `sequence_length` into one step mask.

    Args:
        mask: bool `[batch, time]` from `Masking`, `Embedding(mask_zero=True)`
            or `mask=`, or `None`. Any pattern of valid steps works.
        sequence_length: int `[batch]` lengths (right padding), or `None`.
        batch: batch size of the inputs.
        time: time steps of the inputs.

    Returns:
        bool `[batch, time]`, or `None` when every step is valid.

    Raises:
        ValueError: the mask has the wrong rank or shape, or mask and
            lengths disagree (eagerly or at trace time).
        tf.errors.InvalidArgumentError: the same, found when a graph runs.
    """
    from_lengths = None
    if sequence_length is not None:
        lengths = validation.as_lengths(sequence_length, batch, time)
        from_lengths = tf.sequence_mask(lengths, time)
    if mask is None:
        return from_lengths

    mask = tf.cast(tf.convert_to_tensor(mask), tf.bool)
    if mask.shape.rank != 2:
        raise ValueError(
            f"mask must be [batch, time]; got shape {mask.shape}."
        )
    mask = _check_mask_shape(mask, batch, time)
    if from_lengths is None:
        return mask
    return _check_agreement(mask, from_lengths)


def _check_mask_shape(mask: tf.Tensor, batch: Any, time: Any) -> tf.Tensor:
    """Checks that `mask` has the inputs' batch and time sizes.

    A mismatch of sizes known eagerly or at trace time raises `ValueError`.
    Other sizes are checked when a graph runs, except under XLA, which drops
    assertions.
    """
    expected = [tf.get_static_value(batch), tf.get_static_value(time)]
    for size, want in zip(mask.shape, expected):
        if size is not None and want is not None and size != int(want):
            sizes = [None if w is None else int(w) for w in expected]
            raise ValueError(
                f"mask has shape {mask.shape} but the inputs have "
                f"[batch, time] = {sizes}; pass one mask entry per input "
                "step."
            )
    if tf.executing_eagerly():
        return mask
    check = tf.debugging.assert_equal(
        tf.shape(mask, out_type=tf.int32),
        tf.cast(tf.stack([batch, time]), tf.int32),
        message="mask must have the [batch, time] shape of the inputs",
    )
    with tf.control_dependencies([check]):
        return tf.identity(mask)


def _check_agreement(mask: tf.Tensor, from_lengths: tf.Tensor) -> tf.Tensor:
    if tf.executing_eagerly():
        disagree = np.flatnonzero(
            np.any(mask.numpy() != from_lengths.numpy(), axis=1)
        )
        if disagree.size:
            row = int(disagree[0])
            raise ValueError(
                f"mask and sequence_length disagree in {disagree.size} "
                f"row(s), first in row {row}: the mask has "
                f"{int(mask.numpy()[row].sum())} valid steps "
                f"{mask.numpy()[row].astype(int).tolist()}, the length is "
                f"{int(from_lengths.numpy()[row].sum())}. Pass only one."
            )
        return mask
    agree = tf.debugging.assert_equal(
        mask,
        from_lengths,
        message="mask and sequence_length must mark the same valid steps",
    )
    with tf.control_dependencies([agree]):
        return tf.identity(mask)


def warn_if_unmasked_padding(
    inputs: tf.Tensor, layer_name: str, warned: tf.Variable | None = None
) -> None:
    """Warns once when an unmasked row ends in an all-zero step.

    A bidirectional layer without a mask or lengths reads such trailing
    zeros as data, and its backward direction reads them first. Eagerly the
    warning goes through `logging`. Inside a compiled function it is a
    `tf.print` to stderr guarded by the boolean variable `warned`, so it
    also fires in `model.fit` and `model.predict`. Under XLA, which has no
    print op, nothing is checked.

    Args:
        inputs: `[batch, time, depth]`.
        layer_name: named in the warning.
        warned: bool variable that records the warning in compiled code;
            without it only eager calls are checked.
    """
    message = _unmasked_padding_message(layer_name)
    if tf.executing_eagerly():
        _warn_eagerly(inputs, message, warned)
        return
    if warned is None or _in_xla_context():
        return

    def warn() -> tf.Tensor:
        printed = tf.print("WARNING:", message, output_stream=sys.stderr)
        with tf.control_dependencies([printed]):
            warned.assign(True)
        return tf.constant(True)

    condition = tf.logical_and(
        _ends_in_zero_step(inputs), tf.logical_not(warned)
    )
    tf.cond(condition, warn, lambda: tf.constant(False))


def _ends_in_zero_step(inputs: tf.Tensor) -> tf.Tensor:
    """True when some row with data ends in a step that is all zeros."""
    nonzero = tf.not_equal(inputs, tf.zeros([], inputs.dtype))
    last_step_zero = tf.logical_not(tf.reduce_any(nonzero[:, -1, :], -1))
    has_data = tf.reduce_any(nonzero, axis=[1, 2])
    long_enough = tf.shape(inputs)[1] >= 2
    return tf.logical_and(
        long_enough,
        tf.reduce_any(tf.logical_and(last_step_zero, has_data)),
    )


def _warn_eagerly(
    inputs: tf.Tensor, message: str, warned: tf.Variable | None
) -> None:
    global _warned_unmasked_padding
    already = _warned_unmasked_padding or (
        warned is not None and bool(warned.numpy())
    )
    if already or inputs.shape.rank != 3 or inputs.shape.num_elements() == 0:
        return
    if bool(_ends_in_zero_step(inputs)):
        _warned_unmasked_padding = True
        if warned is not None:
            warned.assign(True)
        logger.warning("%s", message)


def _unmasked_padding_message(layer_name: str) -> str:
    return (
        f"{layer_name}: a row ends in a time step that is zero in every "
        "feature and no mask or sequence_length was given. If that step "
        "is padding, it is read as data, and the backward direction reads "
        "it first. Add a Masking layer (keras.layers.Masking(0.0)) or pass "
        "sequence_length."
    )


def _in_xla_context() -> bool:
    # NOTE: a private TensorFlow helper (TF 2.21); it reports whether the
    # function being traced will be compiled with jit_compile=True.
    from tensorflow.python.ops import control_flow_util

    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)
