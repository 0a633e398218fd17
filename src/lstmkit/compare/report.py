"""Reports of a comparison run: a JSON file, a plot and a terminal table."""

import json
import os
import pathlib
import platform
import sys
from typing import Any

import numpy as np

from lstmkit.compare.training import ComparisonResult
from lstmkit.files import atomic_write, write_text

REPORT_NAME = "report.json"
PLOT_NAME = "learning_curves.png"


def versions() -> dict[str, str]:
    """Collects the versions and hardware a result depends on."""
    import keras
    import tensorflow as tf
    import tf_keras

    import lstmkit

    return {
        "lstmkit": lstmkit.__version__,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_keras": tf_keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": _processor_name(),
        "cpu_count": str(os.cpu_count()),
        "gpus": str(len(tf.config.list_physical_devices("GPU"))),
    }


def _processor_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_report(
    result: ComparisonResult, settings: dict[str, Any]
) -> dict[str, Any]:
    """Assembles the report dictionary written to `report.json`."""
    return {
        "models": {
            name: history.as_dict()
            for name, history in result.histories.items()
        },
        "max_abs_logit_diff": result.logit_diffs[-1],
        "max_abs_logit_diff_per_epoch": result.logit_diffs,
        "settings": settings,
        "versions": versions(),
    }


def write_json(report: dict[str, Any], path: pathlib.Path) -> None:
    """Writes `report` as indented JSON to `path` atomically.

    Raises:
        TypeError: `report` contains a value that JSON cannot store.
            `path` is left unchanged.
    """
    write_text(json.dumps(report, indent=2) + "\n", path)


def plot_learning_curves(
    report: dict[str, Any], path: pathlib.Path, title: str
) -> None:
    """Plots loss, accuracy and logit difference per epoch to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    epochs = np.arange(1, len(next(iter(models.values()))["train_loss"]) + 1)
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    styles = {"lstmkit": "-o", "builtin": "--s"}

    for name, history in models.items():
        style = styles.get(name, "-")
        axes[0].plot(epochs, history["train_loss"], style, label=name)
        for metric in [k for k in history if k.startswith("test_")]:
            values = 100 * np.asarray(history[metric])
            label = f"{name} {metric.removeprefix('test_')}"
            axes[1].plot(epochs, values, style, label=label)
    diffs = np.maximum(report["max_abs_logit_diff_per_epoch"], 1e-12)
    axes[2].semilogy(epochs, diffs, "-o", color="black")

    axes[0].set(xlabel="epoch", ylabel="train loss", title="Training loss")
    axes[1].set(xlabel="epoch", ylabel="percent", title="Test metrics")
    axes[2].set(xlabel="epoch", ylabel="max |logit difference|",
                title="lstmkit vs built-in, test logits")
    for axis in axes[:2]:
        axis.legend()
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.set_xticks(epochs)
    figure.suptitle(title)
    figure.tight_layout()
    atomic_write(
        path, lambda file: figure.savefig(file, format="png", dpi=110)
    )
    plt.close(figure)


def _metric_names(result: ComparisonResult) -> list[str]:
    return list(result.histories["lstmkit"].metrics)


def _short(metric: str) -> str:
    return metric.removeprefix("test_").replace("accuracy", "acc") + " %"


def _format_loss(loss: float) -> str:
    # Exponent notation keeps a diverging loss inside its column.
    if abs(loss) < 1e3:
        return f"{loss:>8.4f}"
    return f"{loss:>8.1e}"


def format_epoch_row(epoch: int, result: ComparisonResult) -> str:
    """Formats one epoch of both models as a row of the terminal table."""
    cells = [f"{epoch:>5}"]
    for name in ("lstmkit", "builtin"):
        history = result.histories[name]
        values = [_format_loss(history.train_loss[-1])]
        values += [
            f"{100 * history.metrics[m][-1]:>7.2f}"
            for m in _metric_names(result)
        ]
        values.append(f"{history.seconds[-1]:>6.1f}")
        cells.append(" ".join(values))
    cells.append(f"{result.logit_diffs[-1]:>12.2e}")
    return " | ".join(cells)


def table_header(result: ComparisonResult) -> str:
    """Returns the two header lines matching `format_epoch_row`."""
    names = [f"{'loss':>8}"]
    names += [f"{_short(m):>7}" for m in _metric_names(result)]
    names.append(f"{'sec':>6}")
    group = " ".join(names)
    width = len(group)
    first = (
        f"{'':>5} | {'lstmkit':^{width}} | {'builtin':^{width}} | "
        f"{'max |dlogit|':>12}"
    )
    second = f"{'epoch':>5} | {group} | {group} | {'':>12}"
    return first + "\n" + second
