"""Structure of the outputs and state: direction order, alignment, (c, h).

These probes need no reference and no knowledge of the weights: they run
the code with random weights on full-length rows and watch its own
outputs.

* Which half is forward: after changing the input at step `_PROBE_STEP`
  the forward outputs change from that step on. A backward half that is
  reversed back changes up to that step, and one left in processing order
  changes from `time - 1 - _PROBE_STEP` on.
* State order: the final h of the forward direction equals its output at
  the last step, and that of the backward direction its aligned output at
  step 0. The position of h in the returned state therefore shows whether
  the pairs are (c, h) or (h, c), and which pair belongs to which
  direction.
* Per-length reversal: each padded row must give the same backward outputs
  as the same row run alone without padding. Reversing the whole time
  axis makes the backward direction read the padding first.
"""

import dataclasses
import logging

import numpy as np

from lstmkit.doctor.context import (
    LENGTHS,
    TIME,
    ProbeContext,
    max_abs,
    tolerance,
)
from lstmkit.doctor.report import FAULT, PASS, SKIPPED, CheckResult

logger = logging.getLogger(__name__)

# The input step changed by the causality probe.
_PROBE_STEP = 1

ALIGNED = "aligned"
UNREVERSED = "unreversed"


@dataclasses.dataclass
class Structure:
    """Arrangement of the code's outputs and state.

    Attributes:
        forward_half: the output half (0 or 1) that behaves as the forward
            direction, or None when neither does. 0 for an LSTM.
        backward: "aligned" when the backward outputs are reversed back to
            input order, "unreversed" when they are left in processing
            order, None when neither fits, or for an LSTM.
        changed: per output half, the time steps whose outputs changed.
        state_pairs: per direction (forward first), the flat state indices
            `(c, h)`, or None where h was not found.
    """

    forward_half: int | None
    backward: str | None
    changed: list[list[int]]
    state_pairs: list[tuple[int, int] | None]

    @property
    def backward_half(self) -> int | None:
        """The output half of the backward direction."""
        if self.forward_half is None:
            return None
        return 1 - self.forward_half


def find_structure(ctx: ProbeContext) -> Structure:
    """Finds the structure of the code's outputs and state (cached).

    Raises:
        UserCodeError: the code failed in the probe.
    """
    return ctx.cached("structure", lambda: _find_structure(ctx))


def _find_structure(ctx: ProbeContext) -> Structure:
    ctx.randomize_weights()
    x = ctx.inputs(TIME)
    lengths = np.full([x.shape[0]], TIME)
    outputs, states = ctx.run(x, lengths)
    moved = x.copy()
    moved[:, _PROBE_STEP] += 1.0
    moved_outputs, _ = ctx.run(moved, lengths)

    threshold = tolerance(ctx.dtype) / 10
    changed = []
    for k in range(ctx.directions):
        difference = ctx.half(outputs, k) - ctx.half(moved_outputs, k)
        changed.append([
            t for t in range(TIME) if max_abs(difference[:, t]) > threshold
        ])

    forward = list(range(_PROBE_STEP, TIME))
    forward_half = next(
        (k for k, steps in enumerate(changed) if steps == forward), None
    )
    backward = None
    if ctx.bidirectional and forward_half is not None:
        steps = changed[1 - forward_half]
        if steps == list(range(0, _PROBE_STEP + 1)):
            backward = ALIGNED
        elif steps == list(range(TIME - 1 - _PROBE_STEP, TIME)):
            backward = UNREVERSED

    finals = [ctx.half(outputs, forward_half or 0)[:, TIME - 1]]
    if ctx.bidirectional:
        if backward is None:
            finals.append(None)
        else:
            step = 0 if backward == ALIGNED else TIME - 1
            finals.append(ctx.half(outputs, 1 - forward_half)[:, step])
    pairs = _state_pairs(states, finals, tolerance(ctx.dtype))
    return Structure(forward_half, backward, changed, pairs)


