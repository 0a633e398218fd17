"""Variable-length data sets, vocabularies, padding and length bucketing.

``VariableLengthDataset`` contains sequences with one class label each, such as
Japanese Vowels. ``TaggingDataset`` contains sentences with one tag per token,
such as CoNLL-2000 chunking. Both keep each sequence at its own length.
``pad_batch`` and ``bucket_batches`` turn them into padded batches.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

TAG_SCHEMES = ("iob2", "pos")

# Batches per shuffled chunk in bucket_batches. Sorting by length inside a
# chunk of 50 batches keeps padding low and the batch contents still random.
DEFAULT_CHUNK_BATCHES = 50

_VARIABLE_SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class VariableLengthDataset:
    """Sequences of different lengths with one class label each.

    The fields are checked on construction. Every sequence must be a float32
    array ``[length, features]`` with at least one time step, all sequences
    of both splits must have the same number of features, and every label
    must be in ``[0, num_classes)``. The training set must not be empty.

    Attributes:
        x_train: Training inputs, one float32 ``[length, features]`` array
            per sequence.
        y_train: Training labels, int64 ``[n_train]``.
        x_test: Test inputs, one float32 ``[length, features]`` array per
            sequence.
        y_test: Test labels, int64 ``[n_test]``.
        num_classes: Number of classes. Labels are ``0 .. num_classes - 1``.
        class_names: Name of each class, indexed by label.
        name: Data set name, for example ``japanese-vowels``.
        source: Human-readable description of where the data was read from.
    """

    x_train: list[np.ndarray] = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: list[np.ndarray] = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    num_classes: int
    class_names: list[str]
    name: str
    source: str

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes)
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: class_names has {len(self.class_names)} "
                f"names but num_classes={self.num_classes}. Give one name "
                f"per class."
            )

        for split in _VARIABLE_SPLITS:
            self._check_split(split)
        if len(self.x_train) == 0:
            raise ValueError(
                f"{self.name}: x_train is empty. A data set needs at least one "
                f"training example."
            )
        self._check_same_features()

    @property
    def num_features(self) -> int:
        """Number of features per time step."""
        return int(self.x_train[0].shape[1])

    def lengths(self, split: str) -> np.ndarray:
        """Return the length of each sequence of a split.

        Args:
            split: ``"train"`` or ``"test"``.

        Returns:
            int32 ``[n]``, the number of time steps of each sequence.
        """
        x, _ = self._split_arrays(split)
        return np.array([len(sequence) for sequence in x], dtype=np.int32)

    def padded(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Pad every sequence of a split with zeros to the longest one.

        Args:
            split: ``"train"`` or ``"test"``.

        Returns:
            A pair ``(x, lengths)``: x float32 ``[n, max_len, features]``
            with zeros after each sequence's end, and lengths int32 ``[n]``.
            An empty split gives x of shape ``[0, 0, features]``.

        Raises:
            ValueError: ``split`` is not ``"train"`` or ``"test"``.
        """
        x, _ = self._split_arrays(split)
        if not x:
            empty = np.zeros((0, 0, self.num_features), dtype=np.float32)
            return empty, np.zeros(0, dtype=np.int32)
        return pad_batch(x, pad_value=0)

    def limit_train(self, n: int | None) -> VariableLengthDataset:
        """Return a copy whose training set is cut to its first ``n`` examples.

        The test set is unchanged. The sequences are shared, not copied.

        Args:
            n: Maximum number of training examples, or None for no limit.
                An ``n`` larger than the training set keeps all of it.

        Returns:
            The data set with at most ``n`` training examples.

        Raises:
            ValueError: ``n`` is less than 1.
            TypeError: ``n`` is not an int or None.
        """
        if n is None:
            return self
        _check_limit(n)
        return dataclasses.replace(
            self, x_train=self.x_train[:n], y_train=self.y_train[:n]
        )

    def _split_arrays(self, split: str) -> tuple[list[np.ndarray], np.ndarray]:
        if split not in _VARIABLE_SPLITS:
            raise ValueError(
                f"{self.name}: unknown split {split!r}. Expected one of "
                f"{', '.join(repr(name) for name in _VARIABLE_SPLITS)}."
            )
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}")

    def _check_split(self, split: str) -> None:
        x_name, y_name = f"x_{split}", f"y_{split}"
        x, y = getattr(self, x_name), getattr(self, y_name)
        if not isinstance(x, (list, tuple)):
            raise TypeError(
                f"{self.name}: {x_name} must be a list of float32 "
                f"[length, features] arrays, got {type(x).__name__}."
            )
        for index, sequence in enumerate(x):
            _check_sequence(self.name, f"{x_name}[{index}]", sequence)
        _check_labels(self.name, y_name, y, self.num_classes)

        if len(x) != len(y):
            raise ValueError(
                f"{self.name}: {x_name} has {len(x)} sequences but {y_name} "
                f"has {len(y)} labels. Each sequence needs exactly one label."
            )

    def _check_same_features(self) -> None:
        expected = self.num_features
        for split in _VARIABLE_SPLITS:
            for index, sequence in enumerate(getattr(self, f"x_{split}")):
                if sequence.shape[1] != expected:
                    raise ValueError(
                        f"{self.name}: x_{split}[{index}] has "
                        f"{sequence.shape[1]} features but x_train[0] has "
                        f"{expected}. All sequences must have the same "
                        f"number of features."
                    )


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
    """One sentence with a target tag and optional feature columns per token.

    Attributes:
        words: The tokens of the sentence.
        tags: The target tag of each token, for example chunk or POS tags.
        features: Extra input columns by name, each with one value per
            token, for example ``{"pos": [...]}``.
    """

    words: list[str]
    tags: list[str]
    features: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.words:
            raise ValueError(
                "TaggedSentence: words is empty. A sentence needs at least "
                "one token."
            )

        columns = {"tags": self.tags}
        columns.update(
            (f"features[{name!r}]", values)
            for name, values in self.features.items()
        )
        for column, values in columns.items():
            if len(values) != len(self.words):
                raise ValueError(
                    f"TaggedSentence: {column} has {len(values)} values but "
                    f"words has {len(self.words)} tokens. Each token needs "
                    f"exactly one value. Words: {' '.join(self.words[:10])}"
                )

    def __len__(self) -> int:
        return len(self.words)


