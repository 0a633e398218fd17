"""The three LSTM conventions the doctor judges user code against.

A convention fixes the gate order of the weight blocks, where the forget
bias lives and the default initialization:

* ``v1``, `tf.compat.v1.nn.rnn_cell.LSTMCell` and `lstmkit.LSTMCell`:
  blocks i, j, f, o. The cell adds `forget_bias` 1.0 to the forget
  pre-activation at every step and does not store it. Glorot uniform over
  the whole kernel `[input_depth + units, 4 * units]`, zero bias.
* ``keras``, `keras.layers.LSTM`: blocks i, f, c, o. No run-time forget
  bias, because the forget block of the stored bias starts at 1
  (`unit_forget_bias=True`). Glorot uniform input kernel, orthogonal
  recurrent kernel, otherwise zero bias.
* ``torch``, `torch.nn.LSTM`: blocks i, f, g, o and no forget bias. Every
  weight and both biases come from `U(-1/sqrt(units), 1/sqrt(units))`.

The storage format (one concatenated kernel, split kernels, or PyTorch's
transposed matrices with two biases) is separate: `lstmkit.doctor.weights`
finds it from the shapes, and the convention defines what the numbers
mean.
"""

import dataclasses
import logging

from lstmkit.convert.layouts import (
    GATE_ORDER_KERAS,
    GATE_ORDER_TF1,
    GATE_ORDER_TORCH,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Convention:
    """Meaning of one framework's LSTM weights.

    Attributes:
        name: "v1", "keras" or "torch".
        gate_order: order of the four blocks, such as "ijfo".
        weight_format: the storage format its own code uses.
        runtime_forget_bias: added to the forget pre-activation at every
            step.
        stored_forget_bias: the accepted initial values of the forget block
            of the stored bias. PyTorch draws it at random (0 on average),
            and 1 is a common choice there too.
        description: a short name for messages.
    """

    name: str
    gate_order: str
    weight_format: str
    runtime_forget_bias: float
    stored_forget_bias: tuple[float, ...]
    description: str


CONVENTIONS = {
    "v1": Convention(
        "v1", GATE_ORDER_TF1, "v1", 1.0, (0.0,),
        "v1 LSTMCell (tf.compat.v1.nn.dynamic_rnn)",
    ),
    "keras": Convention(
        "keras", GATE_ORDER_KERAS, "keras", 0.0, (1.0,),
        "keras.layers.LSTM",
    ),
    "torch": Convention(
        "torch", GATE_ORDER_TORCH, "torch", 0.0, (0.0, 1.0),
        "torch.nn.LSTM",
    ),
}


def get_convention(name: str | None) -> Convention | None:
    """Returns the convention called `name`, or None for None.

    Raises:
        ValueError: `name` is not one of "v1", "keras" or "torch".
    """
    if name is None:
        return None
    if name not in CONVENTIONS:
        raise ValueError(
            f"Unknown convention {name!r}. Pass one of "
            f"{', '.join(sorted(CONVENTIONS))}, or None to let the doctor "
            "infer it."
        )
    return CONVENTIONS[name]


def same_gate_order(first: str, second: str) -> bool:
    """Returns whether two gate orders agree (j, c and g are one gate)."""
    return _neutral(first) == _neutral(second)


def _neutral(order: str) -> str:
    return order.replace("c", "j").replace("g", "j")
