"""Side-by-side training of lstmkit and the built-in on identical batches."""

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable
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


class TrainingInterrupted(Exception):
    """Training stopped on request between two steps.

    Attributes:
        epoch: the last completed epoch, 0 if none. When checkpoints are
            written, that epoch's checkpoint is the one to resume from.
    """

    def __init__(self, epoch: int):
        super().__init__(f"training stopped after epoch {epoch}")
        self.epoch = epoch


@dataclasses.dataclass
class TrainingState:
    """Everything besides the weights that a resumed run needs.

    Attributes:
        epoch: the last completed epoch, 0 before the first.
        rng: draws each epoch's batch order and dropout seeds; its state
            after epoch `epoch` fixes all later epochs' data.
        result: the histories so far.
    """

    epoch: int
    rng: np.random.Generator
    result: ComparisonResult

    @classmethod
    def start(cls, seed: int, names: list[str]) -> "TrainingState":
        """Creates the state before the first epoch."""
        result = ComparisonResult({name: History() for name in names}, [])
        return cls(0, np.random.default_rng(seed), result)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serializable copy of the state."""
        return {
            "epoch": self.epoch,
            "rng": self.rng.bit_generator.state,
            "histories": {
                name: dataclasses.asdict(history)
                for name, history in self.result.histories.items()
            },
            "logit_diffs": self.result.logit_diffs,
        }

    def load_dict(self, state: dict[str, Any]) -> None:
        """Replaces the state with one returned by `to_dict`."""
        self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]
        self.result.histories = {
            name: History(**history)
            for name, history in state["histories"].items()
        }
        self.result.logit_diffs = list(state["logit_diffs"])


def make_train_step(
    model: Any, task: TaskData, optimizer: keras.optimizers.Optimizer
) -> Callable[..., tf.Tensor]:
    """Returns a compiled step: one optimizer update on one batch.

    The step returns the batch's mean loss. A `LossScaleOptimizer` gets the
    gradients of the scaled loss and unscales them itself.
    """
    variables = model.variables_in_order

    signature = task.signature(with_labels=True)
    signature.append(tf.TensorSpec([2], tf.int32))

    @tf.function(input_signature=signature)
    def train_step(inputs, lengths, labels, dropout_seed) -> tf.Tensor:
        _set_cells_training(model, True)
        with tf.GradientTape() as tape:
            logits = model(inputs, lengths, dropout_seed=dropout_seed)
            # Under a mixed policy the logits are float16 or bfloat16, so
            # they are cast for a float32 softmax and loss.
            logits = tf.cast(logits, tf.float32)
            loss = task.loss(logits, labels, lengths)
            scaled_loss = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    return train_step


def make_predict(model: Any, task: TaskData) -> Callable[..., tf.Tensor]:
    """Returns a compiled function from a batch's inputs to float32 logits."""

    @tf.function(input_signature=task.signature(with_labels=False))
    def predict(inputs, lengths) -> tf.Tensor:
        _set_cells_training(model, False)
        return tf.cast(model(inputs, lengths), tf.float32)

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
    *,
    strategy: tf.distribute.Strategy | None = None,
    loss_scaling: bool = False,
    checkpoints: Any = None,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> ComparisonResult:
    """Trains every model on the same batches in the same order.

    The steps of the models alternate batch by batch, so both see the same
    machine load and their epoch times are comparable.

    Args:
        models: `{"lstmkit": ..., "builtin": ...}`, with equal weights,
            created under `strategy.scope()` when a strategy is given.
        task: the prepared data and its loss and metrics.
        epochs: passes over the training set, counting resumed ones.
        batch_size: examples per step (the global batch under a
            strategy); some batches may be smaller.
        learning_rate: Adam learning rate, the same for both.
        seed: seeds the batch order and dropout seeds of each epoch.
        on_epoch_end: called with the epoch number (from 1) and the result
            so far, after the epoch's checkpoint is written.
        progress: show a progress bar on stderr when it is a terminal.
        strategy: a `tf.distribute` strategy that splits each batch over
            its replicas (see `lstmkit.compare.distribute`); `None` trains
            on one device without one.
        loss_scaling: wrap each optimizer in a dynamic `LossScaleOptimizer`
            (for `mixed_float16`).
        checkpoints: a `lstmkit.compare.checkpoints.CheckpointStore` that
            saves weights, optimizer state and `TrainingState` after every
            epoch, or `None`.
        resume: restore the store's latest checkpoint first and continue
            after its epoch.
        should_stop: polled after every step; when it returns true the
            run raises `TrainingInterrupted` without writing anything.

    Returns:
        The histories and per-epoch logit differences.

    Raises:
        TrainingInterrupted: `should_stop` returned true.
    """
    names = list(models)
    optimizers = _make_optimizers(models, learning_rate, loss_scaling, strategy)
    steps = {
        name: _make_step(strategy, model, task, optimizers[name])
        for name, model in models.items()
    }
    predicts = {name: make_predict(m, task) for name, m in models.items()}
    state = TrainingState.start(seed, names)
    if checkpoints is not None:
        checkpoints.track(models, optimizers, state)
        if resume:
            checkpoints.restore()
        if state.epoch >= epochs:
            logger.info(
                "The checkpoint already has all %d epochs; nothing to train.",
                epochs,
            )
    test_batches = task.test_batches(batch_size)

    for epoch in range(state.epoch + 1, epochs + 1):
        batches = task.train_batches(batch_size, state.rng)
        # Both models get the same seed per batch, so any dropout masks
        # are equal.
        dropout_seeds = state.rng.integers(
            0, 2**31 - 1, size=(len(batches), 2), dtype=np.int32
        )
        logger.debug(
            "Epoch %d of %d started: %d batches", epoch, epochs, len(batches)
        )
        feed = _feed(strategy, task, batches, dropout_seeds)
        losses, seconds = _train_epoch(
            steps, feed, batches, task, (epoch, epochs), progress,
            lambda: _check_stop(should_stop, state.epoch),
        )
        logits = {
            name: predict_batches(predicts[name], test_batches)
            for name in names
        }
        _record_epoch(state.result, task, losses, seconds, logits,
                      test_batches)
        state.epoch = epoch
        if checkpoints is not None:
            checkpoints.save(epoch)
        if on_epoch_end is not None:
            on_epoch_end(epoch, state.result)
    return state.result


