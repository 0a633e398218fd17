"""Keras precision policies and loss scaling for `lstmkit compare`.

Under `mixed_float16` and `mixed_bfloat16` the weights stay float32 and the
layers compute in the policy's dtype. The comparison casts the logits to
float32 before the loss, so softmax and cross-entropy run in float32.
Under `mixed_float16` the optimizer is wrapped in Keras'
`LossScaleOptimizer`, which multiplies the loss by a dynamic scale before
the gradients are taken and skips steps whose gradients overflow.
bfloat16 has float32's exponent range and needs no loss scaling.
"""

import contextlib
import logging
from collections.abc import Iterator

import keras

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def check_reference(precision: str, reference: str, cell: str) -> None:
    """Checks that the built-in reference runs under `precision`.

    Raises:
        ValueError: a mixed policy was combined with the v1 built-in, whose
            `LSTMCell` (from tf_keras) does not cast its float32 weights to
            the compute dtype, or with a `--cell` variant, which is
            compared with that v1 cell.
    """
    if precision == "float32":
        return
    if reference == "v1":
        raise ValueError(
            f"--precision {precision} needs --reference keras, because the "
            "v1 LSTMCell does not support Keras precision policies."
        )
    if cell != "lstm":
        raise ValueError(
            f"--precision {precision} cannot train --cell {cell}, which is "
            "compared with the v1 LSTMCell. Drop one of the two options."
        )


def default_reference(precision: str) -> str:
    """Returns the reference used when `--reference` is not given."""
    return "v1" if precision == "float32" else "keras"


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Sets Keras' global dtype policy inside the block, then restores it.

    Layers take the global policy when they are created, so models must be
    built inside the block.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {PRECISIONS}; got {precision!r}."
        )
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def uses_loss_scaling(precision: str) -> bool:
    """Returns whether `precision` needs a loss scale (float16 only)."""
    return precision == "mixed_float16"


def make_optimizer(
    learning_rate: float, loss_scaling: bool
) -> keras.optimizers.Optimizer:
    """Creates Adam, wrapped in a dynamic `LossScaleOptimizer` if requested."""
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if loss_scaling:
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
