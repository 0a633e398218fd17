"""Runs the benchmark: every implementation on every case, in one process.

For each case the runner builds every implementation from the same
weights, calls each step once (the first call, timed on its own), checks
the checked implementations against the reference, runs the warm-up
calls, and then times all steps round-robin. Peak memory, when requested,
is measured afterwards in one child process per implementation and case.
"""

import dataclasses
import gc
import logging
from collections.abc import Callable
from typing import Any, Protocol

import tensorflow as tf

from lstmkit.bench import guard, memory, timing
from lstmkit.bench.cases import QUICK_SHAPE, Case, CaseData, make_case_data
from lstmkit.bench.implementations import REFERENCE, REGISTRY, Implementation
from lstmkit.bench.memory import MemoryResult
from lstmkit.bench.timing import TimingStats

logger = logging.getLogger(__name__)

STATUS_NOT_APPLICABLE = "not_applicable"
STATUS_ERROR = "error"

# Errors an implementation may raise while it is built, traced, compiled
# or run. The runner records them and goes on with the others.
IMPLEMENTATION_ERRORS = (
    tf.errors.OpError,
    ValueError,
    TypeError,
    NotImplementedError,
    RuntimeError,
)


class Progress(Protocol):
    """The part of a `tqdm` progress bar the runner uses."""

    def update(self, n: int = 1) -> Any: ...

    def set_description(self, desc: str | None = None) -> Any: ...


class NoProgress:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        """Ignores `n`."""

    def set_description(self, desc: str | None = None) -> None:
        """Ignores `desc`."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Timing settings of a run.

    Attributes:
        repeats: timed calls per implementation and case.
        warmup: untimed calls after the first call.
        seed: seed of inputs, lengths and weights.
        memory: measure peak memory in child processes.
        start_up: before the first case, call every implementation once,
            untimed, on a tiny shape. Process-wide one-time costs (lazy
            imports, runtime start-up) then stay out of the first-call
            time of the first case.
    """

    repeats: int
    warmup: int
    seed: int
    memory: bool = False
    start_up: bool = True


@dataclasses.dataclass
class Result:
    """Everything measured for one implementation in one case.

    Attributes:
        case: the case.
        implementation: the registry name.
        status: a `guard` status (ok, mismatch, not_checked),
            `STATUS_NOT_APPLICABLE` or `STATUS_ERROR`.
        message: why the status is not ok, else empty.
        first_call_s: seconds of the first call (tracing, compilation and
            one run), or None.
        timing: the timed calls, or None when not timed.
        max_output_diff: see `guard.CheckResult`.
        max_gradient_diff: see `guard.CheckResult`.
        traces: how often the step was traced (1 unless something
            retraced it), or None.
        memory: peak memory of one step in a child process, or None.
    """

    case: Case
    implementation: str
    status: str
    message: str = ""
    first_call_s: float | None = None
    timing: TimingStats | None = None
    max_output_diff: float | None = None
    max_gradient_diff: float | None = None
    traces: int | None = None
    memory: MemoryResult | None = None


@dataclasses.dataclass
class _Prepared:
    """An implementation of one case, built and called once."""

    implementation: Implementation
    model: Any
    step: Any
    first_result: Any
    result: Result


def count_calls(
    cases: list[Case], implementations: list[Implementation], settings: Settings
) -> int:
    """Counts the progress steps of `run`: every call, and every child."""
    calls = 0
    for case in cases:
        for entry in implementations:
            if _applies(entry, case):
                calls += 1 + settings.warmup + settings.repeats
                calls += int(settings.memory)
    return calls


def run(
    cases: list[Case],
    implementations: list[Implementation],
    settings: Settings,
    progress: Progress | None = None,
    on_case_done: Callable[[list[Result]], None] = lambda results: None,
) -> list[Result]:
    """Benchmarks `implementations` on every case in turn.

    Args:
        cases: the cases, run in this order.
        implementations: the implementations to time. The reference is
            also built for the correctness check when it is not among
            them, but not timed.
        settings: repeats, warm-up calls, seed and memory.
        progress: advanced by one per call and per memory child.
        on_case_done: called with all results so far after each case.

    Returns:
        One `Result` per case and implementation, in that order.
    """
    progress = progress or NoProgress()
    if settings.start_up and cases:
        progress.set_description("start-up")
        _start_up(implementations, settings.seed)

    results = []
    for case in cases:
        progress.set_description(case.label)
        results += _run_case(case, implementations, settings, progress)
        gc.collect()
        on_case_done(results)

    if settings.memory:
        _measure_memory(results, settings, progress)
        on_case_done(results)
    return results