def _make_optimizers(
    models: dict[str, Any],
    learning_rate: float,
    loss_scaling: bool,
    strategy: tf.distribute.Strategy | None,
) -> dict[str, keras.optimizers.Optimizer]:
    from lstmkit.compare.precision import make_optimizer

    scope = contextlib.nullcontext()
    if strategy is not None:
        scope = strategy.scope()
    optimizers = {}
    with scope:
        for name, model in models.items():
            optimizer = make_optimizer(learning_rate, loss_scaling)
            # Built now, so that a checkpoint restores its slots at once.
            optimizer.build(model.variables_in_order)
            optimizers[name] = optimizer
    return optimizers


def _make_step(
    strategy: tf.distribute.Strategy | None,
    model: Any,
    task: TaskData,
    optimizer: keras.optimizers.Optimizer,
) -> Callable[..., tf.Tensor]:
    if strategy is None:
        return make_train_step(model, task, optimizer)
    from lstmkit.compare.distribute import make_distributed_train_step

    return make_distributed_train_step(
        strategy, model, task, optimizer, _set_cells_training
    )


def _feed(
    strategy: tf.distribute.Strategy | None,
    task: TaskData,
    batches: list[Batch],
    dropout_seeds: np.ndarray,
) -> Iterable[tuple]:
    """Returns the step arguments of each batch, in order."""
    if strategy is None:
        return [
            (batch.inputs, batch.lengths, batch.labels, seed)
            for batch, seed in zip(batches, dropout_seeds)
        ]
    from lstmkit.compare.distribute import distribute_epoch

    distributed = distribute_epoch(strategy, task, batches, dropout_seeds)
    # A distributed step takes the per-replica element as one argument.
    return ((element,) for element in distributed)


def _check_stop(should_stop: Callable[[], bool] | None, epoch: int) -> None:
    if should_stop is not None and should_stop():
        raise TrainingInterrupted(epoch)


def _record_epoch(
    result: ComparisonResult,
    task: TaskData,
    losses: dict[str, float],
    seconds: dict[str, float],
    logits: dict[str, list[np.ndarray]],
    test_batches: list[Batch],
) -> None:
    for name, history in result.histories.items():
        history.train_loss.append(losses[name])
        history.seconds.append(seconds[name])
        scores = task.evaluate(logits[name], test_batches)
        for metric, value in scores.items():
            history.metrics.setdefault(metric, []).append(value)
    result.logit_diffs.append(_max_abs_diff(task, logits, test_batches))


def _train_epoch(
    steps: dict[str, Callable],
    feed: Iterable[tuple],
    batches: list[Batch],
    task: TaskData,
    epoch_of: tuple[int, int],
    progress: bool,
    check_stop: Callable[[], None],
) -> tuple[dict[str, float], dict[str, float]]:
    """Runs one epoch; returns mean loss and training seconds per model."""
    loss_sums = {name: 0.0 for name in steps}
    seconds = {name: 0.0 for name in steps}
    weight_total = 0.0
    epoch, epochs = epoch_of
    bar = tqdm(
        total=len(batches),
        desc=f"epoch {epoch}/{epochs}",
        unit="batch",
        leave=False,
        # None hides the bar when stderr is not a terminal.
        disable=None if progress else True,
    )
    for batch, arguments in zip(batches, feed, strict=True):
        weight = task.loss_weight(batch)
        weight_total += weight
        for name, step in steps.items():
            began = time.perf_counter()
            # .numpy() waits for the step to finish, so the time is real.
            loss = float(step(*arguments).numpy())
            seconds[name] += time.perf_counter() - began
            loss_sums[name] += loss * weight
        bar.update()
        bar.set_postfix(
            {n: f"{loss_sums[n] / weight_total:.4f}" for n in steps}
        )
        check_stop()
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
