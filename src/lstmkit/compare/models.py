"""Sequence classifiers on lstmkit and on the v1 built-in, with shared weights.

A classifier reads a batch `[batch, time, features]`, runs an LSTM
(`model="lstm"`) or a BiLSTM (`model="bilstm"`), and maps the final `h`
(both directions' final `h`, concatenated, for a BiLSTM) to class logits
with a dense layer.
"""

import logging
from typing import Any

import keras
import tensorflow as tf

from lstmkit.compare.backends import (
    MODELS,
    CellVariantBackend,
    LstmkitBackend,
    make_backend,
)

logger = logging.getLogger(__name__)

__all__ = ["MODELS", "SequenceClassifier", "make_twin_models"]


class SequenceClassifier(tf.Module):
    """An LSTM or BiLSTM classifier on one RNN back end.

    Args:
        backend: an `lstmkit.compare.backends.LstmkitBackend` (or the
            built-in's, or a pitfall's); it fixes the model kind.
        units: LSTM units per direction.
        num_classes: number of output classes.
        input_depth: features per time step.
        use_lengths: pass the batch's lengths to the RNN as
            `sequence_length`; off for equal-length data.
    """

    def __init__(
        self,
        backend: LstmkitBackend,
        units: int,
        num_classes: int,
        input_depth: int,
        use_lengths: bool = False,
    ):
        super().__init__(name=f"{backend.name}_{backend.model}")
        self.backend = backend
        self.input_depth = input_depth
        self.use_lengths = use_lengths
        self.cells = backend.make_cells(units, input_depth)
        self.head = keras.layers.Dense(num_classes, name="logits")
        self.head.build((None, units * backend.directions))

    @property
    def variables_in_order(self) -> list[Any]:
        """All weights: cell weights in direction order, then the head's."""
        weights = [w for cell in self.cells for w in cell.weights]
        return weights + list(self.head.weights)

    @property
    def shared_variables(self) -> list[Any]:
        """Weights outside the cells (the head), equal across cell kinds."""
        return list(self.head.weights)

    def copy_weights_from(self, other: Any) -> None:
        """Assigns `other`'s weights, in `variables_in_order` order."""
        copy_weights(self, other)

    def __call__(
        self,
        inputs: dict[str, tf.Tensor],
        lengths: tf.Tensor,
        dropout_seed: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """Computes logits `[batch, num_classes]`.

        Args:
            inputs: `{"x": [batch, time, input_depth]}`.
            lengths: `[batch]` int32; passed to the RNN only when the
                classifier was created with `use_lengths=True`.
            dropout_seed: unused; the classifier has no dropout.
        """
        lengths = lengths if self.use_lengths else None
        _, final_h = self.backend.run(self.cells, inputs["x"], lengths)
        return self.head(final_h)


def copy_weights(target: Any, source: Any) -> None:
    """Assigns `source.variables_in_order` to `target`'s, one by one.

    Raises:
        ValueError: the two models differ in their number of weights.
    """
    mine, theirs = target.variables_in_order, source.variables_in_order
    if len(mine) != len(theirs):
        raise ValueError(
            f"Cannot copy {len(theirs)} weights into {len(mine)}; the "
            "models differ in structure."
        )
    for variable, value in zip(mine, theirs):
        variable.assign(tf.convert_to_tensor(value))


def make_model(task_data: Any, backend: LstmkitBackend, units: int) -> Any:
    """Creates the classifier or tagger that `task_data` trains."""
    if getattr(task_data, "is_tagging", False):
        from lstmkit.compare.tagging import SequenceTagger

        sizes = {name: len(v) for name, v in task_data.vocabularies.items()}
        return SequenceTagger(
            backend, units, sizes, task_data.num_classes, task_data.dropout
        )
    return SequenceClassifier(
        backend,
        units,
        task_data.num_classes,
        task_data.features,
        use_lengths=task_data.uses_lengths,
    )


def make_twin_models(
    task_data: Any,
    model: str,
    units: int,
    reference: str = "v1",
    cell: str = "lstm",
) -> dict[str, Any]:
    """Creates lstmkit and built-in models for a task, with equal weights.

    The built-in's cells are initialized by the v1 initializer; lstmkit's
    model starts from a copy of every weight, head included.

    Args:
        task_data: a prepared `lstmkit.compare.tasks.TaskData`.
        model: `"lstm"` or `"bilstm"`.
        units: LSTM units per direction.
        reference: `"v1"` or `"keras"`, see `make_backend`.
        cell: lstmkit's cell, a key of `lstmkit.compare.backends.CELLS`.
            Another cell than `"lstm"` shares only the weights outside the
            cells (embeddings, head) with the built-in LSTM.

    Returns:
        `{"lstmkit": ..., "builtin": ...}`.
    """
    builtin = make_model(
        task_data, make_backend("builtin", model, reference), units
    )
    if cell != "lstm":
        if reference != "v1":
            raise ValueError(
                f"--cell {cell} compares with the v1 built-in LSTM; drop "
                "--reference keras."
            )
        ours = make_model(task_data, CellVariantBackend(model, cell), units)
        for target, source in zip(
            ours.shared_variables, builtin.shared_variables, strict=True
        ):
            target.assign(tf.convert_to_tensor(source))
        return {"lstmkit": ours, "builtin": builtin}
    ours = make_model(
        task_data, make_backend("lstmkit", model, reference), units
    )
    ours.copy_weights_from(builtin)
    return {"lstmkit": ours, "builtin": builtin}
