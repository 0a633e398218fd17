"""Reports of a pitfalls run: JSON, a Markdown table and learning curves."""

import pathlib
from typing import Any

import numpy as np

from lstmkit.compare.report import versions, write_json
from lstmkit.files import atomic_write, write_text
from lstmkit.pitfalls.experiment import PitfallsResult

JSON_NAME = "pitfalls.json"
TABLE_NAME = "pitfalls.md"
PLOT_NAME = "pitfalls.png"


def build_document(
    result: PitfallsResult, settings: dict[str, Any]
) -> dict[str, Any]:
    """Assembles everything a pitfalls run writes to `pitfalls.json`."""
    return {
        "metric": result.metric,
        "seeds": result.seeds,
        "summary": result.summary_rows(),
        "histories": result.histories,
        "settings": settings,
        "versions": versions(),
    }


def format_table(result: PitfallsResult) -> str:
    """Formats the summary as a Markdown table, in percent."""
    metric = result.metric.removeprefix("test_").replace("f1", "F1")
    lines = [
        f"| variant | mistake | final {metric} mean (%) | std | min | max "
        "| cost (points) | mean over epochs (%) | cost over epochs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.summary_rows():
        lines.append(
            f"| {row['variant']} | {row['description']} | "
            f"{row['mean']:.2f} | {row['std']:.2f} | {row['min']:.2f} | "
            f"{row['max']:.2f} | {row['cost_points']:+.2f} | "
            f"{row['curve_mean']:.2f} | {row['curve_cost_points']:+.2f} |"
        )
    return "\n".join(lines)


def write_reports(
    result: PitfallsResult,
    settings: dict[str, Any],
    out: pathlib.Path,
    title: str,
) -> None:
    """Writes the JSON, the Markdown table and the PNG to `out` atomically."""
    write_json(build_document(result, settings), out / JSON_NAME)
    command = settings.get("command", "")
    table = format_table(result)
    write_text(f"# {title}\n\n`{command}`\n\n{table}\n", out / TABLE_NAME)
    plot_curves(result, out / PLOT_NAME, title)


def plot_curves(
    result: PitfallsResult, path: pathlib.Path, title: str
) -> None:
    """Plots the mean metric per epoch of every variant, with its range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 5))
    for variant in result.histories:
        curves = 100 * result.curves(variant)
        epochs = np.arange(1, curves.shape[1] + 1)
        style = {}
        if variant == "correct":
            style = {"linewidth": 3, "color": "black"}
        axis.plot(epochs, curves.mean(0), "-o", label=variant, **style)
        axis.fill_between(
            epochs, curves.min(0), curves.max(0), alpha=0.15,
            color=style.get("color"),
        )

    metric = result.metric.removeprefix("test_")
    axis.set(
        xlabel="epoch",
        ylabel=f"test {metric} (%)",
        title=f"{title}: mean of {len(result.seeds)} seeds, band = min..max",
    )
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    atomic_write(
        path, lambda file: figure.savefig(file, format="png", dpi=110)
    )
    plt.close(figure)
