"""Step masks for the Keras layers: from Keras masks or sequence lengths."""

import logging
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
        ValueError: the mask has the wrong shape, or mask and lengths
            disagree (eagerly or at trace time).
        tf.errors.InvalidArgumentError: they disagree when a graph runs.
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
    if from_lengths is None:
        return mask
    return _check_agreement(mask, from_lengths)


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


def warn_if_unmasked_padding(inputs: tf.Tensor, layer_name: str) -> None:
    """Logs one warning when an unmasked row ends in an all-zero step.

    A bidirectional layer without a mask or lengths reads such trailing
    zeros as data, and its backward direction reads them first. The check
    runs on eager inputs only: in a compiled function the values are not
    known when the Python code runs.

    Args:
        inputs: `[batch, time, depth]`.
        layer_name: named in the warning.
    """
    global _warned_unmasked_padding
    if _warned_unmasked_padding or not tf.executing_eagerly():
        return
    values = inputs.numpy()
    if values.ndim != 3 or values.shape[1] < 2 or values.size == 0:
        return
    last_step_zero = np.all(values[:, -1, :] == 0, axis=-1)
    has_data = np.any(values != 0, axis=(1, 2))
    if np.any(last_step_zero & has_data):
        _warned_unmasked_padding = True
        logger.warning(
            "%s: a row ends in a time step that is zero in every feature "
            "and no mask or sequence_length was given. If that step is "
            "padding, it is read as data, and the backward direction reads "
            "it first. Add a Masking layer "
            "(keras.layers.Masking(0.0)) or pass sequence_length.",
            layer_name,
        )