def _state_pairs(
    states: list[np.ndarray], finals: list, tol: float
) -> list[tuple[int, int] | None]:
    pairs = []
    for final in finals:
        if final is None:
            pairs.append(None)
            continue
        matches = [
            i for i, state in enumerate(states) if max_abs(state - final) <= tol
        ]
        if not matches:
            pairs.append(None)
            continue
        h = matches[0]
        c = h + 1 if h % 2 == 0 else h - 1
        pairs.append((c, h))
    return pairs


def check_state_order(ctx: ProbeContext) -> CheckResult:
    """Judges the order of c and h in each direction's final state."""
    check, title = "state_order", "(c, h) order of the final state"
    structure = find_structure(ctx)
    declared = ctx.adapter.state_order
    faults, texts = [], []
    for index, pair in enumerate(structure.state_pairs):
        label = _label(ctx, index)
        if pair is None:
            if index == 0:
                faults.append(
                    f"{label}no tensor of the final state equals the output "
                    "at the last step, so the state contains no final h"
                )
            else:
                texts.append(f"{label}not judged (backward outputs misaligned)")
            continue
        c, h = pair
        observed = "ch" if c < h else "hc"
        texts.append(f"{label}h is state[{h}], order {_pair(observed)}")
        if observed != declared:
            faults.append(
                f"{label}state is {_pair(observed)}, declared {_pair(declared)}"
            )
    data = {"declared": declared, "state_pairs": structure.state_pairs}
    evidence = "; ".join(faults + texts)
    if faults:
        fix = (
            f"Return each direction's state as {_pair(declared)}, or declare "
            f"state_order={'hc' if declared == 'ch' else 'ch'!r} if the other "
            "order is intended."
        )
        return CheckResult(check, title, FAULT, evidence, fix, data)
    return CheckResult(check, title, PASS, evidence, "", data)


def check_direction_order(ctx: ProbeContext) -> CheckResult:
    """Judges that outputs and states list the forward direction first."""
    check, title = "bidi_order", "order of directions"
    if not ctx.bidirectional:
        return CheckResult(check, title, SKIPPED, "unidirectional")
    structure = find_structure(ctx)
    data = {"changed_steps": structure.changed}

    if structure.forward_half is None:
        return CheckResult(
            check, title, FAULT,
            f"no output half behaves as a forward LSTM: after changing step "
            f"{_PROBE_STEP}, the halves changed at steps {structure.changed}",
            "Concatenate [forward outputs, backward outputs].", data,
        )
    faults = []
    if structure.forward_half == 1:
        faults.append("outputs are [backward | forward]")
    pair = structure.state_pairs[0]
    if pair is not None and pair[1] >= 2:
        faults.append("final state lists the backward direction first")

    evidence = (
        f"forward half {structure.forward_half} changed at steps "
        f"{structure.changed[structure.forward_half]} after changing step "
        f"{_PROBE_STEP}"
    )
    if faults:
        return CheckResult(
            check, title, FAULT, "; ".join(faults) + "; " + evidence,
            "Put the forward direction first: outputs concat([fw, bw], -1), "
            "state (state_fw, state_bw).", data,
        )
    return CheckResult(check, title, PASS, evidence, "", data)


def check_reverse_back(ctx: ProbeContext) -> CheckResult:
    """Judges that backward outputs are aligned with the input steps."""
    check, title = "bidi_reverse_back", "backward outputs reversed back"
    if not ctx.bidirectional:
        return CheckResult(check, title, SKIPPED, "unidirectional")
    structure = find_structure(ctx)
    if structure.forward_half is None:
        return CheckResult(
            check, title, SKIPPED, "no forward half found (see bidi_order)"
        )
    steps = structure.changed[structure.backward_half]
    expected = list(range(0, _PROBE_STEP + 1))
    evidence = (
        f"after changing step {_PROBE_STEP} the backward half changed at "
        f"steps {steps}; aligned outputs change at {expected}"
    )
    data = {"changed_steps": steps, "expected": expected}
    if structure.backward == ALIGNED:
        return CheckResult(check, title, PASS, evidence, "", data)
    if structure.backward == UNREVERSED:
        evidence = "backward outputs left in processing order; " + evidence
    return CheckResult(
        check, title, FAULT, evidence,
        "Reverse the backward outputs back with the same per-length "
        "reversal used for the inputs: tf.reverse_sequence(outputs_bw, "
        "lengths, seq_axis=1, batch_axis=0).", data,
    )


