"""The correctness check run before any implementation is timed.

Every checked implementation (see `Implementation.checked`) runs on the
same inputs and weights as the reference, the v1 `dynamic_rnn`, and its
outputs and, in the "train" mode, its gradients are compared with the
reference's. An implementation outside the tolerances is still timed, but
the report marks it as a mismatch and leaves it out of the fastest
built-in.
"""

import dataclasses
import logging
from typing import Any

import numpy as np

from lstmkit.bench.models import BenchModel

logger = logging.getLogger(__name__)

# Largest absolute difference of the outputs (which lie in [-1, 1]) from
# the reference. On the three preset shapes (TensorFlow 2.21, 2-core CPU)
# the correct implementations differed by at most 4e-7, from float32
# rounding in another order.
OUTPUT_ATOL = 1e-4
# Largest difference of a gradient from the reference's, divided by the
# largest absolute value of the reference's gradient. Gradients sum over
# batch and time, so the rounding grows with both; on the preset shapes it
# reached 3e-6.
GRADIENT_RTOL = 1e-4

STATUS_OK = "ok"
STATUS_MISMATCH = "mismatch"
STATUS_NOT_CHECKED = "not_checked"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Outcome of the correctness check of one implementation in one case.

    Attributes:
        status: `STATUS_OK`, `STATUS_MISMATCH` or `STATUS_NOT_CHECKED`.
        max_output_diff: largest absolute output difference, or None when
            not checked.
        max_gradient_diff: largest relative gradient difference (see
            `GRADIENT_RTOL`), or None when not checked or in the "forward"
            mode.
        message: what differed, or why nothing was checked.
    """

    status: str
    max_output_diff: float | None = None
    max_gradient_diff: float | None = None
    message: str = ""


def split_result(result: Any, mode: str) -> tuple[np.ndarray, list[Any]]:
    """Splits a step's result into outputs and gradients, as NumPy arrays.

    Args:
        result: the outputs (mode "forward"), or `(outputs, gradients)`
            with gradients of the inputs first, then of `model.variables`
            (mode "train").
        mode: "forward" or "train".
    """
    if mode == "forward":
        return np.asarray(result), []
    outputs, gradients = result
    return np.asarray(outputs), [np.asarray(g) for g in gradients]


def check(
    model: BenchModel,
    result: Any,
    reference: BenchModel,
    reference_result: Any,
    mode: str,
) -> CheckResult:
    """Compares one step's result with the reference's on the same data.

    Args:
        model: the implementation's model; its `v1_gradients` maps its
            weight gradients to the v1 layout.
        result: the implementation's first step result (see
            `split_result`).
        reference: the reference model.
        reference_result: the reference's first step result.
        mode: "forward" or "train".

    Returns:
        `STATUS_OK` when the outputs are within `OUTPUT_ATOL` and the
        gradients within `GRADIENT_RTOL`, else `STATUS_MISMATCH` with the
        first thing that differed.
    """
    outputs, gradients = split_result(result, mode)
    expected_outputs, expected_gradients = split_result(
        reference_result, mode
    )
    if outputs.shape != expected_outputs.shape:
        return CheckResult(
            STATUS_MISMATCH,
            message=f"outputs have shape {outputs.shape}, expected "
            f"{expected_outputs.shape}",
        )
    output_diff = float(np.max(np.abs(outputs - expected_outputs)))
    if mode == "forward":
        return _verdict(output_diff, None, [])

    actual = _named_v1_gradients(model, gradients)
    expected = _named_v1_gradients(reference, expected_gradients)
    gradient_diff, problems = _compare_gradients(actual, expected)
    return _verdict(output_diff, gradient_diff, problems)


def _named_v1_gradients(
    model: BenchModel, gradients: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """Names the input gradient and the v1-layout weight gradients."""
    named = {"inputs": gradients[0]}
    weight_gradients = model.v1_gradients(gradients[1:])
    for index, gradient in enumerate(weight_gradients):
        direction = "forward" if index < 2 else "backward"
        part = "kernel" if index % 2 == 0 else "bias"
        named[f"{direction} {part}"] = gradient
    return named


def _compare_gradients(
    actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]
) -> tuple[float, list[str]]:
    """Returns the largest relative difference and what exceeded the limit."""
    largest, problems = 0.0, []
    for name, expected_gradient in expected.items():
        gradient = actual.get(name)
        if gradient is None or gradient.shape != expected_gradient.shape:
            shape = None if gradient is None else gradient.shape
            problems.append(
                f"{name} gradient has shape {shape}, expected "
                f"{expected_gradient.shape}"
            )
            continue
        scale = max(float(np.max(np.abs(expected_gradient))), 1e-30)
        difference = float(np.max(np.abs(gradient - expected_gradient)))
        relative = difference / scale
        largest = max(largest, relative)
        if not relative <= GRADIENT_RTOL:
            problems.append(
                f"{name} gradient differs by {relative:.3g} of its largest "
                f"value (limit {GRADIENT_RTOL:g})"
            )
    return largest, problems


def _verdict(
    output_diff: float, gradient_diff: float | None, problems: list[str]
) -> CheckResult:
    if not output_diff <= OUTPUT_ATOL:
        problems = [
            f"outputs differ by up to {output_diff:.3g} (limit "
            f"{OUTPUT_ATOL:g})",
            *problems,
        ]
    status = STATUS_MISMATCH if problems else STATUS_OK
    return CheckResult(status, output_diff, gradient_diff, "; ".join(problems))