@dataclasses.dataclass(frozen=True, eq=False)
class TaggingDataset:
    """Sentences with one tag per token, split into train, dev and test sets.

    Every sentence of every split must have the same feature names. The
    training set must not be empty. The dev set may be empty.

    Attributes:
        train: Training sentences.
        dev: Development sentences, for model selection. May be empty.
        test: Test sentences.
        name: Data set name, for example ``conll2000``.
        source: Human-readable description of where the data was read from.
        tag_scheme: ``"iob2"`` for chunk tags (score them with
            ``chunk_f1``) or ``"pos"`` for part-of-speech tags (score them
            by token accuracy).
    """

    train: list[TaggedSentence] = dataclasses.field(repr=False)
    dev: list[TaggedSentence] = dataclasses.field(repr=False)
    test: list[TaggedSentence] = dataclasses.field(repr=False)
    name: str
    source: str
    tag_scheme: str

    def __post_init__(self) -> None:
        if self.tag_scheme not in TAG_SCHEMES:
            raise ValueError(
                f"{self.name}: unknown tag_scheme {self.tag_scheme!r}. "
                f"Expected one of {', '.join(TAG_SCHEMES)}."
            )
        if not self.train:
            raise ValueError(
                f"{self.name}: train is empty. A data set needs at least one "
                f"training sentence."
            )
        self._check_sentences()

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature columns, in the order of the first sentence."""
        return list(self.train[0].features)

    def limit_train(self, n: int | None) -> TaggingDataset:
        """Return a copy whose training set is cut to the first ``n`` sentences.

        The dev and test sets are unchanged.

        Args:
            n: Maximum number of training sentences, or None for no limit.
                An ``n`` larger than the training set keeps all of it.

        Returns:
            The data set with at most ``n`` training sentences.

        Raises:
            ValueError: ``n`` is less than 1.
            TypeError: ``n`` is not an int or None.
        """
        if n is None:
            return self
        _check_limit(n)
        return dataclasses.replace(self, train=self.train[:n])

    def _check_sentences(self) -> None:
        expected = set(self.feature_names)
        for split in ("train", "dev", "test"):
            for index, sentence in enumerate(getattr(self, split)):
                if not isinstance(sentence, TaggedSentence):
                    raise TypeError(
                        f"{self.name}: {split}[{index}] must be a "
                        f"TaggedSentence, got {type(sentence).__name__}."
                    )
                if set(sentence.features) != expected:
                    raise ValueError(
                        f"{self.name}: {split}[{index}] has features "
                        f"{sorted(sentence.features)} but train[0] has "
                        f"{sorted(expected)}. All sentences must have the "
                        f"same feature columns."
                    )


class Vocabulary:
    """A mapping from tokens to int ids, with ids for padding and unknowns.

    Id 0 (``PAD_ID``) is reserved for padding and id 1 (``UNK_ID``) for
    tokens that are not in the vocabulary. Known tokens have ids from 2 on.
    The reserved names ``<pad>`` and ``<unk>`` are used only by ``decode``
    and ``tokens``: a token ``<unk>`` in the data is looked up like any
    other token.

    Args:
        tokens: The known tokens, in id order starting at id 2. Must be
            unique (after lowercasing, when ``lowercase`` is true).
        lowercase: Whether ``encode`` lowercases tokens before the lookup.

    Raises:
        ValueError: ``tokens`` contains a duplicate.
    """

    def __init__(self, tokens: Sequence[str], lowercase: bool = False) -> None:
        self.lowercase = bool(lowercase)
        known = [self._normalize(token) for token in tokens]
        self._ids = {token: UNK_ID + 1 + i for i, token in enumerate(known)}
        if len(self._ids) != len(known):
            duplicates = _duplicates(known)
            raise ValueError(
                f"Vocabulary: tokens must be unique, but these occur more "
                f"than once: {', '.join(map(repr, duplicates[:10]))}."
            )
        self._tokens = [PAD_TOKEN, UNK_TOKEN, *known]

    @classmethod
    def build(
        cls,
        sentences: Iterable[Sequence[str]],
        min_count: int = 1,
        lowercase: bool = False,
    ) -> Vocabulary:
        """Build a vocabulary from the tokens of training sentences.

        Ids follow the token count, most frequent first. Tokens with the
        same count are in Unicode code point order, so the same sentences
        always give the same ids.

        Args:
            sentences: Training sentences, each a sequence of tokens.
            min_count: Minimum number of occurrences for a token to get its
                own id. Rarer tokens encode as ``UNK_ID``.
            lowercase: Whether to lowercase tokens before counting and
                before each lookup.

        Returns:
            The vocabulary.

        Raises:
            TypeError: An element of ``sentences`` is a str, which would be
                counted as characters. Pass a list of token lists.
            ValueError: ``min_count`` is less than 1.
        """
        if min_count < 1:
            raise ValueError(
                f"Vocabulary.build: min_count must be at least 1, got "
                f"{min_count}."
            )

        counts = cls._count(sentences, lowercase)
        kept = [token for token, count in counts.items() if count >= min_count]
        kept.sort(key=lambda token: (-counts[token], token))
        return cls(kept, lowercase=lowercase)

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order, starting with ``<pad>`` and ``<unk>``."""
        return list(self._tokens)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Map tokens to ids.

        Args:
            tokens: The tokens of one sequence.

        Returns:
            int32 ``[len(tokens)]``, with ``UNK_ID`` for unknown tokens.
        """
        ids = [
            self._ids.get(self._normalize(token), UNK_ID) for token in tokens
        ]
        return np.array(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map ids back to tokens.

        Args:
            ids: Ids in ``[0, len(self))``.

        Returns:
            The tokens, with ``<pad>`` for id 0 and ``<unk>`` for id 1.

        Raises:
            ValueError: An id is outside ``[0, len(self))``.
        """
        tokens = []
        for token_id in ids:
            if not 0 <= token_id < len(self._tokens):
                raise ValueError(
                    f"Vocabulary.decode: id {token_id} is out of range. "
                    f"Expected ids from 0 to {len(self._tokens) - 1}."
                )
            tokens.append(self._tokens[token_id])
        return tokens

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict that ``from_dict`` restores."""
        return {"tokens": list(self._tokens), "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Restore a vocabulary from the output of ``to_dict``.

        Raises:
            ValueError: ``data`` lacks a key, its token list does not start
                with ``<pad>`` and ``<unk>``, or it has duplicate tokens.
        """
        missing = [key for key in ("tokens", "lowercase") if key not in data]
        if missing:
            raise ValueError(
                f"Vocabulary.from_dict: missing keys {', '.join(missing)}. "
                f"Expected the output of Vocabulary.to_dict."
            )

        tokens = list(data["tokens"])
        if tokens[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError(
                f"Vocabulary.from_dict: tokens must start with "
                f"{PAD_TOKEN!r} and {UNK_TOKEN!r}, got {tokens[:2]!r}."
            )
        return cls(tokens[2:], lowercase=data["lowercase"])

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self._normalize(token) in self._ids

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, lowercase={self.lowercase})"

    def _normalize(self, token: str) -> str:
        return token.lower() if self.lowercase else token

    @staticmethod
    def _count(
        sentences: Iterable[Sequence[str]], lowercase: bool
    ) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for index, sentence in enumerate(sentences):
            if isinstance(sentence, str):
                raise TypeError(
                    f"Vocabulary.build: sentences[{index}] is the str "
                    f"{sentence[:30]!r}. Expected a sequence of tokens, so "
                    f"pass a list of token lists."
                )
            if lowercase:
                sentence = [token.lower() for token in sentence]
            counts.update(sentence)
        return counts


