"""Padding: what happens at steps past each row's length.

All four probes run the batch of `LENGTHS` (a full row, two padded rows and
an empty one) and compare the code with itself, so they need no reference
and work for any cell:

* outputs past the length are zero (Keras convention: zero or the last
  valid output carried forward, as `keras.layers.LSTM` does with a mask);
* the final state is the state at each row's last valid step: h equals the
  output there, c equals that of the row run alone, and an empty row keeps
  the zero initial state;
* padding values change neither the valid outputs nor the gradients of a
  loss over them (zero padding against large random padding);
* NaN padding reaches no output or state. NaN weight gradients with finite
  outputs are a warning, not a fault: the v1 built-in has them too.

For a BiLSTM only directions whose outputs are aligned are judged here.
The bidirectional checks report the others.
"""

import dataclasses
import logging

import numpy as np
import tensorflow as tf

from lstmkit.doctor import adapters, bidirectional, layout
from lstmkit.doctor.context import (
    LENGTHS,
    TIME,
    ProbeContext,
    max_abs,
    tolerance,
)
from lstmkit.doctor.report import FAULT, PASS, SKIPPED, WARN, CheckResult

logger = logging.getLogger(__name__)

# Standard deviation of the random padding of the padding-values probe.
_LARGE_PADDING = 50.0


def pad(x: np.ndarray, fill: float | np.ndarray) -> np.ndarray:
    """Replaces the steps past each row's length in `LENGTHS` with `fill`."""
    x = x.copy()
    for row, length in enumerate(LENGTHS):
        if np.ndim(fill):
            x[row, length:] = fill[row, length:]
        else:
            x[row, length:] = fill
    return x


def rows_alone(
    ctx: ProbeContext, x: np.ndarray
) -> dict[int, tuple[np.ndarray, list[np.ndarray]]]:
    """Runs each padded, non-empty row alone, cut to its length."""
    runs = {}
    for row, length in enumerate(LENGTHS):
        if 0 < length < TIME:
            runs[row] = ctx.run(x[row : row + 1, :length], [length])
    return runs


@dataclasses.dataclass
class _Half:
    """One output half judged by the padding probes."""

    label: str
    half: int
    direction: int
    aligned: bool


def judged_halves(ctx: ProbeContext) -> tuple[list[_Half], str]:
    """Finds the output halves whose padding behaviour can be judged.

    Returns:
        The halves, and a note on a backward half left out (or "").
    """
    if not ctx.bidirectional:
        return [_Half("", 0, 0, True)], ""
    structure = bidirectional.find_structure(ctx)
    forward = structure.forward_half
    if forward is None:
        forward = 0
    halves = [_Half("forward ", forward, 0, True)]
    result = bidirectional.per_length(ctx)
    tol = tolerance(ctx.dtype)
    if (
        structure.backward is not None
        and result is not None
        and result.forward_difference <= tol
        and result.backward_difference <= tol
    ):
        aligned = structure.backward == bidirectional.ALIGNED
        halves.append(_Half("backward ", 1 - forward, 1, aligned))
        return halves, ""
    return halves, " (backward half not judged: see the bidi checks)"


def _convention(ctx: ProbeContext) -> str | None:
    try:
        convention = layout.judged_convention(ctx)
    except adapters.UserCodeError:
        convention = None
    if convention is not None:
        return convention.name
    return ctx.adapter.convention


def check_outputs(ctx: ProbeContext) -> CheckResult:
    """Judges that outputs past each row's length are zero."""
    return ctx.cached("padding_outputs", lambda: _check_outputs(ctx))


