"""The doctor's report: one result per check, as a table or as JSON."""

import dataclasses
import json
import logging
import math
import textwrap
from typing import Any

logger = logging.getLogger(__name__)

PASS = "PASS"
FAULT = "FAULT"
# A hazard that the built-in shares, such as NaN padding turning the v1
# built-in's weight gradients into NaN. Reported, but not a fault.
WARN = "WARN"
SKIPPED = "SKIPPED"
ERROR = "ERROR"

EXIT_OK = 0
EXIT_FAULT = 1
EXIT_ERROR = 2

# Column widths of the terminal table: check, result, evidence, fix.
_WIDTHS = (20, 7, 46, 34)


@dataclasses.dataclass
class CheckResult:
    """The outcome of one check.

    Attributes:
        check: the check's id, such as "forget_bias".
        title: what it checks, in a few words.
        status: PASS, FAULT, WARN, SKIPPED or ERROR.
        evidence: what was measured, such as the largest difference.
        fix: what to change, for FAULT and WARN.
        data: the measured numbers, for `--json`.
    """

    check: str
    title: str
    status: str
    evidence: str
    fix: str = ""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Report:
    """Everything `diagnose` found about one implementation.

    Attributes:
        target: the adapter's name.
        adapter: the adapter's kind ("function", "keras layer",
            "tf.Module").
        bidirectional: whether the code is a BiLSTM.
        convention: the convention the code was judged against, or None.
        convention_source: "declared", "inferred", or None.
        layout: the storage format and gate order per direction, when
            found.
        results: one `CheckResult` per check, in a fixed order.
        error: why the code could not be run at all, or None.
    """

    target: str
    adapter: str
    bidirectional: bool
    convention: str | None = None
    convention_source: str | None = None
    layout: dict[str, Any] | None = None
    results: list[CheckResult] = dataclasses.field(default_factory=list)
    error: str | None = None

    @property
    def faults(self) -> set[str]:
        """Ids of the checks that found a fault."""
        return {r.check for r in self.results if r.status == FAULT}

    @property
    def warnings(self) -> set[str]:
        """Ids of the checks that reported a warning."""
        return {r.check for r in self.results if r.status == WARN}

    @property
    def exit_status(self) -> int:
        """2 when the code could not be run, 1 on a fault, else 0."""
        if self.error or any(r.status == ERROR for r in self.results):
            return EXIT_ERROR
        if self.faults:
            return EXIT_FAULT
        return EXIT_OK

    def result(self, check: str) -> CheckResult:
        """Returns the result of the check with id `check`.

        Raises:
            KeyError: no such check in this report.
        """
        for result in self.results:
            if result.check == check:
                return result
        raise KeyError(f"No check {check!r} in this report.")

    def to_dict(self) -> dict[str, Any]:
        """Converts the report to plain data, with the exit status."""
        data = dataclasses.asdict(self)
        data["exit_status"] = self.exit_status
        data["faults"] = sorted(self.faults)
        return data

    def to_json(self) -> str:
        """Serializes the report as indented JSON.

        NaN and infinite numbers (from code whose outputs are not finite)
        become null, because JSON has no literal for them.
        """
        return json.dumps(
            _finite_or_none(self.to_dict()), indent=2, allow_nan=False
        )

    def format_table(self) -> str:
        """Formats the report as a text table for a terminal."""
        lines = [self._header()]
        if self.error:
            lines.append(f"ERROR: {self.error}")
            return "\n".join(lines)
        rows = [("check", "result", "evidence", "fix")]
        rows += [(r.check, r.status, r.evidence, r.fix) for r in self.results]
        lines += _table(rows)
        lines.append(self._summary())
        return "\n".join(lines)

    def _header(self) -> str:
        kind = "BiLSTM" if self.bidirectional else "LSTM"
        text = f"lstmkit doctor: {self.target} ({self.adapter}, {kind})"
        if self.convention:
            text += f"; convention {self.convention} ({self.convention_source})"
        return text

    def _summary(self) -> str:
        counts = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        parts = [f"{counts[s]} {s.lower()}" for s in
                 (PASS, FAULT, WARN, SKIPPED, ERROR) if s in counts]
        faults = ", ".join(sorted(self.faults)) or "none"
        return f"{', '.join(parts)}. Faults: {faults}."


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    lines = []
    for index, row in enumerate(rows):
        cells = [
            textwrap.wrap(str(text), width) or [""]
            for text, width in zip(row, _WIDTHS)
        ]
        height = max(len(cell) for cell in cells)
        for line in range(height):
            parts = [
                (cell[line] if line < len(cell) else "").ljust(width)
                for cell, width in zip(cells, _WIDTHS)
            ]
            lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in _WIDTHS))
    return lines


def _finite_or_none(value: Any) -> Any:
    """Converts NumPy values to plain data and non-finite floats to None."""
    if isinstance(value, dict):
        return {str(key): _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _finite_or_none(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)
