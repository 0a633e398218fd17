"""The references the probes compare user code with.

`lstmkit.dynamic_rnn` and `bidirectional_dynamic_rnn` over an lstmkit cell
are the reference. The real `tf.compat.v1.nn` functions with the v1
`LSTMCell` are a second oracle for LSTM code. The searches for the gate
order and the forget bias call the lstmkit cell one step at a time, which
is the same step the driver runs.
"""

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from lstmkit import builtins, rnn
from lstmkit.cells import LSTMCell, LSTMStateTuple
from lstmkit.convert.layouts import GATE_ORDER_TF1, gate_slice, reorder_gates

logger = logging.getLogger(__name__)

# The reference runs on the autodiff kernel: it compiles nothing, which
# keeps each small probe fast.
_IMPLEMENTATION = "autodiff"


class StepReference:
    """One lstmkit `LSTMCell` stepped by hand, for the searches.

    Both searches evaluate many candidates in one `cell.step` call by
    stacking them along the batch axis.

    Args:
        input_depth: depth of the inputs.
        units: number of units.
        dtype: dtype of the cell.
    """

    def __init__(self, input_depth: int, units: int, dtype: tf.DType):
        self.cell = LSTMCell(units, forget_bias=0.0, dtype=dtype.name)
        self.cell.build((None, input_depth))
        self.units = units
        self.dtype = dtype

    def first_step(
        self,
        kernel: np.ndarray,
        bias: np.ndarray,
        x: np.ndarray,
        orders: list[str],
    ) -> list[np.ndarray]:
        """Runs one step from a zero state for each reading of the blocks.

        Args:
            kernel: `[input_depth + units, 4 * units]` as stored, blocks in
                the code's unknown order.
            bias: `[4 * units]`, same blocks.
            x: inputs `[batch, input_depth]`.
            orders: candidate gate orders of the stored blocks.

        Returns:
            The output h `[batch, units]` for each order.
        """
        self.cell.set_weights([kernel, bias])
        projected = self.cell.project_inputs(tf.constant(x, self.dtype))
        stacked = np.concatenate([
            reorder_gates(projected.numpy(), order, GATE_ORDER_TF1)
            for order in orders
        ])
        outputs = self._step(stacked, None)
        return np.split(outputs, len(orders))

    def second_step(
        self,
        kernel: np.ndarray,
        bias: np.ndarray,
        x: np.ndarray,
        forget_biases: np.ndarray,
    ) -> list[np.ndarray]:
        """Runs two steps on the same inputs for each run-time forget bias.

        The forget bias is added to the forget block of the projected
        inputs, which is where the cell adds its `forget_bias`. It does not
        act in the first step, whose previous c is zero.

        Args:
            kernel: `[input_depth + units, 4 * units]`, v1 layout.
            bias: `[4 * units]`, v1 layout.
            x: inputs `[batch, input_depth]` of both steps.
            forget_biases: candidate run-time forget biases.

        Returns:
            The output h `[batch, units]` after the second step, for each
            candidate.
        """
        self.cell.set_weights([kernel, bias])
        projected = self.cell.project_inputs(tf.constant(x, self.dtype))
        _, state = self.cell.step(
            projected, self.cell.zero_state(x.shape[0], self.dtype)
        )
        count = len(forget_biases)
        shift = np.zeros([count, 1, 4 * self.units])
        forget = gate_slice(GATE_ORDER_TF1, "f", self.units)
        shift[:, :, forget] = np.reshape(forget_biases, [count, 1, 1])
        stacked = (projected.numpy()[None] + shift).reshape(
            [-1, 4 * self.units]
        )
        tiled = [np.tile(part.numpy(), [count, 1]) for part in state]
        outputs = self._step(stacked, tiled)
        return np.split(outputs, count)

    def _step(
        self, projected: np.ndarray, state: list[np.ndarray] | None
    ) -> np.ndarray:
        rows = projected.shape[0]
        if state is None:
            state = self.cell.zero_state(rows, self.dtype)
        else:
            state = LSTMStateTuple(*[tf.constant(s, self.dtype) for s in state])
        output, _ = self.cell.step(tf.constant(projected, self.dtype), state)
        return output.numpy()