def _start_up(implementations: list[Implementation], seed: int) -> None:
    """Calls the forward step of every implementation once on a tiny shape."""
    case = Case(QUICK_SHAPE, "forward", "fixed", "uni")
    data = make_case_data(case, seed)
    entries = {entry.name: entry for entry in implementations}
    entries.setdefault(REFERENCE, REGISTRY[REFERENCE])
    for entry in entries.values():
        try:
            model = entry.build(case, data.weights)
            timing.make_step(model, data, case.mode, entry.jit_compile)()
        except IMPLEMENTATION_ERRORS as error:
            # The same error recurs, and is recorded, in the timed cases.
            logger.debug("start-up call of %s failed: %s", entry.name, error)
    gc.collect()


def _applies(entry: Implementation, case: Case) -> bool:
    return entry.per_row_lengths or case.lengths == "fixed"


def _run_case(
    case: Case,
    implementations: list[Implementation],
    settings: Settings,
    progress: Progress,
) -> list[Result]:
    data = make_case_data(case, settings.seed)
    reference = _prepare(REGISTRY[REFERENCE], case, data, settings.seed)

    prepared, results = [], []
    for entry in implementations:
        if not _applies(entry, case):
            results.append(_not_applicable(case, entry))
            continue
        if entry.name == REFERENCE:
            item = reference
        else:
            item = _prepare(entry, case, data, settings.seed)
        progress.update(1)
        results.append(item.result)
        if item.result.status != STATUS_ERROR:
            _check(item, reference, case.mode)
            prepared.append(item)

    _warm_up(prepared, settings.warmup, progress)
    steps = {item.implementation.name: item.step for item in prepared}
    samples = timing.time_interleaved(
        steps, settings.repeats, lambda: progress.update(1)
    )
    for item in prepared:
        item.result.timing = TimingStats.from_samples(
            samples[item.implementation.name]
        )
        item.result.traces = _tracing_count(item.step)
    return results


def _not_applicable(case: Case, entry: Implementation) -> Result:
    return Result(
        case,
        entry.name,
        STATUS_NOT_APPLICABLE,
        message="takes one length for the whole batch, not one per row",
    )


def _prepare(
    entry: Implementation, case: Case, data: CaseData, seed: int
) -> _Prepared:
    """Builds the model and step of `entry` and runs the first call."""
    import keras

    result = Result(case, entry.name, guard.STATUS_NOT_CHECKED)
    # Seeds the initializers of the variant cells, which do not copy the
    # case's weights.
    keras.utils.set_random_seed(seed)
    try:
        model = entry.build(case, data.weights)
        step = timing.make_step(model, data, case.mode, entry.jit_compile)
        result.first_call_s, first_result = timing.time_call(step)
    except IMPLEMENTATION_ERRORS as error:
        logger.error("%s failed on %s: %s", entry.name, case.label, error)
        result.status = STATUS_ERROR
        result.message = f"{type(error).__name__}: {error}"
        return _Prepared(entry, None, None, None, result)
    return _Prepared(entry, model, step, first_result, result)


def _check(item: _Prepared, reference: _Prepared, mode: str) -> None:
    """Sets the status of `item` from the correctness check."""
    result = item.result
    if not item.implementation.checked:
        result.message = "not an LSTM with v1 weights; timed only"
        return
    if reference.result.status == STATUS_ERROR:
        result.message = f"the reference {REFERENCE} failed"
        return

    outcome = guard.check(
        item.model,
        item.first_result,
        reference.model,
        reference.first_result,
        mode,
    )
    result.status = outcome.status
    result.message = outcome.message
    result.max_output_diff = outcome.max_output_diff
    result.max_gradient_diff = outcome.max_gradient_diff
    if outcome.status == guard.STATUS_MISMATCH:
        logger.warning(
            "%s disagrees with %s on %s: %s",
            item.implementation.name,
            REFERENCE,
            result.case.label,
            outcome.message,
        )


def _warm_up(prepared: list[_Prepared], calls: int, progress: Progress) -> None:
    for _ in range(calls):
        for item in prepared:
            item.step()
            progress.update(1)


def _tracing_count(step: Any) -> int | None:
    count = getattr(step, "experimental_get_tracing_count", None)
    return None if count is None else int(count())


def _measure_memory(
    results: list[Result], settings: Settings, progress: Progress
) -> None:
    for result in results:
        if result.timing is None:
            continue
        progress.set_description(
            f"memory {result.case.label} {result.implementation}"
        )
        result.memory = memory.measure(
            result.implementation, result.case, settings.seed
        )
        progress.update(1)
