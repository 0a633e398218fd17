"""Sequence classifiers on lstmkit and on the v1 built-in, with shared weights.

Both classifiers read a batch `[batch, time, features]`, run an LSTM
(`model="lstm"`) or a BiLSTM (`model="bilstm"`), and map the final `h`
(both directions' final `h`, concatenated, for a BiLSTM) to class logits
with a dense layer.
"""

import logging
from typing import Any

import keras
import tensorflow as tf

import lstmkit
from lstmkit import builtins

logger = logging.getLogger(__name__)

MODELS = ("lstm", "bilstm")
IMPLEMENTATIONS = ("lstmkit", "builtin")


class SequenceClassifier(tf.Module):
    """An LSTM or BiLSTM classifier on one implementation.

    Args:
        implementation: `"lstmkit"` (lstmkit's cell and drivers) or
            `"builtin"` (the v1 `LSTMCell` with `tf.compat.v1.nn` drivers).
        model: `"lstm"` or `"bilstm"`.
        units: LSTM units per direction.
        num_classes: number of output classes.
        input_depth: features per time step.
        use_lengths: pass the batch's lengths to the RNN as
            `sequence_length`; off for equal-length data.
    """

    def __init__(
        self,
        implementation: str,
        model: str,
        units: int,
        num_classes: int,
        input_depth: int,
        use_lengths: bool = False,
    ):
        super().__init__(name=f"{implementation}_{model}")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {IMPLEMENTATIONS}; got "
                f"{implementation!r}."
            )
        if model not in MODELS:
            raise ValueError(
                f"model must be one of {MODELS}; got {model!r}."
            )
        self.implementation = implementation
        self.model = model
        self.input_depth = input_depth
        self.use_lengths = use_lengths
        directions = 2 if model == "bilstm" else 1
        self.cells = [self._make_cell(units) for _ in range(directions)]
        for cell in self.cells:
            self._build_cell(cell)
        self.head = keras.layers.Dense(num_classes, name="logits")
        self.head.build((None, units * directions))

    def _make_cell(self, units: int) -> Any:
        if self.implementation == "lstmkit":
            return lstmkit.LSTMCell(units)
        return builtins.v1_lstm_cell(units)

    def _build_cell(self, cell: Any) -> None:
        if self.implementation == "lstmkit":
            cell.build((self.input_depth,))
        else:
            # The v1 cell creates its variables on its first call.
            batch = tf.zeros([1, self.input_depth])
            cell(batch, cell.zero_state(1, tf.float32))

    @property
    def variables_in_order(self) -> list[Any]:
        """All weights: cell weights in direction order, then the head's."""
        weights = [w for cell in self.cells for w in cell.weights]
        return weights + list(self.head.weights)

    def copy_weights_from(self, other: "SequenceClassifier") -> None:
        """Assigns `other`'s weights, in `variables_in_order` order."""
        mine, theirs = self.variables_in_order, other.variables_in_order
        if len(mine) != len(theirs):
            raise ValueError(
                f"Cannot copy {len(theirs)} weights into {len(mine)}; the "
                "classifiers differ in structure."
            )
        for target, source in zip(mine, theirs):
            target.assign(tf.convert_to_tensor(source))

    def features(self, x: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
        """Computes the final `h`, `[batch, units * directions]`."""
        if self.model == "lstm":
            run = (
                lstmkit.dynamic_rnn
                if self.implementation == "lstmkit"
                else builtins.v1_dynamic_rnn
            )
            _, state = run(
                self.cells[0], x, sequence_length=lengths, dtype=x.dtype
            )
            return state.h

        run = (
            lstmkit.bidirectional_dynamic_rnn
            if self.implementation == "lstmkit"
            else builtins.v1_bidirectional_dynamic_rnn
        )
        _, (state_fw, state_bw) = run(
            self.cells[0],
            self.cells[1],
            x,
            sequence_length=lengths,
            dtype=x.dtype,
        )
        return tf.concat([state_fw.h, state_bw.h], axis=-1)

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
        return self.head(self.features(inputs["x"], lengths))


def make_twin_classifiers(
    model: str,
    units: int,
    num_classes: int,
    input_depth: int,
    use_lengths: bool = False,
) -> dict[str, SequenceClassifier]:
    """Creates the built-in classifier and an lstmkit twin with its weights.

    The built-in's cells are initialized by the v1 initializer; lstmkit's
    classifier starts from a copy of every weight, head included.

    Returns:
        `{"lstmkit": ..., "builtin": ...}`.
    """
    twins = {
        name: SequenceClassifier(
            name, model, units, num_classes, input_depth, use_lengths
        )
        for name in ("builtin", "lstmkit")
    }
    twins["lstmkit"].copy_weights_from(twins["builtin"])
    return {"lstmkit": twins["lstmkit"], "builtin": twins["builtin"]}


def make_twin_models(task_data: Any, model: str, units: int) -> dict[str, Any]:
    """Creates lstmkit and built-in models for a task, with equal weights.

    Args:
        task_data: a prepared `lstmkit.compare.tasks.TaskData`.
        model: `"lstm"` or `"bilstm"`.
        units: LSTM units per direction.

    Returns:
        `{"lstmkit": ..., "builtin": ...}`.
    """
    if getattr(task_data, "is_tagging", False):
        from lstmkit.compare.tagging import make_twin_taggers

        return make_twin_taggers(task_data, model, units)
    return make_twin_classifiers(
        model,
        units,
        task_data.num_classes,
        task_data.features,
        use_lengths=task_data.uses_lengths,
    )
