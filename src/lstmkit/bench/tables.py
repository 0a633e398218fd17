"""Markdown tables of a benchmark run, for the terminal and for docs.

One group of tables per mode and length mode. Each has a column per
shape and direction and a row per implementation: first the ratios to the
fastest built-in, then the median times, then the first-call times.
"""

import logging
from collections.abc import Callable
from typing import Any

from lstmkit.bench import guard
from lstmkit.bench.runner import STATUS_ERROR, STATUS_NOT_APPLICABLE

logger = logging.getLogger(__name__)

_MODE_TITLES = {"forward": "Forward only", "train": "Training step"}
_MISMATCH_MARK = "!"


def format_tables(rows: list[dict[str, Any]]) -> str:
    """Formats the ratio, median and first-call tables of every group.

    Args:
        rows: rows from `report.result_rows`.
    """
    groups = _unique((row["mode"], row["lengths"]) for row in rows)
    sections = []
    for mode, lengths in groups:
        group_rows = [
            row for row in rows
            if row["mode"] == mode and row["lengths"] == lengths
        ]
        sections.append(_format_group(mode, lengths, group_rows))
    legend = (
        f"{_MISMATCH_MARK}: disagrees with the reference (see the message "
        "in the CSV); n/a: not applicable; error: failed (see the log)."
    )
    return "\n\n".join([*sections, legend]) + "\n"


def format_report(metadata: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Formats the command, versions, hardware and source, then the tables.

    Args:
        metadata: the report's `command`, `versions`, `hardware`, `source`
            and `started_at` (see `lstmkit.bench.environment`).
        rows: rows from `report.result_rows`.
    """
    versions = ", ".join(
        f"{name} {version}" for name, version in metadata["versions"].items()
    )
    hardware = metadata["hardware"]
    gpus = ", ".join(hardware["gpus"]) or "none"
    source = metadata["source"]
    commit = source["commit"] or "unknown (not a git checkout)"
    changes = ", uncommitted changes" if source["dirty"] else ""
    return "\n\n".join([
        "# lstmkit bench",
        f"Command: `{metadata['command']}`",
        f"Versions: {versions}.",
        f"Hardware: {hardware['cpu_model']}, {hardware['cpu_count']} CPUs, "
        f"GPUs: {gpus}.",
        f"Source: commit {commit}{changes}. Started "
        f"{metadata['started_at']}.",
        format_tables(rows),
    ])


def _format_group(mode: str, lengths: str, rows: list[dict[str, Any]]) -> str:
    title = f"{_MODE_TITLES.get(mode, mode)}, {lengths} lengths"
    columns = _unique((row["shape"], row["direction"]) for row in rows)
    names = _unique(row["implementation"] for row in rows)
    cells = {
        (row["implementation"], row["shape"], row["direction"]): row
        for row in rows
    }

    ratio_table = _table(
        names, columns, cells, _ratio_text,
        extra_rows=[_fastest_row(columns, rows)],
    )
    median_table = _table(
        names, columns, cells, lambda row: _timed_text(row, "median_ms")
    )
    first_call_table = _table(
        names, columns, cells, _first_call_text
    )
    return "\n\n".join([
        f"### {title}: time / fastest built-in (below 1 is faster)",
        ratio_table,
        _fastest_names(columns, rows),
        f"### {title}: median time per call (ms)",
        median_table,
        f"### {title}: first call, tracing and compilation included (s)",
        first_call_table,
    ])


def _unique(values: Any) -> list[Any]:
    return list(dict.fromkeys(values))


def _table(
    names: list[str],
    columns: list[tuple[str, str]],
    cells: dict[tuple[str, str, str], dict[str, Any]],
    cell_text: Callable[[dict[str, Any]], str],
    extra_rows: list[list[str]] = (),
) -> str:
    header = ["implementation", *[f"{s} {d}" for s, d in columns]]
    body = [list(row) for row in extra_rows]
    for name in names:
        body.append([
            name,
            *[
                cell_text(cells[(name, s, d)]) if (name, s, d) in cells
                else ""
                for s, d in columns
            ],
        ])
    return _markdown(header, body)


def _markdown(header: list[str], body: list[list[str]]) -> str:
    """Pads a pipe table so that its columns line up in a terminal."""
    widths = [
        max(len(line[index]) for line in [header, *body])
        for index in range(len(header))
    ]

    def line(values: list[str]) -> str:
        padded = [values[0].ljust(widths[0])]
        padded += [v.rjust(w) for v, w in zip(values[1:], widths[1:])]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (width + 1) + ("-" if index == 0 else ":")
        for index, width in enumerate(widths)
    ) + "|"
    return "\n".join([line(header), rule, *map(line, body)])


def _fastest_row(
    columns: list[tuple[str, str]], rows: list[dict[str, Any]]
) -> list[str]:
    """Returns the row of the fastest built-in's median per column."""
    values = ["fastest built-in (ms)"]
    for shape, direction in columns:
        fastest = _fastest(rows, shape, direction)
        values.append(
            _milliseconds(fastest["median_ms"]) if fastest else "none"
        )
    return values


def _fastest_names(
    columns: list[tuple[str, str]], rows: list[dict[str, Any]]
) -> str:
    parts = []
    for shape, direction in columns:
        fastest = _fastest(rows, shape, direction)
        name = fastest["implementation"] if fastest else "none timed"
        parts.append(f"{shape} {direction}: {name}")
    return "Fastest built-in: " + "; ".join(parts) + "."


def _fastest(
    rows: list[dict[str, Any]], shape: str, direction: str
) -> dict[str, Any] | None:
    for row in rows:
        if (
            row["shape"] == shape
            and row["direction"] == direction
            and row["implementation"] == row["fastest_builtin"]
        ):
            return row
    return None


def _status_text(row: dict[str, Any]) -> str | None:
    if row["status"] == STATUS_NOT_APPLICABLE:
        return "n/a"
    if row["status"] == STATUS_ERROR:
        return "error"
    return None


def _ratio_text(row: dict[str, Any]) -> str:
    status = _status_text(row)
    if status:
        return status
    ratio = row["ratio_to_fastest_builtin"]
    text = "-" if ratio is None else f"{ratio:.2f}"
    if row["status"] == guard.STATUS_MISMATCH:
        text += _MISMATCH_MARK
    return text


def _timed_text(row: dict[str, Any], key: str) -> str:
    status = _status_text(row)
    if status:
        return status
    text = "-" if row[key] is None else _milliseconds(row[key])
    if row["status"] == guard.STATUS_MISMATCH:
        text += _MISMATCH_MARK
    return text


def _first_call_text(row: dict[str, Any]) -> str:
    status = _status_text(row)
    if status:
        return status
    value = row["first_call_s"]
    return "-" if value is None else f"{value:.2f}"


def _milliseconds(value: float) -> str:
    """Formats a time in ms with about three significant digits."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
