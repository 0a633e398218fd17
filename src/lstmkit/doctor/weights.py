"""Storage formats of LSTM weights, found from their shapes.

The probes pick `input_depth` and `units` so that `input_depth`, `units`,
`input_depth + units` and `4 * units` all differ. A direction's weights then
show their format by shape alone:

* "v1": `kernel [input_depth + units, 4 * units]` and `bias [4 * units]`;
* "keras": `kernel [input_depth, 4 * units]`, `recurrent_kernel
  [units, 4 * units]`, `bias [4 * units]`;
* "torch": `weight_ih [4 * units, input_depth]`, `weight_hh
  [4 * units, units]`, `bias_ih` and `bias_hh [4 * units]`.

Biases are optional. The gate order inside the blocks is not visible in the
shapes, so `lstmkit.doctor.layout` finds it by running the code.

Canonical weights are the v1 cell's: blocks i, j, f, o, the input rows of
the kernel before the recurrent rows, and one bias.
"""

import dataclasses
import logging
from typing import Any

import numpy as np

from lstmkit.convert.layouts import GATE_ORDER_TF1, reorder_gates

logger = logging.getLogger(__name__)


class LayoutError(ValueError):
    """The weights' shapes match none of the three storage formats."""


@dataclasses.dataclass(frozen=True)
class StorageLayout:
    """Positions of one direction's LSTM weights in its variable list.

    Attributes:
        weight_format: "v1", "keras" or "torch".
        indices: role name to the index in the direction's variable list.
            Roles: "kernel" (v1), "kernel_x" and "kernel_h" (keras and
            torch), and "bias", or "bias_ih" and "bias_hh" for torch.
        input_depth: depth of the inputs.
        units: number of units.
    """

    weight_format: str
    indices: dict[str, int]
    input_depth: int
    units: int

    @property
    def bias_roles(self) -> list[str]:
        """The bias roles present, in storage order."""
        return [r for r in ("bias", "bias_ih", "bias_hh") if r in self.indices]


@dataclasses.dataclass(frozen=True)
class CanonicalWeights:
    """One direction's weights in the v1 layout (blocks i, j, f, o).

    Attributes:
        kernel_x: `[input_depth, 4 * units]`.
        kernel_h: `[units, 4 * units]`.
        biases: each `[4 * units]`. PyTorch's two biases stay separate.
    """

    kernel_x: np.ndarray
    kernel_h: np.ndarray
    biases: tuple[np.ndarray, ...]

    @property
    def kernel(self) -> np.ndarray:
        """The concatenated v1 kernel `[input_depth + units, 4 * units]`."""
        return np.concatenate([self.kernel_x, self.kernel_h], axis=0)

    @property
    def bias(self) -> np.ndarray:
        """The sum of the biases (zeros without one), `[4 * units]`."""
        if not self.biases:
            return np.zeros(self.kernel_x.shape[1], self.kernel_x.dtype)
        return np.sum(self.biases, axis=0)