def _check_outputs(ctx: ProbeContext) -> CheckResult:
    check, title = "padding_outputs", "outputs past the length"
    halves, note = judged_halves(ctx)
    ctx.randomize_weights()
    outputs, _ = ctx.run(pad(ctx.inputs(TIME), 0.0), LENGTHS)
    carry_allowed = _convention(ctx) == "keras"

    faults, texts, data = [], [], {}
    for half in halves:
        values = ctx.half(outputs, half.half)
        past = _past_length(values)
        carried = values.copy()
        for row, length in enumerate(LENGTHS):
            last = values[row, length - 1] if length else 0.0
            carried[row, length:] -= last
        carry = _past_length(carried)
        data[f"{half.label}max_abs_past_length"] = past
        if past <= tolerance(ctx.dtype):
            texts.append(f"{half.label}outputs past the length are 0")
        elif carry_allowed and half.direction == 0 and carry <= tolerance(
            ctx.dtype
        ):
            texts.append(
                f"{half.label}outputs past the length repeat the last "
                "valid output (Keras with a mask)"
            )
        else:
            faults.append(
                f"{half.label}outputs past the length are not zero (largest "
                f"|output| {past:.3g})"
            )
    evidence = "; ".join(faults + texts) + note
    if faults:
        return CheckResult(
            check, title, FAULT, evidence,
            "Set outputs to zero at t >= length: tf.where(t < length, "
            "output, 0), or pass the lengths (mask) to the RNN.", data,
        )
    return CheckResult(check, title, PASS, evidence, "", data)


def _past_length(values: np.ndarray) -> float:
    return max(
        max_abs(values[row, length:]) for row, length in enumerate(LENGTHS)
    )


@dataclasses.dataclass
class _StateFinding:
    faults: list[str]
    texts: list[str]
    largest: float


def _state_finding(ctx: ProbeContext) -> _StateFinding | None:
    structure = bidirectional.find_structure(ctx)
    if structure.state_pairs[0] is None:
        return None
    return ctx.cached("padding_state", lambda: _compare_states(ctx, structure))


def _compare_states(ctx: ProbeContext, structure) -> _StateFinding:
    halves, _ = judged_halves(ctx)
    ctx.randomize_weights()
    x = pad(ctx.inputs(TIME), 0.0)
    outputs, states = ctx.run(x, LENGTHS)
    alone = rows_alone(ctx, x)
    tol = tolerance(ctx.dtype)

    faults, texts, largest = [], [], 0.0
    for half in halves:
        pair = structure.state_pairs[half.direction]
        if pair is None:
            continue
        c_index, h_index = pair
        values = ctx.half(outputs, half.half)
        h_error = c_error = empty_error = 0.0
        for row, length in enumerate(LENGTHS):
            if length == 0:
                empty_error = max(
                    empty_error,
                    max_abs(states[c_index][row]),
                    max_abs(states[h_index][row]),
                )
                continue
            step = length - 1 if half.direction == 0 or not half.aligned else 0
            h_error = max(
                h_error, max_abs(states[h_index][row] - values[row, step])
            )
            if row in alone:
                row_outputs, row_states = alone[row]
                same = max_abs(
                    values[row, :length] - ctx.half(row_outputs, half.half)[0]
                )
                if same <= tol:
                    c_error = max(
                        c_error,
                        max_abs(states[c_index][row] - row_states[c_index][0]),
                    )
        largest = max(largest, h_error, c_error, empty_error)
        text = (
            f"{half.label}final h vs output at the last valid step "
            f"{h_error:.2g}, final c vs row alone {c_error:.2g}, empty row "
            f"state {empty_error:.2g}"
        )
        if max(h_error, c_error, empty_error) > tol:
            faults.append(
                f"{half.label}final state is not the state at the last valid "
                f"step: {text[len(half.label):]}"
            )
        else:
            texts.append(text)
    return _StateFinding(faults, texts, largest)


