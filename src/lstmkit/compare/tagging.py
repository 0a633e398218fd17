"""Sequence tagging for `lstmkit compare`: features, batches, model, scores.

A tagger embeds each token's features (lowercased word, word shape, and
per task POS tag or suffixes), concatenates the embeddings, runs an LSTM or
BiLSTM with the sentence lengths, and maps each step's output to tag
logits. Loss and metrics count valid tokens only.
"""

import logging
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lstmkit import data
from lstmkit.compare.backends import LstmkitBackend
from lstmkit.compare.models import copy_weights
from lstmkit.compare.tasks import EVAL_BATCH_SIZE, Batch, TaskData

logger = logging.getLogger(__name__)

# Embedding width per feature; features not listed get OTHER_EMBEDDING_DIM.
EMBEDDING_DIMS = {"word": 100}
OTHER_EMBEDDING_DIM = 24
# Words seen once in training map to the unknown id, so that the unknown
# embedding is trained on real tokens.
WORD_MIN_COUNT = 2
FIRST_TAG_ID = data.UNK_ID + 1


def word_shape(word: str) -> str:
    """Maps a word to its character classes with repeats collapsed.

    Upper case becomes `X`, lower case `x`, digits `d`; other characters
    stay. `"Vinken"` gives `"Xx"`, `"N.V."` gives `"X.X."`, `"1,000"`
    gives `"d,d"`.
    """
    classes = []
    for char in word:
        if char.isupper():
            mapped = "X"
        elif char.islower():
            mapped = "x"
        elif char.isdigit():
            mapped = "d"
        else:
            mapped = char
        if not classes or classes[-1] != mapped:
            classes.append(mapped)
    return "".join(classes)


def token_features(
    sentence: "data.TaggedSentence", feature_set: str
) -> dict[str, list[str]]:
    """Computes the input columns of one sentence.

    Args:
        sentence: the sentence.
        feature_set: `"chunking"` (word, shape and the POS column) or
            `"pos"` (word, shape and the last 1, 2 and 3 characters).

    Returns:
        Columns by name, one value per token.
    """
    words = sentence.words
    columns = {
        "word": [w.lower() for w in words],
        "shape": [word_shape(w) for w in words],
    }
    if feature_set == "chunking":
        columns["pos"] = list(sentence.features["pos"])
    else:
        for size in (1, 2, 3):
            columns[f"suffix{size}"] = [w.lower()[-size:] for w in words]
    return columns


