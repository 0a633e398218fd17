"""The first time step at which the code's outputs leave the reference.

The probe aligns the weights with the gate order that the layout probe
found and the run-time forget bias that the forget-bias probe measured.
It rearranges the outputs as the structure probe found them (direction
order, backward outputs reversed back). Any remaining difference then
comes from the step itself, such as a wrong recurrent input or activation. The probe runs full-length rows,
so padding plays no part, and compares every step with lstmkit's driver
and, for the LSTM, with the v1 built-in.
"""

import logging

import numpy as np

from lstmkit.doctor import bidirectional, forget_bias, layout, weights
from lstmkit.doctor.context import (
    TIME,
    WEIGHT_SCALE,
    ProbeContext,
    max_abs,
    numpy_dtype,
    tolerance,
)
from lstmkit.doctor.reference import run_builtin, run_reference
from lstmkit.doctor.report import FAULT, PASS, SKIPPED, CheckResult

logger = logging.getLogger(__name__)

CHECK = "divergence"
TITLE = "first divergence from the reference"


def check_divergence(ctx: ProbeContext) -> CheckResult:
    """Finds the first step whose outputs differ from the reference."""
    structure = bidirectional.find_structure(ctx)
    if ctx.custom_cell:
        aligned = _align_custom(ctx)
    else:
        aligned = _align_lstm(ctx)
    if isinstance(aligned, CheckResult):
        return aligned
    reference_weights, forget_biases = aligned

    x = ctx.inputs(TIME)
    lengths = np.full([x.shape[0]], TIME)
    outputs, _ = ctx.run(x, lengths)
    expected, _ = run_reference(
        reference_weights, forget_biases, x, lengths, ctx.units,
        ctx.adapter.reference_cell,
    )
    halves, note = _arrange(ctx, structure, outputs)

    tol = tolerance(ctx.dtype)
    per_step = [
        max(max_abs(part[:, t] - ctx.half(expected, k)[:, t])
            for k, part in halves)
        for t in range(TIME)
    ]
    first = next((t for t, d in enumerate(per_step) if d > tol), None)
    data = {"max_difference_per_step": per_step, "first_step": first}
    evidence = f"largest difference from lstmkit {max(per_step):.2g}"

    if not ctx.custom_cell:
        builtin, _ = run_builtin(reference_weights, forget_biases, x, lengths)
        user_builtin = max(
            max_abs(part - ctx.half(builtin, k)) for k, part in halves
        )
        data["max_difference_builtin"] = user_builtin
        evidence += f", from the v1 built-in {user_builtin:.2g}"

    if first is None:
        evidence += f" over {TIME} steps" + note
        return CheckResult(CHECK, TITLE, PASS, evidence, "", data)
    evidence = (
        f"outputs diverge at step {first} (difference {per_step[first]:.2g}"
        f" there); " + evidence + note
    )
    fix = (
        "Compare the step with lstmkit's LSTMCell.step: z = x @ W_x + "
        "h_prev @ W_h + b, c = sigmoid(f) * c_prev + sigmoid(i) * tanh(j), "
        "h = sigmoid(o) * tanh(c)."
    )
    if first == 0:
        fix = (
            "The first step already differs, so the input projection, bias "
            "or activations differ. " + fix
        )
    return CheckResult(CHECK, TITLE, FAULT, evidence, fix, data)


def _align_lstm(ctx: ProbeContext):
    finding = layout.find_layout(ctx)
    if not finding.usable:
        return CheckResult(
            CHECK, TITLE, SKIPPED, "no gate order was found (see layout)"
        )
    measured = forget_bias.measure(ctx)
    reference_weights, forget_biases = [], []
    for variables, direction, bias_found in zip(
        ctx.instance.directions(), finding.directions, measured
    ):
        depth, units = ctx.input_depth, ctx.units
        kernel = ctx.rng.normal(0.0, WEIGHT_SCALE, [depth + units, 4 * units])
        bias = ctx.rng.normal(0.0, WEIGHT_SCALE, [4 * units])
        if not direction.storage.bias_roles:
            bias = np.zeros_like(bias)
        values = weights.from_canonical(
            direction.storage, direction.order, kernel, bias, ctx.rng
        )
        for index, value in values.items():
            variable = variables[index]
            variable.assign(value.astype(numpy_dtype(variable)))
        dtype = ctx.dtype
        reference_weights.append([kernel.astype(dtype), bias.astype(dtype)])
        runtime = bias_found.runtime
        if runtime is None:
            runtime = layout.judged_convention(ctx).runtime_forget_bias
        forget_biases.append(runtime)
    return reference_weights, forget_biases


def _align_custom(ctx: ProbeContext):
    reference_weights = []
    for variables in ctx.instance.directions():
        cell = ctx.adapter.reference_cell(ctx.units)
        cell.build((None, ctx.input_depth))
        arrays = [
            ctx.rng.normal(0.0, WEIGHT_SCALE, w.shape).astype(w.dtype)
            for w in cell.get_weights()
        ]
        shapes = [tuple(a.shape) for a in arrays]
        own = [tuple(v.shape) for v in variables]
        if shapes != own:
            return CheckResult(
                CHECK, TITLE, FAULT,
                f"the code's weights per direction have shapes {own}, but "
                f"the reference cell {type(cell).__name__} has {shapes}",
                "Create the weights in the order and shapes of the "
                "reference cell's get_weights().",
            )
        for variable, array in zip(variables, arrays):
            variable.assign(array.astype(numpy_dtype(variable)))
        reference_weights.append(arrays)
    return reference_weights, [0.0] * len(reference_weights)


def _arrange(
    ctx: ProbeContext, structure: bidirectional.Structure, outputs: np.ndarray
) -> tuple[list[tuple[int, np.ndarray]], str]:
    """Pairs each reference half with the code's matching output half."""
    if not ctx.bidirectional:
        return [(0, ctx.half(outputs, 0))], ""
    if structure.forward_half is None:
        return [(0, ctx.half(outputs, 0))], (
            " (forward half only: no half behaves as a forward LSTM)"
        )
    halves = [(0, ctx.half(outputs, structure.forward_half))]
    backward = ctx.half(outputs, structure.backward_half)
    if structure.backward == bidirectional.UNREVERSED:
        backward = backward[:, ::-1]
    if structure.backward is None:
        return halves, " (forward half only: backward outputs misaligned)"
    halves.append((1, backward))
    return halves, ""
