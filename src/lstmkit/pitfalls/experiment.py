"""Train the correct model and every pitfall variant on the same batches.

For each seed, every variant starts from a copy of the correct model's
weights, and the initialization variant then redraws its kernels. All
variants train on the same batches in the same order. So a variant differs
from the correct model only by its mistake.
"""

import dataclasses
import logging
from typing import Any

import numpy as np

from lstmkit.pitfalls.variants import VARIANTS

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class PitfallsResult:
    """Per-seed histories of every variant.

    Attributes:
        metric: the metric the table compares (`test_f1` or
            `test_accuracy`).
        histories: `histories[variant][seed_index]` is that run's
            `History.as_dict()`.
        seeds: the seeds, in run order.
    """

    metric: str
    histories: dict[str, list[dict[str, list[float]]]]
    seeds: list[int]

    def final(self, variant: str) -> np.ndarray:
        """Returns the metric after the last epoch, one value per seed."""
        return np.array([h[self.metric][-1] for h in self.histories[variant]])

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "PitfallsResult":
        """Rebuilds a result from the contents of `pitfalls.json`."""
        return cls(
            document["metric"], document["histories"], document["seeds"]
        )

    def curves(self, variant: str) -> np.ndarray:
        """Returns the metric per epoch, `[seeds, epochs]`."""
        return np.array([h[self.metric] for h in self.histories[variant]])

    def summary_rows(self) -> list[dict[str, Any]]:
        """Summarizes each variant: mean, spread and cost of its final metric.

        `curve_mean` averages the metric over all epochs and seeds, so a
        variant that learns more slowly but ends equal still shows a cost
        there (`curve_cost_points`).
        """
        baseline = float(self.final("correct").mean())
        baseline_curve = float(self.curves("correct").mean())
        rows = []
        for variant in self.histories:
            values = 100 * self.final(variant)
            curve_mean = 100 * float(self.curves(variant).mean())
            rows.append({
                "variant": variant,
                "description": VARIANTS[variant].description,
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()),
                "max": float(values.max()),
                "cost_points": 100 * baseline - float(values.mean()),
                "curve_mean": curve_mean,
                "curve_cost_points": 100 * baseline_curve - curve_mean,
            })
        return rows


def main_metric(task_data: Any) -> str:
    """Returns `test_f1` for chunk tagging, else `test_accuracy`."""
    dataset = getattr(task_data, "dataset", None)
    if getattr(dataset, "tag_scheme", None) == "iob2":
        return "test_f1"
    return "test_accuracy"


def make_variant_models(
    task_data: Any, model: str, variants: list[str], units: int, seed: int
) -> dict[str, Any]:
    """Creates one model per variant, all from the correct model's weights."""
    from lstmkit.compare.models import copy_weights, make_model

    models = {}
    for name in ["correct", *[v for v in variants if v != "correct"]]:
        backend = VARIANTS[name](model)
        models[name] = make_model(task_data, backend, units)
        if name != "correct":
            copy_weights(models[name], models["correct"])
            backend.reinitialize(models[name].cells, seed)
    return models


def run_pitfalls(
    task_data: Any,
    model: str,
    variants: list[str],
    seeds: list[int],
    epochs: int,
    units: int,
    batch_size: int,
    learning_rate: float,
    progress: bool = True,
) -> PitfallsResult:
    """Trains every variant for every seed.

    Args:
        task_data: a prepared `lstmkit.compare.tasks.TaskData`.
        model: `"lstm"` or `"bilstm"`.
        variants: variant names; `"correct"` is always added.
        seeds: one full run of all variants per seed.
        epochs: passes over the training set.
        units: LSTM units per direction.
        batch_size: examples per step.
        learning_rate: Adam learning rate.
        progress: show a progress bar on stderr when it is a terminal.

    Returns:
        The histories of every variant and seed.
    """
    import keras

    from lstmkit.compare.training import train_side_by_side

    histories: dict[str, list] = {}
    for seed in seeds:
        logger.info("Training %d variants, seed %d", len(variants), seed)
        keras.utils.set_random_seed(seed)
        models = make_variant_models(task_data, model, variants, units, seed)
        result = train_side_by_side(
            models,
            task_data,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            progress=progress,
        )
        for name, history in result.histories.items():
            histories.setdefault(name, []).append(history.as_dict())
    return PitfallsResult(main_metric(task_data), histories, list(seeds))
