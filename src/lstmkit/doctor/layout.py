"""Gate order and weight layout: which permutation of i, j, f, o the code uses.

The probe fills the code's weights with random numbers in their storage
format and runs one time step from a zero state. That step's output
`sigmoid(o) * tanh(sigmoid(i) * tanh(j))` depends on where the code reads
i, j and o, and the forget block is the one left over, so exactly one of
the 24 block orders reproduces it with lstmkit's cell. The forget gate and
the recurrent kernel do not act in the first step, so a fault in either
does not disturb this probe.
"""

import dataclasses
import itertools
import logging

import numpy as np

from lstmkit.convert.layouts import GATE_ORDER_TF1
from lstmkit.doctor import conventions, weights
from lstmkit.doctor.context import ProbeContext, max_abs, tolerance
from lstmkit.doctor.reference import StepReference
from lstmkit.doctor.report import FAULT, PASS, SKIPPED, CheckResult

logger = logging.getLogger(__name__)

CHECK = "layout"
TITLE = "gate order and weight layout"

ALL_ORDERS = tuple("".join(p) for p in itertools.permutations("ijfo"))

# The best order is taken as the code's order when its first-step error is
# below this fraction of the next best order's, even if it is not exact:
# the step itself then differs (see the divergence check).
_CLEAR_MARGIN = 0.2


@dataclasses.dataclass
class DirectionLayout:
    """The storage format and gate order of one direction.

    Attributes:
        storage: where each weight is kept.
        order: the gate order the code uses (letters of "ijfo"), or None
            when no order reproduces the first step.
        error: largest first-step difference with the best order.
        next_error: the same with the second-best order.
    """

    storage: weights.StorageLayout
    order: str | None
    error: float
    next_error: float


@dataclasses.dataclass
class LayoutFinding:
    """The layout of every direction and the convention judged against.

    Attributes:
        directions: one `DirectionLayout` per direction, or empty when the
            storage format is unknown.
        convention: the declared convention, or None when it must be
            inferred (see `judged_convention`).
        source: "declared" or "inferred".
        problem: why no layout was found, or None.
    """

    directions: list[DirectionLayout]
    convention: conventions.Convention | None
    source: str | None
    problem: str | None = None

    @property
    def usable(self) -> bool:
        """Whether every direction has a known storage format and order."""
        return self.problem is None and all(
            d.order is not None for d in self.directions
        )


def find_layout(ctx: ProbeContext) -> LayoutFinding | None:
    """Finds the storage format and gate order of each direction (cached).

    Returns:
        The finding, or None for code with a custom reference cell.

    Raises:
        UserCodeError: the code failed in the probe.
    """
    if ctx.custom_cell:
        return None
    return ctx.cached("layout", lambda: _find_layout(ctx))


def _find_layout(ctx: ProbeContext) -> LayoutFinding:
    declared = conventions.get_convention(ctx.adapter.convention)
    try:
        storages = [
            weights.identify_storage(v, ctx.input_depth, ctx.units)
            for v in ctx.instance.directions()
        ]
    except weights.LayoutError as error:
        source = "declared" if declared else None
        return LayoutFinding([], declared, source, str(error))

    ctx.randomize_weights()
    x = ctx.inputs(1)
    outputs, _ = ctx.run(x, np.ones([x.shape[0]], np.int32))
    halves = [ctx.half(outputs, k)[:, 0] for k in range(ctx.directions)]
    step = StepReference(ctx.input_depth, ctx.units, ctx.instance.dtype)

    directions = []
    for storage, variables in zip(storages, ctx.instance.directions()):
        arrays = [v.numpy() for v in variables]
        stored = weights.to_canonical(storage, GATE_ORDER_TF1, arrays)
        candidates = step.first_step(
            stored.kernel, stored.bias, x[:, 0], list(ALL_ORDERS)
        )
        errors = [
            min(max_abs(h - h1) for h in halves) for h1 in candidates
        ]
        ranked = np.argsort(errors)
        best, second = errors[ranked[0]], errors[ranked[1]]
        clear = best <= tolerance(ctx.dtype) or best < _CLEAR_MARGIN * second
        order = ALL_ORDERS[ranked[0]] if clear else None
        directions.append(DirectionLayout(storage, order, best, second))

    if declared is not None:
        return LayoutFinding(directions, declared, "declared")
    return LayoutFinding(directions, None, "inferred")


