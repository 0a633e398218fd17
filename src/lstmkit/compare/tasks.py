"""Tasks that `lstmkit compare` trains on, with their default settings."""

import dataclasses
from typing import Any, Callable

from lstmkit import data


@dataclasses.dataclass(frozen=True)
class Task:
    """A data set and the settings it trains with by default.

    Attributes:
        name: the `--task` value.
        load: `load(data_dir, seed) -> SequenceDataset`.
        epochs: default number of epochs.
        description: one line for `--help`.
    """

    name: str
    load: Callable[[Any, int], "data.SequenceDataset"]
    epochs: int
    description: str


def _load_digits(data_dir: Any, seed: int) -> "data.SequenceDataset":
    if data_dir is not None:
        raise ValueError(
            "--data-dir does not apply to --task digits, which uses the "
            "copy bundled with scikit-learn; drop --data-dir."
        )
    return data.load_digits(seed=seed)


def _load_mnist(data_dir: Any, seed: int) -> "data.SequenceDataset":
    return data.load_mnist(data_dir)


TASKS = {
    task.name: task
    for task in (
        Task(
            "digits",
            _load_digits,
            epochs=30,
            description="scikit-learn's 8x8 digits, 8 steps of 8 pixels",
        ),
        Task(
            "mnist",
            _load_mnist,
            epochs=10,
            description="MNIST, 28 steps of 28 pixels",
        ),
    )
}