def identify_storage(
    variables: list[Any], input_depth: int, units: int
) -> StorageLayout:
    """Finds the storage format of one direction's weights from shapes.

    Args:
        variables: the direction's weights.
        input_depth: depth of the inputs the weights were created for.
        units: number of units.

    Raises:
        LayoutError: the shapes fit none of the formats.
    """
    shapes = [tuple(v.shape) for v in variables]
    depth, gates = input_depth, 4 * units
    by_shape: dict[tuple, list[int]] = {}
    for index, shape in enumerate(shapes):
        by_shape.setdefault(shape, []).append(index)

    biases = by_shape.get((gates,), [])
    candidates = [
        ("v1", {(depth + units, gates): "kernel"}, 1),
        ("keras", {(depth, gates): "kernel_x", (units, gates): "kernel_h"}, 1),
        ("torch", {(gates, depth): "kernel_x", (gates, units): "kernel_h"}, 2),
    ]
    for weight_format, roles, max_biases in candidates:
        indices = {}
        for shape, role in roles.items():
            if len(by_shape.get(shape, [])) == 1:
                indices[role] = by_shape[shape][0]
        used = len(roles) + len(biases)
        if len(indices) == len(roles) and len(biases) <= max_biases:
            if used != len(shapes):
                continue
            bias_names = ["bias"] if max_biases == 1 else ["bias_ih", "bias_hh"]
            indices.update(zip(bias_names, biases))
            return StorageLayout(weight_format, indices, depth, units)

    raise LayoutError(
        f"Weights of shapes {shapes} (input_depth={depth}, units={units}) "
        "match no LSTM storage format. Expected one of: v1 [input_depth + "
        "units, 4 * units] and [4 * units]; Keras [input_depth, 4 * units], "
        "[units, 4 * units] and [4 * units]; PyTorch [4 * units, "
        "input_depth], [4 * units, units] and up to two [4 * units]. For "
        "another cell, pass reference_cell= to the adapter."
    )


def to_canonical(
    layout: StorageLayout, order: str, arrays: list[np.ndarray]
) -> CanonicalWeights:
    """Reads one direction's stored arrays as canonical v1 weights.

    Args:
        layout: the direction's storage format.
        order: the gate order the code uses, such as "ifco".
        arrays: the direction's weights as arrays, in variable order.
    """
    get = {role: np.asarray(arrays[i]) for role, i in layout.indices.items()}
    if layout.weight_format == "v1":
        kernel_x = get["kernel"][: layout.input_depth]
        kernel_h = get["kernel"][layout.input_depth :]
    elif layout.weight_format == "keras":
        kernel_x, kernel_h = get["kernel_x"], get["kernel_h"]
    else:
        kernel_x, kernel_h = get["kernel_x"].T, get["kernel_h"].T

    def canonical(array: np.ndarray) -> np.ndarray:
        return reorder_gates(array, order, GATE_ORDER_TF1)

    biases = tuple(canonical(get[role]) for role in layout.bias_roles)
    return CanonicalWeights(canonical(kernel_x), canonical(kernel_h), biases)


def from_canonical(
    layout: StorageLayout,
    order: str,
    kernel: np.ndarray,
    bias: np.ndarray,
    rng: np.random.Generator,
) -> dict[int, np.ndarray]:
    """Writes canonical v1 weights in the code's storage format and order.

    Args:
        layout: the direction's storage format.
        order: the gate order the code uses.
        kernel: `[input_depth + units, 4 * units]`, blocks i, j, f, o.
        bias: `[4 * units]`, blocks i, j, f, o. PyTorch's two biases get a
            random split of it, so that code reading only one of them
            differs.
        rng: random generator for that split.

    Returns:
        Variable index to the array to assign.

    Raises:
        LayoutError: `bias` is not zero but the code stores no bias.
    """
    depth = layout.input_depth
    kernel = reorder_gates(kernel, GATE_ORDER_TF1, order)
    bias = reorder_gates(bias, GATE_ORDER_TF1, order)
    values: dict[str, np.ndarray] = {}
    if layout.weight_format == "v1":
        values["kernel"] = kernel
    elif layout.weight_format == "keras":
        values["kernel_x"], values["kernel_h"] = kernel[:depth], kernel[depth:]
    else:
        values["kernel_x"] = kernel[:depth].T
        values["kernel_h"] = kernel[depth:].T

    roles = layout.bias_roles
    if not roles and np.any(bias):
        raise LayoutError("The code stores no bias, so bias must be zero.")
    if roles == ["bias"]:
        values["bias"] = bias
    elif len(roles) == 2:
        part = rng.normal(0.0, 0.3, bias.shape).astype(bias.dtype)
        values[roles[0]], values[roles[1]] = bias - part, part
    elif roles:
        values[roles[0]] = bias
    return {layout.indices[role]: value for role, value in values.items()}
