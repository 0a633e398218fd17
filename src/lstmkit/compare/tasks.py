"""Tasks that `lstmkit compare` trains on: data, batches, loss and metrics.

Every batch carries a dict of input arrays, int32 lengths `[batch]` and
labels. Fixed-length tasks give every row the full length, and their models
do not pass lengths to the RNN, so the reference is `dynamic_rnn` without
`sequence_length`, as a user would write it.
"""

import dataclasses
import logging
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from lstmkit import data

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch of a task.

    Attributes:
        inputs: input arrays by name, each `[batch, time, ...]`.
        lengths: int32 `[batch]` valid steps per row.
        labels: int64 `[batch]` (classification) or `[batch, time]`
            (tagging, 0 past each length).
    """

    inputs: dict[str, np.ndarray]
    lengths: np.ndarray
    labels: np.ndarray


class TaskData:
    """Prepared data of one task, with its loss and metrics.

    Subclasses set `input_specs` (name to `(trailing shape, dtype)`),
    `label_rank`, `uses_lengths` and implement the batch methods.
    """

    input_specs: dict[str, tuple[tuple, tf.DType]] = {}
    label_rank = 1
    uses_lengths = False

    def signature(self, with_labels: bool) -> list[Any]:
        """Returns the `tf.function` input signature of a batch."""
        inputs = {
            name: tf.TensorSpec([None, None, *shape], dtype)
            for name, (shape, dtype) in self.input_specs.items()
        }
        spec = [inputs, tf.TensorSpec([None], tf.int32)]
        if with_labels:
            spec.append(tf.TensorSpec([None] * self.label_rank, tf.int64))
        return spec

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> list[Batch]:
        """Returns one epoch of shuffled training batches."""
        raise NotImplementedError

    def test_batches(self, batch_size: int) -> list[Batch]:
        """Returns the test set in batches, in a fixed order."""
        raise NotImplementedError

    def loss(
        self, logits: tf.Tensor, labels: tf.Tensor, lengths: tf.Tensor
    ) -> tf.Tensor:
        """Mean cross-entropy of a batch of class logits `[batch, classes]`."""
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits
            )
        )

    def loss_sum(
        self, logits: tf.Tensor, labels: tf.Tensor, lengths: tf.Tensor
    ) -> tf.Tensor:
        """Sum of the cross-entropy terms that `loss` averages."""
        return tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits
            )
        )

    def loss_weight(self, batch: Batch) -> float:
        """Number of loss terms the batch's mean loss averages over."""
        return float(len(batch.labels))

    def evaluate(
        self, logits: list[np.ndarray], batches: list[Batch]
    ) -> dict[str, float]:
        """Computes test metrics from the logits of every test batch."""
        predicted = np.concatenate([l.argmax(-1) for l in logits])
        labels = np.concatenate([b.labels for b in batches])
        return {"test_accuracy": float(np.mean(predicted == labels))}

    def valid_max(self, values: np.ndarray, batch: Batch) -> float:
        """Largest entry of per-example `values` `[batch, ...]`."""
        return float(values.max()) if values.size else 0.0

    def settings(self) -> dict[str, Any]:
        """Sizes and source of the data, for the report."""
        raise NotImplementedError


class FixedLengthClassification(TaskData):
    """Classification of equal-length sequences (digits, MNIST rows).

    Args:
        dataset: a `lstmkit.data.SequenceDataset`.
    """

    def __init__(self, dataset: "data.SequenceDataset"):
        self.dataset = dataset
        _, self.time_steps, self.features = dataset.x_train.shape
        self.num_classes = dataset.num_classes
        self.input_specs = {"x": ((self.features,), tf.float32)}

    def _batch(self, x: np.ndarray, y: np.ndarray) -> Batch:
        lengths = np.full(len(x), x.shape[1], np.int32)
        return Batch({"x": x}, lengths, y)

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> list[Batch]:
        order = rng.permutation(len(self.dataset.x_train))
        return [
            self._batch(
                self.dataset.x_train[index], self.dataset.y_train[index]
            )
            for index in _chunks(order, batch_size)
        ]

    def test_batches(self, batch_size: int) -> list[Batch]:
        order = np.arange(len(self.dataset.x_test))
        return [
            self._batch(self.dataset.x_test[index], self.dataset.y_test[index])
            for index in _chunks(order, EVAL_BATCH_SIZE)
        ]

    def settings(self) -> dict[str, Any]:
        return {
            "data_source": self.dataset.source,
            "train_examples": int(len(self.dataset.x_train)),
            "test_examples": int(len(self.dataset.x_test)),
            "time_steps": int(self.time_steps),
            "features": int(self.features),
        }