def check_state(ctx: ProbeContext) -> CheckResult:
    """Judges that the final state is the state at each row's length."""
    check, title = "padding_state", "final state at the length"
    finding = _state_finding(ctx)
    if finding is None:
        return CheckResult(
            check, title, SKIPPED,
            "the final state contains no h (see state_order)",
        )
    _, note = judged_halves(ctx)
    evidence = "; ".join(finding.faults + finding.texts) + note
    data = {"largest_difference": finding.largest}
    if finding.faults:
        return CheckResult(
            check, title, FAULT, evidence,
            "Copy the state through padded steps (state = tf.where(t < "
            "length, new_state, state)), or gather it at length - 1.", data,
        )
    return CheckResult(check, title, PASS, evidence, "", data)


@dataclasses.dataclass
class _ValuesFinding:
    outputs: float
    weight_gradients: float
    input_gradients: float
    tolerance: float

    @property
    def leaks(self) -> bool:
        return max(
            self.outputs, self.weight_gradients, self.input_gradients
        ) > self.tolerance


def _valid_loss(halves: list[_Half], units: int, weights: np.ndarray):
    """Builds a loss over the valid outputs of the judged halves."""
    mask = np.zeros([len(LENGTHS), TIME, 1])
    for row, length in enumerate(LENGTHS):
        mask[row, :length] = 1.0

    def loss(outputs: tf.Tensor, states: list[tf.Tensor]) -> tf.Tensor:
        total = 0.0
        for half in halves:
            part = outputs[..., half.half * units : (half.half + 1) * units]
            scale = tf.constant(weights * mask, part.dtype)
            total += tf.reduce_sum(part * scale)
        return total

    return loss


def _values_finding(ctx: ProbeContext) -> _ValuesFinding:
    return ctx.cached("padding_values", lambda: _compare_values(ctx))


def _compare_values(ctx: ProbeContext) -> _ValuesFinding:
    halves, _ = judged_halves(ctx)
    halves = halves[:1]
    ctx.randomize_weights()
    x = ctx.inputs(TIME)
    large = ctx.rng.normal(0.0, _LARGE_PADDING, x.shape).astype(x.dtype)
    loss_weights = ctx.rng.normal(0.0, 1.0, [len(LENGTHS), TIME, ctx.units])
    loss = _valid_loss(halves, ctx.units, loss_weights)

    results = []
    for fill in (0.0, large):
        padded = pad(x, fill)
        outputs, _ = ctx.run(padded, LENGTHS)
        grads, input_grad = ctx.gradients(padded, LENGTHS, loss)
        results.append((outputs, grads, input_grad))

    (out_a, grads_a, in_a), (out_b, grads_b, in_b) = results
    half = halves[0].half
    outputs = max(
        max_abs(ctx.half(out_a, half)[row, :length]
                - ctx.half(out_b, half)[row, :length])
        for row, length in enumerate(LENGTHS)
    )
    scale = max([1.0] + [max_abs(g) for g in grads_a])
    weight_gradients = max(
        max_abs(a - b) for a, b in zip(grads_a, grads_b)
    ) / scale
    input_gradients = max(
        max_abs(in_a[row, :length] - in_b[row, :length])
        for row, length in enumerate(LENGTHS)
    ) / max(1.0, max_abs(in_a))
    return _ValuesFinding(
        outputs, weight_gradients, input_gradients, tolerance(ctx.dtype)
    )


def check_values(ctx: ProbeContext) -> CheckResult:
    """Judges that padding values do not reach valid outputs or gradients."""
    check, title = "padding_values", "padding values leak into valid steps"
    finding = _values_finding(ctx)
    label = "forward " if ctx.bidirectional else ""
    evidence = (
        f"zero vs N(0, {_LARGE_PADDING:g}) padding: {label}valid outputs "
        f"differ by {finding.outputs:.2g}, weight gradients by "
        f"{finding.weight_gradients:.2g} and input gradients by "
        f"{finding.input_gradients:.2g} (relative)"
    )
    data = dataclasses.asdict(finding)
    if finding.leaks:
        return CheckResult(
            check, title, FAULT, evidence,
            "Make step t of each row read only that row's steps before its "
            "length: the valid steps start at t = 0 (right padding), and "
            "nothing mixes the time steps before the loop.", data,
        )
    return CheckResult(check, title, PASS, evidence, "", data)