@dataclasses.dataclass
class PerLength:
    """Padded rows compared with the same rows run alone.

    Attributes:
        forward_difference: largest forward-output difference at valid
            steps.
        backward_difference: the same for the backward half.
        worst_row: the row with the largest backward difference.
    """

    forward_difference: float
    backward_difference: float
    worst_row: int


def per_length(ctx: ProbeContext) -> PerLength | None:
    """Compares padded rows with the same rows alone (cached).

    Returns:
        None for an LSTM or when no forward half was found.
    """
    if not ctx.bidirectional:
        return None
    structure = find_structure(ctx)
    if structure.forward_half is None:
        return None
    return ctx.cached("per_length", lambda: _per_length(ctx, structure))


def _per_length(ctx: ProbeContext, structure: Structure) -> PerLength:
    from lstmkit.doctor import padding

    ctx.randomize_weights()
    x = padding.pad(ctx.inputs(TIME), 0.0)
    outputs, _ = ctx.run(x, LENGTHS)
    alone = padding.rows_alone(ctx, x)

    forward, backward, worst = 0.0, 0.0, 0
    for row, (row_outputs, _) in alone.items():
        length = LENGTHS[row]
        for half, row_half in ((structure.forward_half, True),
                               (structure.backward_half, False)):
            difference = max_abs(
                ctx.half(outputs, half)[row, :length]
                - ctx.half(row_outputs, half)[0]
            )
            if row_half:
                forward = max(forward, difference)
            elif difference > backward:
                backward, worst = difference, row
    return PerLength(forward, backward, worst)


def check_per_length(ctx: ProbeContext) -> CheckResult:
    """Judges that the backward direction reverses each row by its length."""
    check, title = "bidi_per_length", "per-length reversal"
    if not ctx.bidirectional:
        return CheckResult(check, title, SKIPPED, "unidirectional")
    result = per_length(ctx)
    if result is None:
        return CheckResult(
            check, title, SKIPPED, "no forward half found (see bidi_order)"
        )
    tol = tolerance(ctx.dtype)
    data = dataclasses.asdict(result)
    if result.forward_difference > tol:
        return CheckResult(
            check, title, SKIPPED,
            "padding changes the forward outputs too (largest difference "
            f"{result.forward_difference:.2g}; see padding_values)", "", data,
        )
    evidence = (
        "backward outputs of padded rows vs the same rows without padding: "
        f"largest difference {result.backward_difference:.2g}"
    )
    if result.backward_difference > tol:
        length = LENGTHS[result.worst_row]
        evidence += (
            f" (row {result.worst_row}, length {length} of {TIME}), because "
            "the backward direction reads padding, as a reversal of the whole "
            "time axis does"
        )
        return CheckResult(
            check, title, FAULT, evidence,
            "Reverse each row within its length: tf.reverse_sequence(x, "
            "lengths, seq_axis=1, batch_axis=0), not tf.reverse(x, [1]).",
            data,
        )
    return CheckResult(check, title, PASS, evidence, "", data)


def _label(ctx: ProbeContext, index: int) -> str:
    if not ctx.bidirectional:
        return ""
    return ("forward: ", "backward: ")[index]


def _pair(order: str) -> str:
    return "(c, h)" if order == "ch" else "(h, c)"
