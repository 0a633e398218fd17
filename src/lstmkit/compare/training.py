"""Side-by-side training of lstmkit and the built-in on identical batches."""

import dataclasses
import logging
import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from lstmkit.compare.tasks import Batch, TaskData

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class History:
    """Per-epoch results of one model.

    Attributes:
        train_loss: mean training cross-entropy of each epoch (per example
            for classification, per valid token for tagging).
        metrics: per-epoch test metrics by name, such as `test_accuracy`
            (a fraction in [0, 1]) and, for chunking, `test_f1`.
        seconds: training time of each epoch, evaluation excluded.
    """

    train_loss: list[float] = dataclasses.field(default_factory=list)
    metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    seconds: list[float] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, list[float]]:
        """Returns the report layout: one flat list per quantity."""
        return {
            "train_loss": self.train_loss,
            **self.metrics,
            "seconds": self.seconds,
        }


@dataclasses.dataclass
class ComparisonResult:
    """Histories of both models and how far their test logits drifted.

    Attributes:
        histories: `{"lstmkit": History, "builtin": History}`.
        logit_diffs: per epoch, the largest absolute difference between
            the two models' test logits (valid steps only for tagging).
    """

    histories: dict[str, History]
    logit_diffs: list[float]


def make_train_step(
    model: Any, task: TaskData, optimizer: keras.optimizers.Optimizer
) -> Callable[..., tf.Tensor]:
    """Returns a compiled step: one Adam update on one batch, returns loss."""
    variables = model.variables_in_order

    signature = task.signature(with_labels=True)
    signature.append(tf.TensorSpec([2], tf.int32))

    @tf.function(input_signature=signature)
    def train_step(inputs, lengths, labels, dropout_seed) -> tf.Tensor:
        _set_cells_training(model, True)
        with tf.GradientTape() as tape:
            logits = model(inputs, lengths, dropout_seed=dropout_seed)
            loss = task.loss(logits, labels, lengths)
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    return train_step


def make_predict(model: Any, task: TaskData) -> Callable[..., tf.Tensor]:
    """Returns a compiled function from a batch's inputs to logits."""

    @tf.function(input_signature=task.signature(with_labels=False))
    def predict(inputs, lengths) -> tf.Tensor:
        _set_cells_training(model, False)
        return model(inputs, lengths)

    return predict


def _set_cells_training(model: Any, training: bool) -> None:
    # Zoneout, DropConnect and variational dropout cells read `training`
    # while a function is traced, so setting it here gives the training
    # step their random masks and the prediction function their inference
    # form.
    for cell in getattr(model, "cells", []):
        if hasattr(cell, "training"):
            cell.training = training


def predict_batches(
    predict: Callable[..., tf.Tensor], batches: list[Batch]
) -> list[np.ndarray]:
    """Computes the logits of every batch, in order."""
    return [
        predict(batch.inputs, batch.lengths).numpy()
        for batch in batches
    ]


def train_side_by_side(
    models: dict[str, Any],
    task: TaskData,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    on_epoch_end: Callable[[int, ComparisonResult], None] | None = None,
    progress: bool = True,
) -> ComparisonResult:
    """Trains every model on the same batches in the same order.

    The steps of the models alternate batch by batch, so both see the same
    machine load and their epoch times are comparable.

    Args:
        models: `{"lstmkit": ..., "builtin": ...}`, with equal weights.
        task: the prepared data and its loss and metrics.
        epochs: passes over the training set.
        batch_size: examples per step; some batches may be smaller.
        learning_rate: Adam learning rate, the same for both.
        seed: seeds the batch order of each epoch.
        on_epoch_end: called with the epoch number (from 1) and the result
            so far.
        progress: show a progress bar on stderr when it is a terminal.

    Returns:
        The histories and per-epoch logit differences.
    """
    names = list(models)
    steps = {
        name: make_train_step(
            model, task, keras.optimizers.Adam(learning_rate=learning_rate)
        )
        for name, model in models.items()
    }
    predicts = {name: make_predict(m, task) for name, m in models.items()}
    result = ComparisonResult({name: History() for name in names}, [])
    rng = np.random.default_rng(seed)
    test_batches = task.test_batches(batch_size)

    for epoch in range(1, epochs + 1):
        batches = task.train_batches(batch_size, rng)
        losses, seconds = _train_epoch(
            steps, batches, task, rng, epoch, epochs, progress
        )
        logits = {
            name: predict_batches(predicts[name], test_batches)
            for name in names
        }
        for name in names:
            history = result.histories[name]
            history.train_loss.append(losses[name])
            history.seconds.append(seconds[name])
            scores = task.evaluate(logits[name], test_batches)
            for metric, value in scores.items():
                history.metrics.setdefault(metric, []).append(value)
        result.logit_diffs.append(
            _max_abs_diff(task, logits, test_batches)
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, result)
    return result


def _train_epoch(
    steps: dict[str, Callable],
    batches: list[Batch],
    task: TaskData,
    rng: np.random.Generator,
    epoch: int,
    epochs: int,
    progress: bool,
) -> tuple[dict[str, float], dict[str, float]]:
    """Runs one epoch; returns mean loss and training seconds per model."""
    loss_sums = {name: 0.0 for name in steps}
    seconds = {name: 0.0 for name in steps}
    weight_total = 0.0
    bar = tqdm(
        batches,
        desc=f"epoch {epoch}/{epochs}",
        unit="batch",
        leave=False,
        # None hides the bar when stderr is not a terminal.
        disable=None if progress else True,
    )
    for batch in bar:
        # Both models get the same seed, so any dropout masks are equal.
        dropout_seed = rng.integers(0, 2**31 - 1, size=2, dtype=np.int32)
        weight = task.loss_weight(batch)
        weight_total += weight
        for name, step in steps.items():
            began = time.perf_counter()
            # .numpy() waits for the step to finish, so the time is real.
            loss = float(step(
                batch.inputs, batch.lengths, batch.labels, dropout_seed
            ).numpy())
            seconds[name] += time.perf_counter() - began
            loss_sums[name] += loss * weight
        bar.set_postfix(
            {n: f"{loss_sums[n] / weight_total:.4f}" for n in steps}
        )
    bar.close()

    return {n: s / weight_total for n, s in loss_sums.items()}, seconds


def _max_abs_diff(
    task: TaskData, logits: dict[str, list[np.ndarray]], batches: list[Batch]
) -> float:
    values = list(logits.values())
    if len(values) < 2:
        return 0.0
    largest = 0.0
    for ours, theirs, batch in zip(values[0], values[1], batches):
        difference = np.abs(ours - theirs)
        largest = max(largest, float(task.valid_max(difference, batch)))
    return largest
