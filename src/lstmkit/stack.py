"""Multi-layer RNNs on the shared driver, and a trainable initial state.

`stacked_dynamic_rnn` feeds each layer's outputs to the next;
`stacked_bidirectional_dynamic_rnn` feeds each layer the concatenation of
both directions below it. Both take per-layer dropout between layers and
optional residual connections, and work with any `lstmkit.RecurrentCell`.
"""

import logging
import numbers
from typing import Any, Sequence

import keras
import tensorflow as tf

from lstmkit import rnn, validation

logger = logging.getLogger(__name__)


def stacked_dynamic_rnn(
    cells: Sequence[Any],
    inputs: Any,
    sequence_length: Any = None,
    initial_states: Sequence[Any] | None = None,
    dropout: float = 0.0,
    residual: bool = False,
    training: bool = False,
    seed: Any = None,
) -> tuple[tf.Tensor, list[Any]]:
    """Runs cells as stacked layers, each reading the outputs below it.

    Args:
        cells: one cell per layer, bottom first.
        inputs: `[batch, time, depth]`.
        sequence_length: optional `[batch]` lengths, used by every layer.
        initial_states: optional initial state per layer (`None` entries
            mean zeros).
        dropout: rate of dropout on each layer's inputs above the first,
            applied only when `training`. The mask is drawn once per
            sequence (the same units are dropped at every step).
        residual: add each layer's inputs to its outputs for layers above
            the first; their depths must match.
        training: apply dropout.
        seed: optional int32 `[2]` seed of the dropout masks.

    Returns:
        `(outputs [batch, time, output_size of the top cell], states)` with
        one final state per layer. Outputs are zero past each length.

    Raises:
        TypeError: `cells` is not a list or tuple.
        ValueError: no cells, a wrong number of initial states, a dropout
            rate outside [0, 1), or a residual connection between layers
            of different depths.
    """
    _check_dropout(dropout)
    states = _check_stack(cells, initial_states)
    lengths = sequence_length
    x = inputs
    finals = []
    for index, (cell, state) in enumerate(zip(cells, states)):
        layer_input = x
        if index > 0:
            layer_input = _sequence_dropout(x, dropout, training, seed, index)
        outputs, final = rnn.dynamic_rnn(
            cell, layer_input, sequence_length=lengths, initial_state=state
        )
        if residual and index > 0:
            outputs = _add_residual(outputs, x, index)
        x = outputs
        finals.append(final)
    return x, finals


def stacked_bidirectional_dynamic_rnn(
    cells_fw: Sequence[Any],
    cells_bw: Sequence[Any],
    inputs: Any,
    sequence_length: Any = None,
    dropout: float = 0.0,
    residual: bool = False,
    training: bool = False,
    seed: Any = None,
) -> tuple[tf.Tensor, list[tuple[Any, Any]]]:
    """Runs stacked BiLSTM layers; each reads both directions below it.

    Args:
        cells_fw: forward cell per layer, bottom first.
        cells_bw: backward cell per layer, as many as `cells_fw`.
        inputs: `[batch, time, depth]`.
        sequence_length: optional `[batch]` lengths.
        dropout, residual, training, seed: as in `stacked_dynamic_rnn`.

    Returns:
        `(outputs [batch, time, fw_size + bw_size], states)` with
        `(state_fw, state_bw)` per layer.

    Raises:
        TypeError: `cells_fw` or `cells_bw` is not a list or tuple.
        ValueError: the two lists differ in length or are empty, the
            dropout rate is outside [0, 1), or a residual connection joins
            layers of different depths.
    """
    _check_dropout(dropout)
    _check_cell_list(cells_fw, "cells_fw")
    _check_cell_list(cells_bw, "cells_bw")
    if len(cells_fw) != len(cells_bw) or not cells_fw:
        raise ValueError(
            f"cells_fw and cells_bw must be non-empty lists of the same "
            f"length; got {len(cells_fw)} and {len(cells_bw)}."
        )
    x = inputs
    finals = []
    for index, (cell_fw, cell_bw) in enumerate(zip(cells_fw, cells_bw)):
        layer_input = x
        if index > 0:
            layer_input = _sequence_dropout(x, dropout, training, seed, index)
        (forward, backward), states = rnn.bidirectional_dynamic_rnn(
            cell_fw, cell_bw, layer_input, sequence_length=sequence_length
        )
        outputs = tf.concat([forward, backward], axis=-1)
        if residual and index > 0:
            outputs = _add_residual(outputs, x, index)
        x = outputs
        finals.append(states)
    return x, finals