class TaggingTask(TaskData):
    """Token tagging on a `lstmkit.data.TaggingDataset`.

    Input vocabularies come from the training sentences only.

    Args:
        dataset: the sentences, with `tag_scheme` `"iob2"` (scored by chunk
            F1 and token accuracy) or `"pos"` (token accuracy).
        feature_set: `"chunking"` or `"pos"`, see `token_features`.
        dropout: dropout rate of the tagger while training.

    Attributes:
        bucketing: batch training sentences of similar length together
            (default). Off, batches are random and hold more padding.
    """

    is_tagging = True
    label_rank = 2
    uses_lengths = True

    def __init__(
        self,
        dataset: "data.TaggingDataset",
        feature_set: str,
        dropout: float = 0.0,
    ):
        self.dataset = dataset
        self.feature_set = feature_set
        self.dropout = dropout
        self.bucketing = True
        train_columns = [token_features(s, feature_set) for s in dataset.train]
        self.vocabularies = {
            name: data.Vocabulary.build(
                [c[name] for c in train_columns],
                min_count=WORD_MIN_COUNT if name == "word" else 1,
            )
            for name in train_columns[0]
        }
        # The tag set is closed, so it comes from every split: CoNLL-2000's
        # test set has I-LST, which its training set lacks.
        sentences = dataset.train + dataset.dev + dataset.test
        tags = sorted({t for s in sentences for t in s.tags})
        self.tag_vocabulary = data.Vocabulary(tags)
        self.num_classes = len(self.tag_vocabulary)
        self.input_specs = {name: ((), tf.int32) for name in self.vocabularies}
        self.train_examples = self._encode(dataset.train)
        self.test_examples = self._encode(dataset.test)

    def _encode(
        self, sentences: list["data.TaggedSentence"]
    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        encoded = []
        for sentence in sentences:
            columns = token_features(sentence, self.feature_set)
            inputs = {
                name: vocabulary.encode(columns[name])
                for name, vocabulary in self.vocabularies.items()
            }
            labels = self.tag_vocabulary.encode(sentence.tags)
            encoded.append((inputs, labels.astype(np.int64)))
        return encoded

    def _batch(self, examples: list, index: np.ndarray) -> Batch:
        chosen = [examples[i] for i in index]
        inputs = {
            name: data.pad_batch([inputs[name] for inputs, _ in chosen])[0]
            for name in self.vocabularies
        }
        labels, lengths = data.pad_batch([labels for _, labels in chosen])
        return Batch(inputs, lengths.astype(np.int32), labels)

    def train_batches(
        self, batch_size: int, rng: np.random.Generator
    ) -> list[Batch]:
        lengths = [len(labels) for _, labels in self.train_examples]
        if self.bucketing:
            batches = data.bucket_batches(lengths, batch_size, rng)
        else:
            order = rng.permutation(len(lengths))
            batches = [
                order[start : start + batch_size]
                for start in range(0, len(order), batch_size)
            ]
        return [self._batch(self.train_examples, index) for index in batches]

    def test_batches(self, batch_size: int) -> list[Batch]:
        # Sorting by length keeps padding small. The metrics are sums over
        # sentences, so the order does not change them.
        lengths = np.array([len(labels) for _, labels in self.test_examples])
        order = np.argsort(lengths, kind="stable")
        size = max(batch_size, EVAL_BATCH_SIZE // 4)
        return [
            self._batch(self.test_examples, order[start : start + size])
            for start in range(0, len(order), size)
        ]

    def loss(
        self, logits: tf.Tensor, labels: tf.Tensor, lengths: tf.Tensor
    ) -> tf.Tensor:
        """Mean cross-entropy over the valid tokens of a batch."""
        mask = tf.sequence_mask(lengths, tf.shape(labels)[1], logits.dtype)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits
        )
        return tf.reduce_sum(losses * mask) / tf.reduce_sum(mask)

    def loss_sum(
        self, logits: tf.Tensor, labels: tf.Tensor, lengths: tf.Tensor
    ) -> tf.Tensor:
        """Sum of the cross-entropy over the valid tokens of a batch."""
        mask = tf.sequence_mask(lengths, tf.shape(labels)[1], logits.dtype)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits
        )
        return tf.reduce_sum(losses * mask)

    def loss_weight(self, batch: Batch) -> float:
        return float(batch.lengths.sum())

    def evaluate(
        self, logits: list[np.ndarray], batches: list[Batch]
    ) -> dict[str, float]:
        gold, predicted = [], []
        for batch_logits, batch in zip(logits, batches):
            # Ids 0 and 1 are the vocabulary's padding and unknown entries,
            # never a gold tag, so predictions choose among the real tags.
            best = batch_logits[..., FIRST_TAG_ID:].argmax(-1) + FIRST_TAG_ID
            for row, length in enumerate(batch.lengths):
                gold.append(batch.labels[row, :length])
                predicted.append(best[row, :length])
        correct = sum(int(np.sum(g == p)) for g, p in zip(gold, predicted))
        total = sum(len(g) for g in gold)
        scores = {"test_accuracy": correct / total}

        if self.dataset.tag_scheme == "iob2":
            decode = self.tag_vocabulary.decode
            f1 = data.chunk_f1(
                [decode(g) for g in gold], [decode(p) for p in predicted]
            )
            scores["test_f1"] = float(f1["f1"])
        return scores

    def valid_max(self, values: np.ndarray, batch: Batch) -> float:
        time = values.shape[1]
        valid = np.arange(time)[None, :] < batch.lengths[:, None]
        chosen = values[valid]
        return float(chosen.max()) if chosen.size else 0.0

    def settings(self) -> dict[str, Any]:
        return {
            "data_source": self.dataset.source,
            "train_examples": len(self.train_examples),
            "test_examples": len(self.test_examples),
            "train_tokens": int(sum(len(l) for _, l in self.train_examples)),
            "test_tokens": int(sum(len(l) for _, l in self.test_examples)),
            "tags": self.num_classes,
            "dropout": self.dropout,
            "bucketing": self.bucketing,
            "features": {
                name: len(v) for name, v in self.vocabularies.items()
            },
        }


