"""Ratios, tables, and the JSON and CSV files of a benchmark run.

Every time is divided by the fastest built-in of its case: the
implementation of kind "builtin" (see `implementations.KINDS`) with the
smallest median among those that passed the correctness check. Raw ops,
lstmkit and the bounds are reported beside it but never count as the
fastest built-in.
"""

import csv
import io
import json
import logging
import pathlib
from typing import Any

from lstmkit.bench import guard, tables
from lstmkit.bench.cases import Case
from lstmkit.bench.implementations import REGISTRY
from lstmkit.bench.runner import Result
from lstmkit.files import write_text

logger = logging.getLogger(__name__)

REPORT_NAME = "bench.json"
CSV_NAME = "bench.csv"
TABLES_NAME = "bench.md"

# Statuses whose times may count for the fastest built-in.
_TRUSTED = (guard.STATUS_OK, guard.STATUS_NOT_CHECKED)

CSV_COLUMNS = (
    "shape",
    "batch",
    "time",
    "input_depth",
    "units",
    "mode",
    "lengths",
    "direction",
    "implementation",
    "kind",
    "status",
    "ratio_to_fastest_builtin",
    "fastest_builtin",
    "median_ms",
    "q1_ms",
    "q3_ms",
    "min_ms",
    "max_ms",
    "repeats",
    "first_call_s",
    "max_output_diff",
    "max_gradient_diff",
    "traces",
    "memory_above_baseline_mib",
    "memory_baseline_mib",
    "message",
)


def fastest_builtins(results: list[Result]) -> dict[Case, Result]:
    """Finds the fastest trusted built-in of each case that has one."""
    fastest = {}
    for result in results:
        entry = REGISTRY.get(result.implementation)
        if entry is None or not entry.builtin or result.timing is None:
            continue
        if result.status not in _TRUSTED:
            continue
        best = fastest.get(result.case)
        if best is None or result.timing.median < best.timing.median:
            fastest[result.case] = result
    return fastest


def result_rows(results: list[Result]) -> list[dict[str, Any]]:
    """Flattens results into report rows, with ratios and times in ms.

    Returns:
        One dictionary per result with the keys of `CSV_COLUMNS` and
        `samples_ms`, every timed call in call order.
    """
    fastest = fastest_builtins(results)
    return [_row(result, fastest.get(result.case)) for result in results]


def _row(result: Result, fastest: Result | None) -> dict[str, Any]:
    shape, case = result.case.shape, result.case
    entry = REGISTRY.get(result.implementation)
    row = {
        "shape": shape.name,
        "batch": shape.batch,
        "time": shape.time,
        "input_depth": shape.input_depth,
        "units": shape.units,
        "mode": case.mode,
        "lengths": case.lengths,
        "direction": case.direction,
        "implementation": result.implementation,
        "kind": entry.kind if entry else None,
        "status": result.status,
        "ratio_to_fastest_builtin": None,
        "fastest_builtin": fastest.implementation if fastest else None,
        "median_ms": None,
        "q1_ms": None,
        "q3_ms": None,
        "min_ms": None,
        "max_ms": None,
        "repeats": 0,
        "first_call_s": result.first_call_s,
        "max_output_diff": result.max_output_diff,
        "max_gradient_diff": result.max_gradient_diff,
        "traces": result.traces,
        "memory_above_baseline_mib": None,
        "memory_baseline_mib": None,
        "message": result.message,
        "samples_ms": [],
    }
    timing = result.timing
    if timing is not None:
        for name in ("median", "q1", "q3", "min", "max"):
            row[f"{name}_ms"] = getattr(timing, name) * 1000
        row["repeats"] = len(timing.samples)
        row["samples_ms"] = [sample * 1000 for sample in timing.samples]
        if fastest is not None:
            row["ratio_to_fastest_builtin"] = (
                timing.median / fastest.timing.median
            )
    _add_memory(row, result)
    return row


def _add_memory(row: dict[str, Any], result: Result) -> None:
    memory = result.memory
    if memory is None:
        return
    row["memory_above_baseline_mib"] = memory.above_baseline_mib
    row["memory_baseline_mib"] = memory.baseline_mib

    note = memory.error
    if not note and not memory.peak_was_reset:
        note = "peak not reset after the imports, which may own it"
    if note:
        row["message"] = "; ".join(
            filter(None, [row["message"], f"memory: {note}"])
        )


def build_document(
    rows: list[dict[str, Any]], metadata: dict[str, Any]
) -> dict[str, Any]:
    """Assembles the JSON report: `metadata`, then registry and rows."""
    return {
        **metadata,
        "tolerances": {
            "output_atol": guard.OUTPUT_ATOL,
            "gradient_rtol": guard.GRADIENT_RTOL,
        },
        "implementations": {
            name: {
                "description": entry.description,
                "kind": entry.kind,
                "jit_compile": entry.jit_compile,
                "per_row_lengths": entry.per_row_lengths,
            }
            for name, entry in REGISTRY.items()
        },
        "results": rows,
    }


def write_json(document: dict[str, Any], path: pathlib.Path) -> None:
    """Writes the JSON report."""
    write_text(json.dumps(document, indent=2) + "\n", path)


def format_csv(rows: list[dict[str, Any]]) -> str:
    """Formats rows as CSV with the columns `CSV_COLUMNS`.

    Numbers keep six significant digits; the JSON report keeps them all.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({
            key: f"{value:.6g}" if isinstance(value, float) else value
            for key, value in row.items()
        })
    return buffer.getvalue()


def write_csv(rows: list[dict[str, Any]], path: pathlib.Path) -> None:
    """Writes one CSV row per implementation and case."""
    write_text(format_csv(rows), path)


def write_reports(
    results: list[Result], metadata: dict[str, Any], out: pathlib.Path
) -> list[dict[str, Any]]:
    """Writes `REPORT_NAME`, `CSV_NAME` and `TABLES_NAME` into `out`.

    Args:
        results: the results so far.
        metadata: command, settings, versions, hardware and source state,
            as `build_document` and `tables.format_report` expect.
        out: an existing folder.

    Returns:
        The rows of `result_rows`.
    """
    rows = result_rows(results)
    write_json(build_document(rows, metadata), out / REPORT_NAME)
    write_csv(rows, out / CSV_NAME)
    write_text(tables.format_report(metadata, rows), out / TABLES_NAME)
    return rows