def _check_cell_list(cells: Any, name: str) -> None:
    if not isinstance(cells, (list, tuple)):
        raise TypeError(
            f"{name} must be a list of cells, one per layer; got "
            f"{type(cells).__name__}. Wrap a single cell as [cell]."
        )


def _check_dropout(rate: Any) -> None:
    number = isinstance(rate, numbers.Real) and not isinstance(rate, bool)
    if not number or not 0 <= rate < 1:
        raise ValueError(
            f"dropout must be a number in [0, 1); got {rate!r}."
        )


def _check_stack(cells: Sequence[Any], initial_states: Any) -> list[Any]:
    _check_cell_list(cells, "cells")
    if not cells:
        raise ValueError("cells is empty; pass one cell per layer.")
    if initial_states is None:
        return [None] * len(cells)
    if len(initial_states) != len(cells):
        raise ValueError(
            f"initial_states has {len(initial_states)} entries for "
            f"{len(cells)} layers; give one per layer (None for zeros)."
        )
    return list(initial_states)


def _sequence_dropout(
    x: Any, rate: float, training: bool, seed: Any, index: int
) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if not training or rate == 0:
        return x
    # One mask per sequence: [batch, 1, depth], broadcast over time.
    shape = tf.stack([tf.shape(x)[0], 1, tf.shape(x)[2]])
    if seed is None:
        return tf.nn.dropout(x, rate, noise_shape=shape)
    layer_seed = tf.cast(seed, tf.int32) + index
    return tf.nn.experimental.stateless_dropout(
        x, rate, seed=layer_seed, noise_shape=shape
    )


def _add_residual(outputs: tf.Tensor, inputs: Any, index: int) -> tf.Tensor:
    inputs = tf.convert_to_tensor(inputs)
    if outputs.shape[-1] != inputs.shape[-1]:
        raise ValueError(
            f"residual=True needs layer {index} to output as many features "
            f"as it reads; it reads {inputs.shape[-1]} and outputs "
            f"{outputs.shape[-1]}. Use equal sizes or residual=False."
        )
    return outputs + inputs


@keras.saving.register_keras_serializable(package="lstmkit")
class TrainableInitialState(keras.layers.Layer):
    """A learned initial state for a cell, one vector per state part.

    `initial_state(batch_size)` returns the state for `initial_state=`:

        initial = TrainableInitialState(cell)
        outputs, state = lstmkit.dynamic_rnn(
            cell, x, initial_state=initial.initial_state(batch_size))

    Variables:
        one `[size]` vector per part of `cell.state_size` (for an LSTM,
        `c` then `h`), zeros at first.

    Args:
        cell: the cell whose `state_size` sets the shapes.
        **kwargs: passed to `keras.layers.Layer`.
    """

    def __init__(self, cell: Any, **kwargs):
        super().__init__(**kwargs)
        validation.check_cell(cell)
        self.state_structure = cell.state_size
        sizes = tf.nest.flatten(self.state_structure)
        self.vectors = [
            self.add_weight(
                name=f"initial_state_{index}",
                shape=(int(size),),
                initializer="zeros",
            )
            for index, size in enumerate(sizes)
        ]

    def initial_state(self, batch_size: Any) -> Any:
        """Returns the state tiled to `batch_size` rows."""
        parts = [
            tf.tile(tf.convert_to_tensor(v)[None], [batch_size, 1])
            for v in self.vectors
        ]
        return tf.nest.pack_sequence_as(self.state_structure, parts)
