"""`diagnose`: run every check on one implementation and collect a report."""

import logging
from collections.abc import Callable

from lstmkit.doctor import (
    adapters,
    bidirectional,
    divergence,
    forget_bias,
    initialization,
    layout,
    padding,
)
from lstmkit.doctor.context import ProbeContext
from lstmkit.doctor.report import ERROR, CheckResult, Report

logger = logging.getLogger(__name__)

# Every check, in report order: (id, title, function).
CHECKS: tuple[tuple[str, str, Callable[[ProbeContext], CheckResult]], ...] = (
    (layout.CHECK, layout.TITLE, layout.check_layout),
    (forget_bias.CHECK, forget_bias.TITLE, forget_bias.check_forget_bias),
    (
        initialization.CHECK,
        initialization.TITLE,
        initialization.check_initialization,
    ),
    ("padding_outputs", "outputs past the length", padding.check_outputs),
    ("padding_state", "final state at the length", padding.check_state),
    (
        "padding_values",
        "padding values leak into valid steps",
        padding.check_values,
    ),
    ("padding_nan", "NaN padding", padding.check_nan),
    ("bidi_order", "order of directions", bidirectional.check_direction_order),
    (
        "bidi_reverse_back",
        "backward outputs reversed back",
        bidirectional.check_reverse_back,
    ),
    ("bidi_per_length", "per-length reversal", bidirectional.check_per_length),
    (
        "state_order",
        "(c, h) order of the final state",
        bidirectional.check_state_order,
    ),
    (divergence.CHECK, divergence.TITLE, divergence.check_divergence),
)

CHECK_IDS = tuple(check for check, _, _ in CHECKS)


def diagnose(adapter: adapters.Adapter, seed: int = 0) -> Report:
    """Runs every check on the user's implementation.

    Args:
        adapter: a `FunctionAdapter`, `KerasLayerAdapter` or
            `ModuleAdapter` around the code.
        seed: seed of the random weights and inputs of the probes.

    Returns:
        A `Report`. When the code cannot be created or run at all,
        `report.error` contains the message and there are no results. A
        failure inside one probe gives that check the status ERROR.
    """
    report = Report(
        target=adapter.name,
        adapter=adapter.kind,
        bidirectional=adapter.bidirectional,
    )
    try:
        ctx = ProbeContext(adapter, seed)
    except adapters.UserCodeError as error:
        report.error = str(error)
        logger.debug("%s could not run: %s", adapter.name, error)
        return report

    for check, title, function in CHECKS:
        try:
            result = function(ctx)
        except adapters.UserCodeError as error:
            result = CheckResult(check, title, ERROR, str(error))
        report.results.append(result)

    _describe_layout(ctx, report)
    return report


def _describe_layout(ctx: ProbeContext, report: Report) -> None:
    try:
        finding = layout.find_layout(ctx)
    except adapters.UserCodeError:
        finding = None
    if finding is None:
        report.convention = ctx.adapter.convention
        report.convention_source = "declared" if report.convention else None
        return
    try:
        convention = layout.judged_convention(ctx)
    except adapters.UserCodeError:
        convention = None
    if convention is not None:
        report.convention = convention.name
        report.convention_source = finding.source
    candidate = "j"
    if convention is not None:
        candidate = next(c for c in convention.gate_order if c in "jcg")
    # Gate orders use the judged convention's letter for the candidate.
    report.layout = {
        "directions": [
            {
                "weight_format": d.storage.weight_format,
                "gate_order": d.order and d.order.replace("j", candidate),
            }
            for d in finding.directions
        ]
    }
