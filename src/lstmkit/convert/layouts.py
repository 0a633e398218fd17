"""Gate orders and the neutral weight form shared by every converter.

An LSTM stores its four gate weights side by side along one axis, but each
framework picks its own order of the blocks:

* v1 `LSTMCell` (and lstmkit): i, j, f, o (`GATE_ORDER_TF1`),
* `keras.layers.LSTM`: i, f, c, o (`GATE_ORDER_KERAS`),
* PyTorch `nn.LSTM`: i, f, g, o (`GATE_ORDER_TORCH`).

i is the input gate, f the forget gate, o the output gate, and j, c and g
are three names of the same candidate block. This module needs only NumPy.
"""

import dataclasses
import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

GATE_ORDER_TF1 = "ijfo"
GATE_ORDER_KERAS = "ifco"
GATE_ORDER_TORCH = "ifgo"

# Each framework's letter for a gate, mapped to one neutral name.
_GATE_NAMES = {
    "i": "input",
    "f": "forget",
    "o": "output",
    "j": "candidate",
    "c": "candidate",
    "g": "candidate",
}

# Names of the v1 peephole variables, in the order the cell creates them.
_PEEPHOLES = ("w_f_diag", "w_i_diag", "w_o_diag")


def reorder_gates(
    array: Any, source: str, target: str, axis: int = -1
) -> np.ndarray:
    """Permutes the four gate blocks of `array` from one order to another.

    Args:
        array: array whose `axis` has size `4 * num_units`, such as a v1
            kernel `[depth, 4 * num_units]` or a bias `[4 * num_units]`.
        source: gate order of `array`, for example `GATE_ORDER_TF1`.
        target: gate order of the result, for example `GATE_ORDER_KERAS`.
            j, c and g all name the candidate block.
        axis: the axis that holds the four blocks.

    Returns:
        A new array of the same shape and dtype with the blocks along
        `axis` in `target` order.

    Raises:
        ValueError: an order is not a permutation of input, forget, output
            and candidate, or `axis` has a size not divisible by 4.
    """
    array = np.asarray(array)
    source_names = _gate_names(source, "source")
    target_names = _gate_names(target, "target")

    size = array.shape[axis]
    if size % 4 != 0:
        raise ValueError(
            f"Axis {axis} of an array of shape {array.shape} has size {size}, "
            "which is not 4 * num_units. Pass the axis that contains the gates."
        )

    blocks = np.split(array, 4, axis=axis)
    by_name = dict(zip(source_names, blocks))
    return np.concatenate([by_name[name] for name in target_names], axis=axis)


def gate_slice(order: str, gate: str, num_units: int) -> slice:
    """Returns the slice of one gate's block along a `4 * num_units` axis.

    Args:
        order: gate order of the axis, such as `GATE_ORDER_KERAS`.
        gate: the gate's letter in that order, such as "f".
        num_units: size of each block.

    Raises:
        ValueError: `gate` is not a letter of `order`.
    """
    _gate_names(order, "source")
    if len(gate) != 1 or gate not in order:
        raise ValueError(
            f"Gate {gate!r} is not in gate order {order!r}. Pass one of "
            "its letters."
        )
    index = order.index(gate)
    return slice(index * num_units, (index + 1) * num_units)


def _gate_names(order: str, label: str) -> list[str]:
    """Maps a gate order such as "ijfo" to neutral gate names."""
    letters = list(order) if isinstance(order, str) else []
    names = [_GATE_NAMES.get(letter) for letter in letters]
    expected = {"input", "forget", "output", "candidate"}
    if len(names) != 4 or set(names) != expected:
        raise ValueError(
            f"Invalid {label} gate order {order!r}: expected four letters "
            "naming each of i, f, o and one candidate letter (j, c or g) "
            f"once, such as {GATE_ORDER_TF1!r}, {GATE_ORDER_KERAS!r} or "
            f"{GATE_ORDER_TORCH!r}."
        )
    return names