def pad_batch(
    sequences: Sequence[np.ndarray], pad_value: float = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stack sequences of different lengths into one padded array.

    Args:
        sequences: Arrays ``[length, ...]`` with the same trailing shape.
            Lengths may differ and may be 0.
        pad_value: Value written after the end of each sequence.

    Returns:
        A pair ``(padded, lengths)``: padded ``[batch, max_len, ...]`` with
        the dtype that NumPy promotes the sequences to, and lengths int32
        ``[batch]``.

    Raises:
        ValueError: ``sequences`` is empty, a sequence is a scalar, or the
            trailing shapes differ.
    """
    if len(sequences) == 0:
        raise ValueError(
            "pad_batch: sequences is empty. Expected at least one array, "
            "because the trailing shape and dtype come from the arrays."
        )

    arrays = [np.asarray(sequence) for sequence in sequences]
    step_shape = _common_step_shape(arrays)
    lengths = np.array([len(array) for array in arrays], dtype=np.int32)

    dtype = np.result_type(*arrays)
    shape = (len(arrays), int(lengths.max()), *step_shape)
    padded = np.full(shape, pad_value, dtype=dtype)
    for row, array in enumerate(arrays):
        padded[row, : len(array)] = array
    return padded, lengths


def bucket_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    chunk_batches: int = DEFAULT_CHUNK_BATCHES,
) -> list[np.ndarray]:
    """Group example indices into batches of similar length.

    The indices are shuffled and cut into chunks of
    ``batch_size * chunk_batches`` examples. Each chunk is sorted by length
    (stable, so ties keep their shuffled order) and cut into batches. Then
    the order of all batches is shuffled. Every index is in exactly one
    batch. Only the last batch of the last chunk can be smaller than
    ``batch_size``.

    Args:
        lengths: Length of each example, ``[n]``.
        batch_size: Number of examples per batch.
        rng: Random generator. The same generator state always gives the
            same batches.
        chunk_batches: Number of batches per sorted chunk. Larger chunks
            give less padding and less random batches.

    Returns:
        The batches, each an int64 array of example indices. An empty
        ``lengths`` gives an empty list.

    Raises:
        ValueError: ``lengths`` is not 1-D, or ``batch_size`` or
            ``chunk_batches`` is less than 1.
        TypeError: ``rng`` is not a ``numpy.random.Generator``.
    """
    lengths = _check_bucket_args(lengths, batch_size, rng, chunk_batches)

    order = rng.permutation(len(lengths))
    chunk_size = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk_size):
        chunk = order[start : start + chunk_size]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        for first in range(0, len(chunk), batch_size):
            batches.append(chunk[first : first + batch_size])

    return [batches[i] for i in rng.permutation(len(batches))]


def _check_bucket_args(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    chunk_batches: int,
) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(
            f"bucket_batches: lengths must be 1-D [n], got shape "
            f"{list(lengths.shape)}."
        )
    if batch_size < 1:
        raise ValueError(
            f"bucket_batches: batch_size must be at least 1, got {batch_size}."
        )
    if chunk_batches < 1:
        raise ValueError(
            f"bucket_batches: chunk_batches must be at least 1, got "
            f"{chunk_batches}."
        )
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"bucket_batches: rng must be a numpy.random.Generator, got "
            f"{type(rng).__name__}. Create one with "
            f"np.random.default_rng(seed)."
        )
    return lengths


def _common_step_shape(arrays: list[np.ndarray]) -> tuple[int, ...]:
    """Return the shape after the length axis, which all arrays share."""
    for index, array in enumerate(arrays):
        if array.ndim == 0:
            raise ValueError(
                f"pad_batch: sequences[{index}] is a scalar. Expected arrays "
                f"of shape [length, ...]."
            )

    step_shape = arrays[0].shape[1:]
    for index, array in enumerate(arrays):
        if array.shape[1:] != step_shape:
            raise ValueError(
                f"pad_batch: sequences[{index}] has shape "
                f"{list(array.shape)} but sequences[0] has "
                f"{list(arrays[0].shape)}. All sequences must have the same "
                f"shape after the length axis."
            )
    return step_shape


def _check_limit(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(
            f"limit_train: n must be an int or None, got {n!r} "
            f"({type(n).__name__})."
        )
    if n < 1:
        raise ValueError(
            f"limit_train: n must be at least 1 (or None for no limit), "
            f"got {n}."
        )


def _check_num_classes(num_classes: int) -> None:
    is_int = isinstance(num_classes, (int, np.integer))
    if isinstance(num_classes, bool) or not is_int or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive int, got {num_classes!r}."
        )


def _check_sequence(dataset: str, field: str, sequence: object) -> None:
    expected = "a float32 array of shape [length, features]"
    if not isinstance(sequence, np.ndarray):
        raise TypeError(
            f"{dataset}: {field} must be {expected}, got "
            f"{type(sequence).__name__}."
        )

    if sequence.ndim != 2 or sequence.shape[0] == 0:
        raise ValueError(
            f"{dataset}: {field} must be {expected} with length at least 1, "
            f"got shape {list(sequence.shape)}."
        )
    if sequence.dtype != np.float32:
        raise ValueError(
            f"{dataset}: {field} must be {expected}, got dtype "
            f"{sequence.dtype}. Convert it with .astype(np.float32)."
        )


def _check_labels(
    dataset: str, field: str, labels: object, num_classes: int
) -> None:
    expected = "an int64 array of shape [n]"
    if not isinstance(labels, np.ndarray):
        raise TypeError(
            f"{dataset}: {field} must be {expected}, got "
            f"{type(labels).__name__}."
        )
    if labels.ndim != 1:
        raise ValueError(
            f"{dataset}: {field} must be {expected}, got shape "
            f"{list(labels.shape)}."
        )
    if labels.dtype != np.int64:
        raise ValueError(
            f"{dataset}: {field} must be {expected}, got dtype "
            f"{labels.dtype}. Convert it with .astype(np.int64)."
        )

    if labels.size == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{dataset}: {field} contains labels from {low} to {high}, but "
            f"num_classes={num_classes} allows only 0 to {num_classes - 1}."
        )


def _duplicates(tokens: list[str]) -> list[str]:
    counts = collections.Counter(tokens)
    return [token for token, count in counts.items() if count > 1]