class SequenceTagger(tf.Module):
    """An LSTM or BiLSTM tagger on one RNN back end.

    Args:
        backend: an `lstmkit.compare.backends.LstmkitBackend` (or the
            built-in's, or a pitfall's); it fixes the model kind.
        units: LSTM units per direction.
        vocabulary_sizes: input vocabulary size per feature name.
        num_tags: number of output tags.
        dropout: dropout rate on the embeddings and the RNN outputs during
            training.
    """

    def __init__(
        self,
        backend: LstmkitBackend,
        units: int,
        vocabulary_sizes: dict[str, int],
        num_tags: int,
        dropout: float = 0.0,
    ):
        super().__init__(name=f"{backend.name}_{backend.model}_tagger")
        self.backend = backend
        self.dropout = dropout
        self.embeddings = {}
        depth = 0
        for name, size in vocabulary_sizes.items():
            dim = EMBEDDING_DIMS.get(name, OTHER_EMBEDDING_DIM)
            layer = keras.layers.Embedding(size, dim, name=f"embed_{name}")
            layer.build((None, None))
            self.embeddings[name] = layer
            depth += dim
        self.cells = backend.make_cells(units, depth)
        self.head = keras.layers.Dense(num_tags, name="tag_logits")
        self.head.build((None, None, units * backend.directions))

    @property
    def variables_in_order(self) -> list[Any]:
        """Embedding tables, cell weights by direction, then the head's."""
        tables = self.embeddings.values()
        weights = [w for layer in tables for w in layer.weights]
        weights += [w for cell in self.cells for w in cell.weights]
        return weights + list(self.head.weights)

    @property
    def shared_variables(self) -> list[Any]:
        """Weights outside the cells: embedding tables and the head's."""
        tables = self.embeddings.values()
        weights = [w for layer in tables for w in layer.weights]
        return weights + list(self.head.weights)

    def copy_weights_from(self, other: Any) -> None:
        """Assigns `other`'s weights, in `variables_in_order` order."""
        copy_weights(self, other)

    def __call__(
        self,
        inputs: dict[str, tf.Tensor],
        lengths: tf.Tensor,
        dropout_seed: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """Computes tag logits `[batch, time, num_tags]`.

        Args:
            inputs: int32 ids `[batch, time]` per feature name.
            lengths: `[batch]` int32 sentence lengths.
            dropout_seed: int32 `[2]` while training: applies dropout to the
                embeddings and to the RNN outputs, with masks drawn from
                this seed, so two taggers given one seed drop the same
                units. `None` at inference.
        """
        embedded = tf.concat(
            [layer(inputs[name]) for name, layer in self.embeddings.items()],
            axis=-1,
        )
        embedded = self._dropout(embedded, dropout_seed, 0)
        outputs, _ = self.backend.run(self.cells, embedded, lengths)
        outputs = self._dropout(outputs, dropout_seed, 1)
        return self.head(outputs)

    def _dropout(
        self, x: tf.Tensor, seed: tf.Tensor | None, salt: int
    ) -> tf.Tensor:
        if seed is None or self.dropout == 0:
            return x
        return tf.nn.experimental.stateless_dropout(
            x, rate=self.dropout, seed=seed + salt
        )
