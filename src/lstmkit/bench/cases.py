"""Benchmark cases: shapes, modes, length modes, directions and their data.

A case is one shape run in one mode (forward only or a training step), with
fixed or variable lengths, in one or both directions. Every implementation
of a case gets the same inputs and, where it is an LSTM, the same weights,
all drawn from a seed.
"""

import dataclasses
import logging
import re
import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lstmkit.convert.layouts import V1Weights

logger = logging.getLogger(__name__)

MODES = ("forward", "train")
LENGTH_MODES = ("fixed", "variable")
DIRECTIONS = ("uni", "bi")

# The v1 cell's default, added to the forget gate at every step.
FORGET_BIAS = 1.0


@dataclasses.dataclass(frozen=True)
class Shape:
    """Sizes of one benchmark input.

    Attributes:
        name: a preset name such as "small", or `BxTxIxU` for a custom
            shape.
        batch: rows per batch.
        time: steps per row.
        input_depth: features per step.
        units: LSTM units per direction.
    """

    name: str
    batch: int
    time: int
    input_depth: int
    units: int

    @property
    def dims(self) -> str:
        """The sizes as `BxTxIxU`."""
        return f"{self.batch}x{self.time}x{self.input_depth}x{self.units}"


SHAPES = {
    "small": Shape("small", 32, 28, 28, 128),
    "medium": Shape("medium", 64, 100, 128, 256),
    "long": Shape("long", 16, 500, 64, 128),
}

# The shape of `lstmkit bench --quick`: big enough to run every code path,
# small enough to trace and compile in about a second per implementation.
QUICK_SHAPE = Shape("tiny", 4, 6, 3, 8)

_CUSTOM_SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+)x(\d+)$")


def parse_shape(text: str) -> Shape:
    """Parses a preset name or a custom `BxTxIxU` shape.

    Args:
        text: "small", "medium", "long", "tiny", or four positive integers
            joined by "x": batch, time, input depth and units.

    Raises:
        ValueError: `text` is neither, or a size is 0.
    """
    text = text.strip()
    if text in SHAPES:
        return SHAPES[text]
    if text == QUICK_SHAPE.name:
        return QUICK_SHAPE

    match = _CUSTOM_SHAPE.match(text.lower())
    if match is None:
        raise ValueError(
            f"invalid shape {text!r}: use one of {', '.join(SHAPES)}, "
            f"{QUICK_SHAPE.name} or BxTxIxU (batch x time x input depth x "
            "units), such as 32x28x28x128"
        )
    sizes = [int(group) for group in match.groups()]
    if min(sizes) < 1:
        raise ValueError(
            f"invalid shape {text!r}: every size must be at least 1, such "
            "as 32x28x28x128"
        )
    return Shape(text.lower(), *sizes)


@dataclasses.dataclass(frozen=True)
class Case:
    """One shape in one mode, length mode and direction.

    Attributes:
        shape: the sizes.
        mode: "forward" (outputs only) or "train" (outputs, then gradients
            of their sum with respect to the inputs and every weight).
        lengths: "fixed" (every row has `shape.time` steps, and no lengths
            or mask are passed) or "variable" (seeded random lengths from 1
            to `shape.time`, passed as `sequence_length` or a mask).
        direction: "uni" (one LSTM) or "bi" (a forward and a backward LSTM
            with their outputs concatenated).
    """

    shape: Shape
    mode: str
    lengths: str
    direction: str

    @property
    def directions(self) -> int:
        """Number of LSTMs: 1 or 2."""
        return 2 if self.direction == "bi" else 1

    @property
    def label(self) -> str:
        """A short name such as `small/train/fixed/uni`."""
        return "/".join(
            [self.shape.name, self.mode, self.lengths, self.direction]
        )


def make_cases(
    shapes: list[Shape],
    modes: list[str],
    lengths: list[str],
    directions: list[str],
) -> list[Case]:
    """Lists every combination, shape by shape."""
    return [
        Case(shape, mode, length_mode, direction)
        for shape in shapes
        for direction in directions
        for mode in modes
        for length_mode in lengths
    ]


@dataclasses.dataclass(frozen=True)
class CaseData:
    """Inputs and LSTM weights shared by every implementation of a case.

    Attributes:
        inputs: `[batch, time, input_depth]` float32, uniform in [-1, 1].
        lengths: `[batch]` int32 lengths from 1 to `time`, or None for
            fixed lengths.
        weights: one `V1Weights` per direction (forward first), with
            kernel `[input_depth + units, 4 * units]` and bias
            `[4 * units]` in the v1 gate order i, j, f, o.
        seed: the seed the arrays were drawn from.
    """

    inputs: np.ndarray
    lengths: np.ndarray | None
    weights: list["V1Weights"]
    seed: int


def make_case_data(case: Case, seed: int) -> CaseData:
    """Draws the inputs, lengths and weights of `case` from `seed`.

    The same seed and case always give the same arrays, whichever other
    cases run, because the random generator is seeded from both. The mode
    and the length mode do not change the inputs or the weights.
    """
    case_key = zlib.crc32(f"{case.shape.dims}/{case.direction}".encode())
    rng = np.random.default_rng([seed, case_key])
    shape = case.shape

    inputs = rng.uniform(
        -1.0, 1.0, [shape.batch, shape.time, shape.input_depth]
    ).astype(np.float32)

    weights = [
        _random_v1_weights(rng, shape.input_depth, shape.units)
        for _ in range(case.directions)
    ]

    # Drawn last, so that fixed and variable cases share inputs and weights.
    lengths = None
    if case.lengths == "variable":
        lengths = rng.integers(
            1, shape.time, size=shape.batch, endpoint=True
        ).astype(np.int32)
    return CaseData(inputs, lengths, weights, seed)


def _random_v1_weights(
    rng: np.random.Generator, input_depth: int, units: int
) -> "V1Weights":
    # Importing lstmkit.convert imports TensorFlow, which the command line
    # avoids until it runs a benchmark.
    from lstmkit.convert.layouts import V1Weights

    # Glorot uniform over the whole kernel, as the v1 cell initializes it.
    # The bias is not zero, so that its conversion between layouts is
    # exercised by the correctness check.
    rows = input_depth + units
    limit = np.sqrt(6.0 / (rows + 4 * units))
    kernel = rng.uniform(-limit, limit, [rows, 4 * units])
    bias = rng.uniform(-0.1, 0.1, [4 * units])
    return V1Weights(
        kernel.astype(np.float32),
        bias.astype(np.float32),
        forget_bias=FORGET_BIAS,
    )
