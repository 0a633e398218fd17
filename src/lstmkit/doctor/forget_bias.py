"""Forget bias: missing, doubled, or stored instead of added.

Two numbers make up the forget bias at the start of training:

* the run-time part `a`, added to the forget pre-activation at every step.
  The probe runs two equal time steps (so that any reversal of a BiLSTM
  reads the same inputs) with random weights in the code's gate order and
  finds the `a` with which lstmkit's cell reproduces the second step.
* the stored part `s`, the initial forget block of the bias, read from the
  weights the code creates (when the adapter has a constructor).

v1 expects a = 1 and s = 0, Keras a = 0 and s = 1, PyTorch a = 0 and
s = 0 (random around it) or 1.
"""

import dataclasses
import logging

import numpy as np

from lstmkit.convert.layouts import GATE_ORDER_TF1, gate_slice
from lstmkit.doctor import initialization, layout, weights
from lstmkit.doctor.context import ProbeContext, max_abs
from lstmkit.doctor.reference import StepReference
from lstmkit.doctor.report import FAULT, PASS, SKIPPED, CheckResult

logger = logging.getLogger(__name__)

CHECK = "forget_bias"
TITLE = "forget bias"

# Range searched for the run-time forget bias. Each of `_ZOOMS` rounds
# evaluates a grid of `_GRID` values and narrows the range to two spacings
# around the best, so the last spacing is 10 / 40 / 20**4, about 1.6e-6.
_SEARCH = (-4.0, 6.0)
_GRID = 41
_ZOOMS = 5
# A measured forget bias within this distance of an expected value counts
# as that value.
_CLOSE = 0.05
# Largest second-step difference for which `a` counts as measured.
_FIT_TOLERANCE = 1e-4


@dataclasses.dataclass
class ForgetBias:
    """The measured forget bias of one direction.

    Attributes:
        runtime: the run-time part `a`, or None when no value fits.
        fit_error: the second-step difference at the best `a`.
        stored: mean initial forget block, or None without a constructor.
        stored_spread: standard deviation of the initial forget block.
        stored_count: number of forget-block values averaged.
    """

    runtime: float | None
    fit_error: float
    stored: float | None = None
    stored_spread: float = 0.0
    stored_count: int = 0

    @property
    def stored_tolerance(self) -> float:
        """How far a random stored part may be from its expected mean."""
        if self.stored_count == 0:
            return _CLOSE
        return _CLOSE + 4 * self.stored_spread / np.sqrt(self.stored_count)


def measure(ctx: ProbeContext) -> list[ForgetBias] | None:
    """Measures the forget bias of each direction (cached).

    Returns:
        One `ForgetBias` per direction, or None without a usable layout.

    Raises:
        UserCodeError: the code failed in the probe.
    """
    finding = layout.find_layout(ctx)
    if finding is None or not finding.usable:
        return None
    return ctx.cached("forget_bias", lambda: _measure(ctx, finding))


def _measure(
    ctx: ProbeContext, finding: layout.LayoutFinding
) -> list[ForgetBias]:
    ctx.randomize_weights()
    x0 = ctx.inputs(1)
    x = np.concatenate([x0, x0], axis=1)
    outputs, _ = ctx.run(x, np.full([x.shape[0]], 2, np.int32))
    slices = [
        ctx.half(outputs, k)[:, t]
        for k in range(ctx.directions)
        for t in range(2)
    ]
    step = StepReference(ctx.input_depth, ctx.units, ctx.instance.dtype)

    measured = []
    for variables, direction in zip(
        ctx.instance.directions(), finding.directions
    ):
        arrays = [v.numpy() for v in variables]
        canonical = weights.to_canonical(
            direction.storage, direction.order, arrays
        )

        def errors(candidates: np.ndarray) -> list[float]:
            outputs = step.second_step(
                canonical.kernel, canonical.bias, x0[:, 0], candidates
            )
            return [min(max_abs(s - h) for s in slices) for h in outputs]

        runtime, fit_error = _minimize(errors)
        if fit_error > _FIT_TOLERANCE:
            runtime = None
        measured.append(ForgetBias(runtime, fit_error))

    _add_stored(ctx, measured)
    return measured


def _minimize(errors) -> tuple[float, float]:
    """Finds the minimum of `errors` over `_SEARCH` by zooming a grid."""
    low, high = _SEARCH
    for _ in range(_ZOOMS):
        grid = np.linspace(low, high, _GRID)
        values = errors(grid)
        best = int(np.argmin(values))
        spacing = grid[1] - grid[0]
        low, high = grid[best] - spacing, grid[best] + spacing
    return float(grid[best]), float(values[best])