def infer_convention(
    finding: LayoutFinding,
    runtime: float | None,
    stored: float | None,
) -> conventions.Convention:
    """Picks the convention that fits the most of what was measured.

    Each convention scores a point for its gate order, its storage format,
    its run-time forget bias and its stored forget bias (when measured).
    Ties go to the convention whose storage format the code uses, so a
    v1-style kernel with a wrong gate order is judged as v1.

    Args:
        finding: the layout, with the forward direction's order.
        runtime: the measured run-time forget bias, or None.
        stored: the measured initial forget block, or None.
    """
    first = finding.directions[0]

    def score(convention: conventions.Convention) -> tuple[int, bool]:
        same_storage = convention.weight_format == first.storage.weight_format
        points = int(same_storage)
        if first.order is not None and conventions.same_gate_order(
            first.order, convention.gate_order
        ):
            points += 1
        if runtime is not None and abs(
            runtime - convention.runtime_forget_bias
        ) < 0.5:
            points += 1
        if stored is not None and any(
            abs(stored - value) < 0.5
            for value in convention.stored_forget_bias
        ):
            points += 1
        return points, same_storage

    return max(conventions.CONVENTIONS.values(), key=score)


def judged_convention(ctx: ProbeContext) -> conventions.Convention | None:
    """Returns the declared convention, else the inferred one (cached).

    Returns:
        None for a custom cell or when no layout was found.
    """
    finding = find_layout(ctx)
    if finding is None or finding.problem:
        return None
    if finding.convention is not None:
        return finding.convention
    return ctx.cached("convention", lambda: _infer_from_probes(ctx, finding))


def _infer_from_probes(
    ctx: ProbeContext, finding: LayoutFinding
) -> conventions.Convention:
    from lstmkit.doctor import forget_bias

    runtime = stored = None
    if finding.usable:
        try:
            measured = forget_bias.measure(ctx)[0]
        except weights.LayoutError:
            measured = None
        if measured is not None:
            runtime, stored = measured.runtime, measured.stored
    return infer_convention(finding, runtime, stored)


def check_layout(ctx: ProbeContext) -> CheckResult:
    """Judges the gate order of each direction against the convention."""
    finding = find_layout(ctx)
    if finding is None:
        return CheckResult(
            CHECK, TITLE, SKIPPED,
            "the code implements a custom cell, whose weights are passed "
            "in the reference cell's own order",
        )
    if finding.problem:
        return CheckResult(
            CHECK, TITLE, FAULT, finding.problem,
            "Store the LSTM weights in one of the three formats, or pass "
            "reference_cell= for another cell.",
        )

    convention = judged_convention(ctx)
    parts, faults = [], []
    for index, direction in enumerate(finding.directions):
        label = _direction_label(ctx, index)
        if direction.order is None:
            faults.append(
                f"{label}no gate order reproduces the first step (best "
                f"error {direction.error:.2g}, next {direction.next_error:.2g})"
            )
            continue
        text = (
            f"{label}{direction.storage.weight_format} storage, gates "
            f"{_letters(direction.order, convention)} (first step error "
            f"{direction.error:.1g}, next best {direction.next_error:.2g})"
        )
        parts.append(text)
        if not conventions.same_gate_order(
            direction.order, convention.gate_order
        ):
            faults.append(
                f"{label}gates {_letters(direction.order, convention)}, but "
                f"{convention.name} orders them "
                f"{_letters(convention.gate_order, convention)}"
            )

    data = {
        "convention": convention.name,
        "directions": [
            {
                "weight_format": d.storage.weight_format,
                "gate_order": d.order,
                "error": d.error,
                "next_error": d.next_error,
            }
            for d in finding.directions
        ],
    }
    if faults:
        fix = (
            f"Read the blocks of kernel and bias in the order "
            f"{_letters(convention.gate_order, convention)} "
            f"({convention.description}), "
            "or declare the convention the code follows."
        )
        if any(d.order is None for d in finding.directions):
            fix = (
                "Compute one step as c = sigmoid(f) * c + sigmoid(i) * "
                "tanh(j), h = sigmoid(o) * tanh(c) from x @ W_x + h @ W_h + b."
            )
        evidence = "; ".join(faults + parts)
        return CheckResult(CHECK, TITLE, FAULT, evidence, fix, data)
    return CheckResult(CHECK, TITLE, PASS, "; ".join(parts), "", data)


def _direction_label(ctx: ProbeContext, index: int) -> str:
    if not ctx.bidirectional:
        return ""
    return ("forward: ", "backward: ")[index]


def _letters(order: str, convention: conventions.Convention) -> str:
    """Writes a gate order with the convention's candidate letter."""
    candidate = next(c for c in convention.gate_order if c in "jcg")
    return ",".join(order.replace("j", candidate))