@dataclasses.dataclass(frozen=True, eq=False)
class V1Weights:
    """Weights of one v1 `LSTMCell`, the form every converter goes through.

    Arrays keep their dtype (float32 for most models). Instances are
    immutable, but the arrays they refer to are not copied.

    Attributes:
        kernel: `[input_depth + h_depth, 4 * num_units]`, rows for the
            inputs first, then rows for the previous output h. Column
            blocks i, j, f, o. `h_depth` is `num_proj` with a projection,
            else `num_units`.
        bias: `[4 * num_units]`, blocks i, j, f, o, without the forget
            bias.
        forget_bias: added to the forget gate's pre-activation at every
            step by the cell and not part of `bias`.
        w_f_diag: `[num_units]` forget gate peephole, or None.
        w_i_diag: `[num_units]` input gate peephole, or None.
        w_o_diag: `[num_units]` output gate peephole, or None.
        projection: `[num_units, num_proj]` output projection, or None.
        input_depth: number of input features. Computed from the kernel
            when None, and checked against it otherwise.

    Raises:
        ValueError: the shapes are inconsistent, only some of the three
            peepholes are given, or `forget_bias` is NaN or infinite.
        TypeError: `kernel` or `bias` is None, an array does not hold
            floating-point numbers, or `forget_bias` is not a number.
    """

    kernel: np.ndarray
    bias: np.ndarray
    forget_bias: float = 1.0
    w_f_diag: np.ndarray | None = None
    w_i_diag: np.ndarray | None = None
    w_o_diag: np.ndarray | None = None
    projection: np.ndarray | None = None
    input_depth: int | None = None

    def __post_init__(self) -> None:
        for name in ("kernel", "bias"):
            if getattr(self, name) is None:
                raise TypeError(
                    f"{name} is None; pass the {name} array of the v1 cell."
                )
        for name in ("kernel", "bias", *_PEEPHOLES, "projection"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _float_array(name, value))
        object.__setattr__(
            self, "forget_bias", check_forget_bias(self.forget_bias)
        )

        self._check_bias_and_kernel()
        self._check_peepholes()
        self._check_projection()

        input_depth = self.kernel.shape[0] - self.h_depth
        if input_depth < 1:
            raise ValueError(
                f"kernel has {self.kernel.shape[0]} rows, which leaves no "
                f"rows for the inputs after the {self.h_depth} rows for h. "
                "Expected [input_depth + h_depth, 4 * num_units]."
            )
        if self.input_depth is not None and self.input_depth != input_depth:
            raise ValueError(
                f"input_depth={self.input_depth!r} does not match the kernel "
                f"of shape {self.kernel.shape}, which implies input_depth "
                f"{input_depth}. Pass input_depth=None to take it from the "
                "kernel."
            )
        object.__setattr__(self, "input_depth", int(input_depth))

    @property
    def num_units(self) -> int:
        """Size of the cell state."""
        return self.bias.shape[0] // 4

    @property
    def num_proj(self) -> int | None:
        """Size of the projected output, or None without a projection."""
        if self.projection is None:
            return None
        return self.projection.shape[1]

    @property
    def h_depth(self) -> int:
        """Size of the output h: `num_proj` if set, else `num_units`."""
        return self.num_proj or self.num_units

    @property
    def use_peepholes(self) -> bool:
        """Whether the peephole vectors are present."""
        return self.w_f_diag is not None

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the kernel."""
        return self.kernel.dtype

    def _check_bias_and_kernel(self) -> None:
        if self.bias.ndim != 1 or self.bias.shape[0] % 4 != 0:
            raise ValueError(
                f"bias must have shape [4 * num_units]; got {self.bias.shape}."
            )
        if self.bias.shape[0] == 0:
            raise ValueError("bias is empty, but num_units must be at least 1.")
        columns = self.bias.shape[0]
        if self.kernel.ndim != 2 or self.kernel.shape[1] != columns:
            raise ValueError(
                f"kernel must have shape [input_depth + h_depth, {columns}] "
                f"to match bias of shape {self.bias.shape}; got "
                f"{self.kernel.shape}."
            )

    def _check_peepholes(self) -> None:
        present = [
            name for name in _PEEPHOLES if getattr(self, name) is not None
        ]
        if present and len(present) != len(_PEEPHOLES):
            missing = [name for name in _PEEPHOLES if name not in present]
            raise ValueError(
                f"Peepholes need all of {', '.join(_PEEPHOLES)}; got "
                f"{', '.join(present)} without {', '.join(missing)}."
            )
        for name in present:
            shape = getattr(self, name).shape
            if shape != (self.num_units,):
                raise ValueError(
                    f"{name} must have shape ({self.num_units},) to match "
                    f"num_units={self.num_units}; got {shape}."
                )

    def _check_projection(self) -> None:
        if self.projection is None:
            return
        shape = self.projection.shape
        if len(shape) != 2 or shape[0] != self.num_units or shape[1] < 1:
            raise ValueError(
                f"projection must have shape [{self.num_units}, num_proj] to "
                f"match num_units={self.num_units}; got {shape}."
            )


def check_forget_bias(value: Any) -> float:
    """Returns `value` as a float after checking that it is finite.

    Raises:
        TypeError: `value` is not a real number (a string, for example).
        ValueError: `value` is NaN or infinite.
    """
    number = None
    if not isinstance(value, (bool, str, bytes)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None:
        raise TypeError(
            f"forget_bias must be a real number such as 1.0; got "
            f"{type(value).__name__} {value!r}."
        )
    if not np.isfinite(number):
        raise ValueError(
            f"forget_bias must be finite; got {number}. The v1 default is 1.0."
        )
    return number


def _float_array(name: str, value: Any) -> np.ndarray:
    """Converts one weight to a NumPy array of floating-point numbers."""
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise TypeError(
            f"{name} must hold floating-point numbers; got dtype "
            f"{array.dtype} with shape {array.shape}. Cast the weights to "
            "float32, for example np.asarray(value, np.float32)."
        )
    return array
