"""Train and test arrays of a sequence classification data set."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Sequences with one class label each, split into train and test sets.

    The arrays are checked on construction. Both splits must have the same
    number of time steps and features, and every label must be in
    ``[0, num_classes)``. The training set must not be empty.

    Attributes:
        x_train: Training inputs, float32 ``[n_train, time, features]``.
        y_train: Training labels, int64 ``[n_train]``.
        x_test: Test inputs, float32 ``[n_test, time, features]``.
        y_test: Test labels, int64 ``[n_test]``.
        num_classes: Number of classes. Labels are ``0 .. num_classes - 1``.
        name: Data set name, for example ``mnist``.
        source: Human-readable description of where the data was read from.
    """

    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    num_classes: int
    name: str
    source: str

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes)
        for split in ("train", "test"):
            self._check_split(split)
        self._check_same_step_shape()

        if len(self.x_train) == 0:
            raise ValueError(
                f"{self.name}: x_train is empty. A data set needs at least one "
                f"training example."
            )

    @property
    def time_steps(self) -> int:
        """Number of time steps per sequence."""
        return int(self.x_train.shape[1])

    @property
    def num_features(self) -> int:
        """Number of features per time step."""
        return int(self.x_train.shape[2])

    def limit_train(self, n: int | None) -> SequenceDataset:
        """Return a copy whose training set is cut to its first ``n`` examples.

        The test set is unchanged. The new arrays are views of the old ones.

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

        return dataclasses.replace(
            self, x_train=self.x_train[:n], y_train=self.y_train[:n]
        )

    def _check_split(self, split: str) -> None:
        x_name, y_name = f"x_{split}", f"y_{split}"
        x = getattr(self, x_name)
        y = getattr(self, y_name)
        _check_array(self.name, x_name, x, np.float32, 3)
        _check_array(self.name, y_name, y, np.int64, 1)

        if len(x) != len(y):
            raise ValueError(
                f"{self.name}: {x_name} has {len(x)} examples but {y_name} "
                f"has {len(y)} labels. Each example needs exactly one label."
            )
        self._check_label_range(y_name, y)

    def _check_label_range(self, y_name: str, y: np.ndarray) -> None:
        if y.size == 0:
            return
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"{self.name}: {y_name} contains labels from {low} to {high}, "
                f"but num_classes={self.num_classes} allows only 0 to "
                f"{self.num_classes - 1}."
            )

    def _check_same_step_shape(self) -> None:
        train_step = self.x_train.shape[1:]
        test_step = self.x_test.shape[1:]
        if train_step != test_step:
            raise ValueError(
                f"{self.name}: x_train has [time, features] = "
                f"{list(train_step)} but x_test has {list(test_step)}. "
                f"Both splits must have the same sequence shape."
            )


def _check_num_classes(num_classes: int) -> None:
    is_int = isinstance(num_classes, (int, np.integer))
    if isinstance(num_classes, bool) or not is_int or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive int, got {num_classes!r}."
        )


def _check_array(
    dataset: str,
    field: str,
    array: object,
    dtype: type[np.generic],
    ndim: int,
) -> None:
    shape = "[n, time, features]" if ndim == 3 else "[n]"
    expected = f"a {np.dtype(dtype).name} array of shape {shape}"
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"{dataset}: {field} must be {expected}, got "
            f"{type(array).__name__}."
        )

    if array.ndim != ndim:
        raise ValueError(
            f"{dataset}: {field} must be {expected}, got shape "
            f"{list(array.shape)}."
        )
    if array.dtype != dtype:
        raise ValueError(
            f"{dataset}: {field} must be {expected}, got dtype {array.dtype}. "
            f"Convert it with .astype(np.{np.dtype(dtype).name})."
        )