def _add_stored(ctx: ProbeContext, measured: list[ForgetBias]) -> None:
    try:
        samples = initialization.fresh_weights(ctx)
    except weights.LayoutError:
        # The initialization check reports weights that change format at
        # its size, so the stored part stays unmeasured here.
        samples = None
    if samples is None:
        return
    for index, forget_bias in enumerate(measured):
        own = samples[index :: ctx.directions]
        blocks = np.concatenate([
            s.canonical.bias[
                gate_slice(GATE_ORDER_TF1, "f", s.canonical.bias.shape[0] // 4)
            ]
            for s in own
        ])
        forget_bias.stored = float(np.mean(blocks))
        forget_bias.stored_spread = float(np.std(blocks))
        forget_bias.stored_count = int(blocks.size)


def check_forget_bias(ctx: ProbeContext) -> CheckResult:
    """Judges the run-time and stored forget bias against the convention."""
    finding = layout.find_layout(ctx)
    if finding is None:
        return _skipped("the code implements a custom cell")
    if not finding.usable:
        return _skipped("no gate order was found (see layout)")
    try:
        measured = measure(ctx)
    except weights.LayoutError as error:
        return CheckResult(CHECK, TITLE, FAULT, str(error))

    convention = layout.judged_convention(ctx)
    verdicts, texts = [], []
    for index, forget_bias in enumerate(measured):
        label = ("forward: ", "backward: ")[index] if ctx.bidirectional else ""
        if forget_bias.runtime is None:
            return _skipped(
                f"{label}no run-time forget bias reproduces the second step "
                f"(best error {forget_bias.fit_error:.2g}), so the recurrent "
                "step itself differs (see divergence)"
            )
        fault = _judge(convention, forget_bias)
        texts.append(label + _describe(forget_bias))
        if fault:
            verdicts.append(label + fault)

    data = {
        "convention": convention.name,
        "expected_runtime": convention.runtime_forget_bias,
        "expected_stored": list(convention.stored_forget_bias),
        "directions": [dataclasses.asdict(m) for m in measured],
    }
    expected = (
        f"{convention.name} expects run-time "
        f"{convention.runtime_forget_bias:g}, stored "
        f"{' or '.join(f'{v:g}' for v in convention.stored_forget_bias)}"
    )
    evidence = "; ".join(verdicts + texts + [expected])
    if verdicts:
        return CheckResult(
            CHECK, TITLE, FAULT, evidence, _FIXES[convention.name], data
        )
    return CheckResult(CHECK, TITLE, PASS, evidence, "", data)


def _judge(convention, measured: ForgetBias) -> str | None:
    """Returns what is wrong with the forget bias, or None."""
    runtime = measured.runtime
    expected_runtime = convention.runtime_forget_bias
    if measured.stored is None:
        if _close(runtime, expected_runtime):
            return None
        return _runtime_fault(convention, runtime)

    stored = measured.stored
    total = runtime + stored
    stored_ok = any(
        abs(stored - value) <= measured.stored_tolerance
        for value in convention.stored_forget_bias
    )
    if _close(runtime, expected_runtime) and stored_ok:
        return None
    if convention.name == "v1" and _close(runtime, 0) and _close(stored, 1):
        return "stored in the bias instead of added at every step"
    if convention.name == "keras" and _close(runtime, 1) and _close(stored, 0):
        return "added at every step instead of stored in the bias"
    if _close(total, 0):
        return "missing: no forget bias, neither stored nor added"
    if _close(total, 2):
        return "doubled: both stored in the bias and added at every step"
    if stored_ok:
        return _runtime_fault(convention, runtime)
    stored_values = " or ".join(
        f"{value:g}" for value in convention.stored_forget_bias
    )
    return (
        f"forget bias {runtime:.3g} added plus {stored:.3g} stored; "
        f"{convention.name} adds {expected_runtime:g} and stores "
        f"{stored_values}"
    )


def _runtime_fault(convention, runtime: float) -> str:
    if _close(runtime, 0):
        return "missing: no forget bias added at every step"
    if _close(runtime, 2 * max(convention.runtime_forget_bias, 1.0)):
        return f"doubled: {runtime:.3g} added at every step"
    return (
        f"{runtime:.3g} added at every step; {convention.name} adds "
        f"{convention.runtime_forget_bias:g}"
    )


def _describe(measured: ForgetBias) -> str:
    text = (
        f"run-time {measured.runtime:.3f} (fit error "
        f"{measured.fit_error:.1g})"
    )
    if measured.stored is None:
        return text + ", stored part not checked (no constructor)"
    text += f", stored {measured.stored:.3f}"
    if measured.stored_spread > 1e-6:
        text += f" ± {measured.stored_spread:.3f}"
    return text


def _close(value: float, target: float) -> bool:
    return abs(value - target) <= _CLOSE


_FIXES = {
    "v1": "Keep the bias at zero and add forget_bias=1.0 to the forget "
    "pre-activation at every step: sigmoid(f + 1.0).",
    "keras": "Add nothing at run time and start the forget block of the "
    "bias at 1 (unit_forget_bias=True).",
    "torch": "Add nothing at run time, because PyTorch keeps any forget "
    "offset in "
    "bias_ih + bias_hh.",
}


def _skipped(reason: str) -> CheckResult:
    return CheckResult(CHECK, TITLE, SKIPPED, reason)