class VariableLengthClassification(TaskData):
    """Classification of sequences of different lengths (Japanese vowels).

    Batches are zero-padded to their longest row, and the lengths go to the
    RNN as `sequence_length`.

    Args:
        dataset: a `lstmkit.data.VariableLengthDataset`.
    """

    uses_lengths = True

    def __init__(self, dataset: "data.VariableLengthDataset"):
        self.dataset = dataset
        self.features = dataset.num_features
        self.num_classes = dataset.num_classes
        self.input_specs = {"x": ((self.features,), tf.float32)}

    def _batch(self, x: list[np.ndarray], y: np.ndarray) -> Batch:
        padded, lengths = data.pad_batch(x)
        return Batch({"x": padded.astype(np.float32)}, lengths, y)

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> list[Batch]:
        x, y = self.dataset.x_train, self.dataset.y_train
        order = rng.permutation(len(x))
        return [
            self._batch([x[i] for i in index], y[index])
            for index in _chunks(order, batch_size)
        ]

    def test_batches(self, batch_size: int) -> list[Batch]:
        x, y = self.dataset.x_test, self.dataset.y_test
        order = np.arange(len(x))
        return [
            self._batch([x[i] for i in index], y[index])
            for index in _chunks(order, EVAL_BATCH_SIZE)
        ]

    def settings(self) -> dict[str, Any]:
        lengths = self.dataset.lengths("train")
        return {
            "data_source": self.dataset.source,
            "train_examples": int(len(self.dataset.x_train)),
            "test_examples": int(len(self.dataset.x_test)),
            "train_lengths": [int(lengths.min()), int(lengths.max())],
            "features": int(self.features),
        }


def _chunks(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[start : start + size] for start in range(0, len(order), size)]


@dataclasses.dataclass(frozen=True)
class Task:
    """A `--task` choice: how to load it and what it trains with by default.

    Attributes:
        name: the `--task` value.
        prepare: `prepare(data_dir, seed, limit) -> TaskData`.
        description: one line for `--help`.
        epochs: default number of epochs.
        model: default `--model`.
        units: default LSTM units per direction.
        batch_size: default examples per step.
    """

    name: str
    prepare: Callable[[Any, int, int | None], TaskData]
    description: str
    epochs: int
    model: str = "lstm"
    units: int = 128
    batch_size: int = 128


def _prepare_digits(data_dir: Any, seed: int, limit: int | None) -> TaskData:
    if data_dir is not None:
        raise ValueError(
            "--data-dir does not apply to --task digits, which uses the "
            "copy bundled with scikit-learn; drop --data-dir."
        )
    dataset = data.load_digits(seed=seed).limit_train(limit)
    return FixedLengthClassification(dataset)


def _prepare_mnist(data_dir: Any, seed: int, limit: int | None) -> TaskData:
    dataset = data.load_mnist(data_dir).limit_train(limit)
    return FixedLengthClassification(dataset)


def _prepare_vowels(data_dir: Any, seed: int, limit: int | None) -> TaskData:
    dataset = data.load_vowels(data_dir).limit_train(limit)
    return VariableLengthClassification(dataset)


def _prepare_chunking(
    data_dir: Any, seed: int, limit: int | None
) -> TaskData:
    from lstmkit.compare.tagging import TaggingTask

    dataset = data.load_conll2000(data_dir).limit_train(limit)
    return TaggingTask(dataset, feature_set="chunking", dropout=0.5)


def _prepare_pos(data_dir: Any, seed: int, limit: int | None) -> TaskData:
    from lstmkit.compare.tagging import TaggingTask

    dataset = data.load_treebank_pos(data_dir).limit_train(limit)
    return TaggingTask(dataset, feature_set="pos", dropout=0.5)


TASKS = {
    task.name: task
    for task in (
        Task(
            "digits",
            _prepare_digits,
            "scikit-learn's 8x8 digits, 8 steps of 8 pixels",
            epochs=30,
        ),
        Task(
            "mnist",
            _prepare_mnist,
            "MNIST, 28 steps of 28 pixels",
            epochs=10,
        ),
        Task(
            "vowels",
            _prepare_vowels,
            "Japanese Vowels speakers, 7 to 29 frames of 12 features",
            epochs=60,
            units=64,
            batch_size=32,
        ),
        Task(
            "chunking",
            _prepare_chunking,
            "CoNLL-2000 chunking, chunk F1 and token accuracy",
            epochs=8,
            model="bilstm",
            batch_size=32,
        ),
        Task(
            "pos",
            _prepare_pos,
            "Penn Treebank sample POS tagging, token accuracy",
            epochs=10,
            model="bilstm",
            batch_size=32,
        ),
    )
}
