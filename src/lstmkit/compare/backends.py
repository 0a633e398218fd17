"""RNN back ends of the comparison models: lstmkit and the v1 built-in.

A back end creates the cells of an LSTM (one cell) or a BiLSTM (two) and
runs them over a batch, returning per-step outputs and the final `h`. The
models in `lstmkit.compare.models` and `lstmkit.compare.tagging` only call
`make_cells` and `run`, so a back end with a deliberate mistake (see
`lstmkit.pitfalls`) can replace the correct one without other changes.
"""

from typing import Any

import tensorflow as tf

import lstmkit
from lstmkit import builtins

MODELS = ("lstm", "bilstm")


class LstmkitBackend:
    """lstmkit's `LSTMCell` with `dynamic_rnn` / `bidirectional_dynamic_rnn`.

    Args:
        model: `"lstm"` or `"bilstm"`.
    """

    name = "lstmkit"

    def __init__(self, model: str):
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}; got {model!r}.")
        self.model = model
        self.directions = 2 if model == "bilstm" else 1

    def make_cell(self, units: int, input_depth: int) -> Any:
        """Creates and builds one cell for inputs of `input_depth`."""
        cell = lstmkit.LSTMCell(units)
        cell.build((input_depth,))
        return cell

    def make_cells(self, units: int, input_depth: int) -> list[Any]:
        """Creates one built cell per direction."""
        return [
            self.make_cell(units, input_depth) for _ in range(self.directions)
        ]

    def run(
        self, cells: list[Any], x: tf.Tensor, lengths: tf.Tensor | None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Runs the RNN on `x` `[batch, time, depth]`.

        Returns:
            `(outputs [batch, time, units * directions],
            final_h [batch, units * directions])`, directions concatenated
            forward first.
        """
        if self.model == "lstm":
            outputs, state = self.unidirectional(cells[0], x, lengths)
            return outputs, _final_h(state)
        (forward, backward), (state_fw, state_bw) = self.bidirectional(
            cells[0], cells[1], x, lengths
        )
        outputs = tf.concat([forward, backward], axis=-1)
        final = [_final_h(state_fw), _final_h(state_bw)]
        return outputs, tf.concat(final, axis=-1)

    def unidirectional(
        self, cell: Any, x: tf.Tensor, lengths: tf.Tensor | None
    ) -> tuple[tf.Tensor, Any]:
        """Runs one direction; returns `(outputs, final_state)`."""
        return lstmkit.dynamic_rnn(
            cell, x, sequence_length=lengths, dtype=x.dtype
        )

    def bidirectional(
        self,
        cell_fw: Any,
        cell_bw: Any,
        x: tf.Tensor,
        lengths: tf.Tensor | None,
    ) -> tuple[tuple[tf.Tensor, tf.Tensor], tuple[Any, Any]]:
        """Runs both directions, as `bidirectional_dynamic_rnn` returns."""
        return lstmkit.bidirectional_dynamic_rnn(
            cell_fw, cell_bw, x, sequence_length=lengths, dtype=x.dtype
        )


def _final_h(state: Any) -> tf.Tensor:
    # An LSTM state is a (c, h) tuple; a GRU state is h itself.
    return state.h if hasattr(state, "h") else state


CELLS = {
    "lstm": lambda units: lstmkit.LSTMCell(units),
    "layer_norm": lambda units: lstmkit.LayerNormLSTMCell(units),
    "layer_norm_separate": lambda units: lstmkit.LayerNormLSTMCell(
        units, norm="separate"
    ),
    "cifg": lambda units: lstmkit.CIFGLSTMCell(units),
    "gru": lambda units: lstmkit.GRUCell(units),
    "zoneout": lambda units: lstmkit.ZoneoutLSTMCell(
        units, zoneout_c=0.15, zoneout_h=0.05
    ),
    "dropconnect": lambda units: lstmkit.DropConnectLSTMCell(
        units, recurrent_dropconnect=0.3
    ),
    "dropout": lambda units: lstmkit.VariationalDropoutCell(
        lstmkit.LSTMCell(units), dropout=0.2, recurrent_dropout=0.2
    ),
}


class CellVariantBackend(LstmkitBackend):
    """lstmkit's drivers with another cell of the extension point.

    Args:
        model: `"lstm"` or `"bilstm"` (the layout; the cell may be a GRU).
        cell: a key of `CELLS`.
    """

    def __init__(self, model: str, cell: str):
        super().__init__(model)
        if cell not in CELLS:
            raise ValueError(
                f"cell must be one of {sorted(CELLS)}; got {cell!r}."
            )
        self.cell = cell
        self.name = f"lstmkit_{cell}"

    def make_cell(self, units: int, input_depth: int) -> Any:
        cell = CELLS[self.cell](units)
        cell.build((input_depth,))
        return cell


class BuiltinBackend(LstmkitBackend):
    """The v1 `LSTMCell` (from tf_keras) with `tf.compat.v1.nn` drivers."""

    name = "builtin"

    def make_cell(self, units: int, input_depth: int) -> Any:
        cell = builtins.v1_lstm_cell(units)
        # The v1 cell creates its variables on its first call.
        cell(tf.zeros([1, input_depth]), cell.zero_state(1, tf.float32))
        return cell

    def unidirectional(
        self, cell: Any, x: tf.Tensor, lengths: tf.Tensor | None
    ) -> tuple[tf.Tensor, Any]:
        return builtins.v1_dynamic_rnn(
            cell, x, sequence_length=lengths, dtype=x.dtype
        )

    def bidirectional(
        self,
        cell_fw: Any,
        cell_bw: Any,
        x: tf.Tensor,
        lengths: tf.Tensor | None,
    ) -> tuple[tuple[tf.Tensor, tf.Tensor], tuple[Any, Any]]:
        return builtins.v1_bidirectional_dynamic_rnn(
            cell_fw, cell_bw, x, sequence_length=lengths, dtype=x.dtype
        )


class KerasLayerBackend(LstmkitBackend):
    """`keras.layers.LSTM` or `keras.layers.Bidirectional(LSTM)`.

    Lengths become a Keras mask. The "cells" of this back end are one
    layer, whose weights are Keras' `[kernel, recurrent_kernel, bias]` per
    direction.
    """

    name = "keras"

    def _lstm(self, units: int) -> Any:
        import keras

        return keras.layers.LSTM(
            units, return_sequences=True, return_state=True
        )

    def _bidirectional(self, layer: Any) -> Any:
        import keras

        return keras.layers.Bidirectional(layer)

    def make_cells(self, units: int, input_depth: int) -> list[Any]:
        layer = self._lstm(units)
        if self.model == "bilstm":
            layer = self._bidirectional(layer)
        layer.build((None, None, input_depth))
        return [layer]

    def run(
        self, cells: list[Any], x: tf.Tensor, lengths: tf.Tensor | None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        mask = None
        if lengths is not None:
            mask = tf.sequence_mask(lengths, tf.shape(x)[1])
        results = cells[0](x, mask=mask)
        if self.model == "lstm":
            outputs, h, _ = results
            return outputs, h
        outputs, h_fw, _, h_bw, _ = results
        return outputs, tf.concat([h_fw, h_bw], axis=-1)


class LstmkitLayerBackend(KerasLayerBackend):
    """`lstmkit.layers.LSTM` / `Bidirectional` with Keras semantics."""

    name = "lstmkit"

    def _lstm(self, units: int) -> Any:
        from lstmkit import layers

        return layers.LSTM(units, return_sequences=True, return_state=True)

    def _bidirectional(self, layer: Any) -> Any:
        from lstmkit import layers

        return layers.Bidirectional(layer)


REFERENCES = ("v1", "keras")


def make_backend(
    implementation: str, model: str, reference: str = "v1"
) -> LstmkitBackend:
    """Returns the back end `"lstmkit"` or `"builtin"` for `model`.

    Args:
        implementation: `"lstmkit"` or `"builtin"`.
        model: `"lstm"` or `"bilstm"`.
        reference: `"v1"` (cells and `tf.compat.v1.nn` drivers) or
            `"keras"` (lstmkit's Keras layers against Keras' own).
    """
    backends = {
        "v1": {"lstmkit": LstmkitBackend, "builtin": BuiltinBackend},
        "keras": {
            "lstmkit": LstmkitLayerBackend,
            "builtin": KerasLayerBackend,
        },
    }
    if reference not in backends:
        raise ValueError(
            f"reference must be one of {REFERENCES}; got {reference!r}."
        )
    if implementation not in backends[reference]:
        raise ValueError(
            f"implementation must be one of {sorted(backends[reference])}; "
            f"got {implementation!r}."
        )
    return backends[reference][implementation](model)