def run_reference(
    weights: list[list[np.ndarray]],
    forget_biases: list[float],
    inputs: np.ndarray,
    lengths: np.ndarray,
    units: int,
    cell_factory: Callable[[int], Any] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Runs lstmkit's driver with the given weights.

    Args:
        weights: per direction, the cell's `get_weights()` list (for the
            LSTM `[kernel, bias]` in the v1 layout).
        forget_biases: per direction, the LSTM's run-time forget bias
            (ignored with `cell_factory`).
        inputs: `[batch, time, input_depth]`.
        lengths: `[batch]`.
        units: number of units per direction.
        cell_factory: `units -> cell` for another lstmkit cell, or None
            for `lstmkit.LSTMCell`. Such a cell runs in its own dtype (the
            Keras default float32 unless the factory sets one), and the
            inputs are cast to it.

    Returns:
        `(outputs, states)`: outputs `[batch, time, directions * units]`
        (forward half first) and the flat state list `[c, h]` per
        direction.
    """
    cells = [
        _reference_cell(w, fb, inputs, units, cell_factory)
        for w, fb in zip(weights, forget_biases)
    ]
    x = tf.constant(inputs, cells[0].compute_dtype)
    if len(cells) == 1:
        outputs, state = rnn.dynamic_rnn(
            cells[0], x, sequence_length=lengths,
            implementation=_IMPLEMENTATION,
        )
        return outputs.numpy(), _flat_state([state])
    (out_fw, out_bw), states = rnn.bidirectional_dynamic_rnn(
        cells[0], cells[1], x, sequence_length=lengths,
        implementation=_IMPLEMENTATION,
    )
    outputs = tf.concat([out_fw, out_bw], axis=-1)
    return outputs.numpy(), _flat_state(states)


def run_builtin(
    weights: list[list[np.ndarray]],
    forget_biases: list[float],
    inputs: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Runs the v1 built-in with v1 LSTM weights, as `run_reference` does."""
    x = tf.constant(inputs)
    units = weights[0][1].shape[0] // 4
    cells = []
    for (kernel, bias), forget_bias in zip(weights, forget_biases):
        cell = builtins.v1_lstm_cell(
            units, forget_bias=forget_bias, dtype=x.dtype
        )
        cell.build(tf.TensorShape([None, inputs.shape[-1]]))
        cell.set_weights([kernel, bias])
        cells.append(cell)
    if len(cells) == 1:
        outputs, state = builtins.v1_dynamic_rnn(
            cells[0], x, sequence_length=lengths, dtype=x.dtype
        )
        return outputs.numpy(), _flat_state([state])
    (out_fw, out_bw), states = builtins.v1_bidirectional_dynamic_rnn(
        cells[0], cells[1], x, sequence_length=lengths, dtype=x.dtype
    )
    outputs = tf.concat([out_fw, out_bw], axis=-1)
    return outputs.numpy(), _flat_state(states)


def _reference_cell(
    weights: list[np.ndarray],
    forget_bias: float,
    inputs: np.ndarray,
    units: int,
    cell_factory: Callable[[int], Any] | None,
) -> Any:
    if cell_factory is None:
        cell = LSTMCell(
            units, forget_bias=forget_bias, dtype=inputs.dtype.name
        )
    else:
        cell = cell_factory(units)
    cell.build((None, inputs.shape[-1]))
    cell.set_weights(weights)
    return cell


def _flat_state(states: list[Any]) -> list[np.ndarray]:
    flat = []
    for state in states:
        if isinstance(state, (LSTMStateTuple, tuple)) and len(state) == 2:
            flat += [np.asarray(state[0]), np.asarray(state[1])]
        else:
            flat += [np.asarray(s) for s in tf.nest.flatten(state)]
    return flat
