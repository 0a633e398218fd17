"""Side-by-side training of lstmkit and the built-in on identical batches."""

import dataclasses
import logging
import time
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from lstmkit.compare.models import SequenceClassifier

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 1000


@dataclasses.dataclass
class History:
    """Per-epoch results of one model.

    Attributes:
        train_loss: mean training cross-entropy of each epoch.
        test_accuracy: fraction of test examples classified correctly.
        seconds: training time of each epoch, evaluation excluded.
    """

    train_loss: list[float] = dataclasses.field(default_factory=list)
    test_accuracy: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ComparisonResult:
    """Histories of both models and how far their test logits drifted.

    Attributes:
        histories: `{"lstmkit": History, "builtin": History}`.
        logit_diffs: per epoch, the largest absolute difference between
            the two models' test logits.
    """

    histories: dict[str, History]
    logit_diffs: list[float]


def make_train_step(
    classifier: SequenceClassifier, optimizer: keras.optimizers.Optimizer
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Returns a compiled step: one Adam update on one batch, returns loss."""
    variables = classifier.variables_in_order

    @tf.function(input_signature=_signature(classifier, with_labels=True))
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = classifier(x)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=y, logits=logits
                )
            )
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    return train_step


def make_predict(
    classifier: SequenceClassifier,
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns a compiled function from inputs to logits."""

    @tf.function(input_signature=_signature(classifier, with_labels=False))
    def predict(x: tf.Tensor) -> tf.Tensor:
        return classifier(x)

    return predict


def _signature(
    classifier: SequenceClassifier, with_labels: bool
) -> list[tf.TensorSpec]:
    # A free batch dimension, so the smaller last batch reuses the graph.
    spec = [tf.TensorSpec([None, None, classifier.input_depth], tf.float32)]
    if with_labels:
        spec.append(tf.TensorSpec([None], tf.int64))
    return spec


def predict_all(
    predict: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray
) -> np.ndarray:
    """Computes logits `[n, classes]` for `x` in fixed-size batches."""
    parts = [
        predict(tf.constant(x[start : start + EVAL_BATCH_SIZE])).numpy()
        for start in range(0, len(x), EVAL_BATCH_SIZE)
    ]
    return np.concatenate(parts, axis=0)


def train_side_by_side(
    classifiers: dict[str, SequenceClassifier],
    data: Any,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    on_epoch_end: Callable[[int, ComparisonResult], None] | None = None,
    progress: bool = True,
) -> ComparisonResult:
    """Trains every classifier on the same batches in the same order.

    The steps of the models alternate batch by batch, so both see the same
    machine load and their epoch times are comparable.

    Args:
        classifiers: `{"lstmkit": ..., "builtin": ...}`, with equal weights.
        data: a `lstmkit.data.SequenceDataset`.
        epochs: passes over the training set.
        batch_size: examples per step; the last batch may be smaller.
        learning_rate: Adam learning rate, the same for both.
        seed: seeds the shuffling of each epoch.
        on_epoch_end: called with the epoch number (from 1) and the result
            so far.
        progress: show a progress bar on stderr.

    Returns:
        The histories and per-epoch logit differences.
    """
    names = list(classifiers)
    steps = {
        name: make_train_step(
            classifier, keras.optimizers.Adam(learning_rate=learning_rate)
        )
        for name, classifier in classifiers.items()
    }
    predicts = {name: make_predict(c) for name, c in classifiers.items()}
    result = ComparisonResult({name: History() for name in names}, [])
    rng = np.random.default_rng(seed)

    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(data.x_train))
        losses, seconds = _train_epoch(
            steps, data, order, batch_size, epoch, epochs, progress
        )
        logits = {
            name: predict_all(predicts[name], data.x_test) for name in names
        }
        for name in names:
            history = result.histories[name]
            history.train_loss.append(losses[name])
            history.seconds.append(seconds[name])
            history.test_accuracy.append(
                float(np.mean(logits[name].argmax(-1) == data.y_test))
            )
        result.logit_diffs.append(_max_abs_diff(logits))
        if on_epoch_end is not None:
            on_epoch_end(epoch, result)
    return result


def _train_epoch(
    steps: dict[str, Callable],
    data: Any,
    order: np.ndarray,
    batch_size: int,
    epoch: int,
    epochs: int,
    progress: bool,
) -> tuple[dict[str, float], dict[str, float]]:
    """Runs one epoch; returns mean loss and training seconds per model."""
    loss_sums = {name: 0.0 for name in steps}
    seconds = {name: 0.0 for name in steps}
    starts = range(0, len(order), batch_size)
    bar = tqdm(
        starts,
        desc=f"epoch {epoch}/{epochs}",
        unit="batch",
        leave=False,
        # None hides the bar when stderr is not a terminal.
        disable=None if progress else True,
    )
    for start in bar:
        index = order[start : start + batch_size]
        x = tf.constant(data.x_train[index])
        y = tf.constant(data.y_train[index])
        for name, step in steps.items():
            began = time.perf_counter()
            # .numpy() waits for the step to finish, so the time is real.
            loss = float(step(x, y).numpy())
            seconds[name] += time.perf_counter() - began
            loss_sums[name] += loss * len(index)
        bar.set_postfix({name: f"{loss_sums[name] / (start + len(index)):.4f}"
                         for name in steps})
    bar.close()

    count = len(order)
    return {n: s / count for n, s in loss_sums.items()}, seconds


def _max_abs_diff(logits: dict[str, np.ndarray]) -> float:
    values = list(logits.values())
    if len(values) < 2:
        return 0.0
    return float(np.max(np.abs(values[0] - values[1])))