def check_nan(ctx: ProbeContext) -> CheckResult:
    """Judges what NaN padding reaches: outputs, states and gradients."""
    check, title = "padding_nan", "NaN padding"
    halves, note = judged_halves(ctx)
    values = _values_finding(ctx)
    state = _state_finding(ctx)
    state_ok = state is not None and not state.faults
    outputs_ok = check_outputs(ctx).status == PASS

    ctx.randomize_weights()
    x = ctx.inputs(TIME)
    outputs, states = ctx.run(pad(x, np.nan), LENGTHS)
    loss_weights = ctx.rng.normal(0.0, 1.0, [len(LENGTHS), TIME, ctx.units])
    # Only the judged directions' weights: a backward direction that reads
    # padding gets NaN gradients even from a loss it does not enter.
    judged = [
        variable
        for half in halves
        for variable in ctx.instance.directions()[half.direction]
    ]
    grads, _ = ctx.gradients(
        pad(x, np.nan), LENGTHS, _valid_loss(halves, ctx.units, loss_weights),
        judged,
    )

    valid_finite = past_finite = True
    for half in halves:
        part = ctx.half(outputs, half.half)
        for row, length in enumerate(LENGTHS):
            valid_finite &= bool(np.all(np.isfinite(part[row, :length])))
            past_finite &= bool(np.all(np.isfinite(part[row, length:])))
    pairs = bidirectional.find_structure(ctx).state_pairs
    states_finite = all(
        np.all(np.isfinite(states[i]))
        for half in halves
        for i in (pairs[half.direction] or ())
    )
    grads_finite = all(np.all(np.isfinite(g)) for g in grads)
    data = {
        "valid_outputs_finite": valid_finite,
        "padded_outputs_finite": past_finite,
        "states_finite": bool(states_finite),
        "weight_gradients_finite": grads_finite,
    }

    if not valid_finite and values.leaks:
        return CheckResult(
            check, title, SKIPPED,
            "valid outputs depend on padding values (see padding_values)",
            "", data,
        )
    faults = []
    if not valid_finite:
        faults.append("NaN padding makes valid outputs NaN")
    if not past_finite and outputs_ok:
        faults.append("NaN padding makes outputs past the length NaN")
    if not states_finite and state_ok:
        faults.append("NaN padding makes the final state NaN")
    if faults:
        return CheckResult(
            check, title, FAULT, "; ".join(faults) + note,
            "Select with tf.where instead of multiplying by the mask "
            "(0 * NaN is NaN), or zero the padding before the loop.", data,
        )
    # NaN that reaches what padding_outputs or padding_state already
    # reports as wrong is not counted again, but the evidence names it.
    reported = []
    if not past_finite:
        reported.append("outputs past the length (see padding_outputs)")
    if not states_finite:
        reported.append("the final state (see padding_state)")
    if reported:
        summary = (
            "valid outputs stay finite; NaN reaches "
            + " and ".join(reported)
            + ", and"
        )
    else:
        summary = "outputs and final states stay finite, but"
    if not grads_finite:
        return CheckResult(
            check, title, WARN,
            f"{summary} the weight gradients are NaN: the cell still "
            "runs on padded steps (the v1 built-in does the same)" + note,
            "Zero-fill padding, or zero padded inputs before the loop "
            "(tf.where(mask, x, 0)) as lstmkit does.", data,
        )
    if reported:
        return CheckResult(
            check, title, PASS,
            "valid outputs and weight gradients stay finite; NaN reaches "
            + " and ".join(reported) + note,
            "", data,
        )
    return CheckResult(
        check, title, PASS,
        "outputs, final states and weight gradients stay finite" + note,
        "", data,
    )
