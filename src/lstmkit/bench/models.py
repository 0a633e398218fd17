"""Benchmark models of lstmkit and of the TensorFlow and Keras built-ins.

Every model is built for one case from that case's `V1Weights` (one per
direction), as `Model(case, weights)`. It maps inputs
`[batch, time, input_depth]` and optional lengths `[batch]` to outputs
`[batch, time, units * directions]`, the forward direction first, zero
past each row's length. `variables` lists the weights that a training
step differentiates, and `v1_gradients` rewrites their gradients in the
v1 layout, so that the correctness check can compare them with the v1
`dynamic_rnn`.
"""

import logging
from typing import Any

import numpy as np
import tensorflow as tf

import lstmkit
from lstmkit import builtins
from lstmkit.bench.cases import Case
from lstmkit.convert.keras import (
    to_keras_bidirectional,
    to_keras_lstm,
    v1_to_keras,
)
from lstmkit.convert.layouts import (
    GATE_ORDER_KERAS,
    GATE_ORDER_TF1,
    V1Weights,
    reorder_gates,
)
from lstmkit.convert.tf1 import v1_weights_to_cell

logger = logging.getLogger(__name__)


class BenchModel:
    """An implementation built for one case.

    Attributes:
        variables: the weights a training step differentiates.
    """

    variables: list[Any]

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        """Computes `[batch, time, units * directions]` outputs."""
        raise NotImplementedError

    def v1_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        """Rewrites gradients of `variables` in the v1 layout.

        Returns:
            Per direction, the gradients of the v1 kernel
            `[input_depth + units, 4 * units]` and bias `[4 * units]`, gate
            order i, j, f, o.

        Raises:
            NotImplementedError: the model has no v1 counterpart, such as
                a GRU.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no weights in the v1 layout"
        )


def concat_directions(outputs: list[tf.Tensor]) -> tf.Tensor:
    """Joins per-direction outputs along the last axis, forward first."""
    if len(outputs) == 1:
        return outputs[0]
    return tf.concat(outputs, axis=-1)


def keras_gradients_to_v1(gradients: list[np.ndarray]) -> list[np.ndarray]:
    """Rewrites Keras LSTM gradients in the v1 layout.

    Args:
        gradients: per direction, gradients of `kernel`
            `[input_depth, 4 * units]`, `recurrent_kernel`
            `[units, 4 * units]` and `bias` `[4 * units]`, gate order
            i, f, c, o.

    Returns:
        Per direction, the v1 kernel and bias gradients (see
        `BenchModel.v1_gradients`). The forget bias is a constant, so the
        bias gradient needs only the gate reordering.
    """
    converted = []
    for start in range(0, len(gradients), 3):
        kernel, recurrent_kernel, bias = gradients[start:start + 3]
        stacked = np.concatenate([kernel, recurrent_kernel], axis=0)
        converted.append(
            reorder_gates(stacked, GATE_ORDER_KERAS, GATE_ORDER_TF1)
        )
        converted.append(reorder_gates(bias, GATE_ORDER_KERAS, GATE_ORDER_TF1))
    return converted


class LstmkitModel(BenchModel):
    """`lstmkit.dynamic_rnn` or `bidirectional_dynamic_rnn` on `LSTMCell`."""

    def __init__(self, case: Case, weights: list[V1Weights]):
        self.cells = [v1_weights_to_cell(w) for w in weights]
        self.variables = [
            variable
            for cell in self.cells
            for variable in (cell.kernel, cell.bias)
        ]

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        if len(self.cells) == 1:
            outputs, _ = lstmkit.dynamic_rnn(
                self.cells[0], inputs, sequence_length=lengths
            )
            return outputs
        (forward, backward), _ = lstmkit.bidirectional_dynamic_rnn(
            self.cells[0], self.cells[1], inputs, sequence_length=lengths
        )
        return concat_directions([forward, backward])

    def v1_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        return list(gradients)


class VariantModel(LstmkitModel):
    """An lstmkit variant cell (layer norm, GRU) on lstmkit's drivers.

    The cells keep their own initialization, seeded by the caller, because
    the variants have no v1 counterpart to copy weights from.

    Args:
        case: the case.
        weights: the case's LSTM weights, read only for their sizes.
        cell_name: the name of a cell class in `lstmkit`, such as
            "GRUCell", called with the number of units.
    """

    def __init__(
        self, case: Case, weights: list[V1Weights], cell_name: str
    ):
        cell_class = getattr(lstmkit, cell_name)
        self.cells = []
        for direction_weights in weights:
            cell = cell_class(direction_weights.num_units)
            cell.build((direction_weights.input_depth,))
            self.cells.append(cell)
        self.variables = [
            variable
            for cell in self.cells
            for variable in cell.trainable_weights
        ]

    def v1_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        return BenchModel.v1_gradients(self, gradients)


class V1Model(BenchModel):
    """`tf.compat.v1.nn.dynamic_rnn` with the v1 `LSTMCell` from tf_keras.

    This is the reference of the correctness check.
    """

    def __init__(self, case: Case, weights: list[V1Weights]):
        self.cells = [_v1_cell(w) for w in weights]
        self.variables = [
            variable
            for cell in self.cells
            for variable in (cell._kernel, cell._bias)
        ]

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        if len(self.cells) == 1:
            outputs, _ = builtins.v1_dynamic_rnn(
                self.cells[0], inputs, sequence_length=lengths,
                dtype=inputs.dtype,
            )
            return outputs
        (forward, backward), _ = builtins.v1_bidirectional_dynamic_rnn(
            self.cells[0], self.cells[1], inputs, sequence_length=lengths,
            dtype=inputs.dtype,
        )
        return concat_directions([forward, backward])

    def v1_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        return list(gradients)


def _v1_cell(weights: V1Weights) -> Any:
    cell = builtins.v1_lstm_cell(
        weights.num_units, forget_bias=weights.forget_bias
    )
    # The v1 cell creates its variables on its first call.
    cell(
        tf.zeros([1, weights.input_depth]),
        cell.zero_state(1, tf.float32),
    )
    cell.set_weights([weights.kernel, weights.bias])
    return cell


class KerasModel(BenchModel):
    """`keras.layers.LSTM`, or `keras.layers.Bidirectional` of two (Keras 3).

    Lengths become a mask, with `zero_output_for_mask=True`, so that the
    outputs are zero past each length as in the v1 `dynamic_rnn`.
    """

    def __init__(self, case: Case, weights: list[V1Weights]):
        if len(weights) == 1:
            self.layer = to_keras_lstm(weights[0], return_sequences=True)
            lstms = [self.layer]
        else:
            self.layer = to_keras_bidirectional(
                weights[0], weights[1], return_sequences=True
            )
            lstms = [self.layer.forward_layer, self.layer.backward_layer]
        self.variables = [
            variable
            for lstm in lstms
            for variable in (
                lstm.cell.kernel,
                lstm.cell.recurrent_kernel,
                lstm.cell.bias,
            )
        ]

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        return self.layer(inputs, mask=_mask(inputs, lengths))

    def v1_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        return keras_gradients_to_v1(gradients)


def _mask(inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
    if lengths is None:
        return None
    return tf.sequence_mask(lengths, tf.shape(inputs)[1])


class TfKerasModel(BenchModel):
    """tf_keras' `LSTM`, or its `Bidirectional` of two (Keras 2).

    tf_keras is imported directly, so that Keras 3 stays `tf.keras` for the
    rest of the process. Lengths become a mask, as in `KerasModel`.
    """

    def __init__(self, case: Case, weights: list[V1Weights]):
        import tf_keras

        if len(weights) == 1:
            self.layer = _tf_keras_lstm(tf_keras, weights[0])
        else:
            self.layer = tf_keras.layers.Bidirectional(
                _tf_keras_lstm(tf_keras, weights[0]),
                backward_layer=_tf_keras_lstm(
                    tf_keras, weights[1], go_backwards=True
                ),
            )
        self.layer.build(tf.TensorShape([None, None, weights[0].input_depth]))

        # Bidirectional copies its forward layer, so the weights are set on
        # its own two layers after building.
        lstms = [self.layer]
        if len(weights) == 2:
            lstms = [self.layer.forward_layer, self.layer.backward_layer]
        for lstm, direction_weights in zip(lstms, weights):
            lstm.set_weights(v1_to_keras(direction_weights))

        self.variables = [
            variable
            for lstm in lstms
            for variable in (
                lstm.cell.kernel,
                lstm.cell.recurrent_kernel,
                lstm.cell.bias,
            )
        ]

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        return self.layer(inputs, mask=_mask(inputs, lengths))

    def v1_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        return keras_gradients_to_v1(gradients)


def _tf_keras_lstm(
    tf_keras: Any, weights: V1Weights, go_backwards: bool = False
) -> Any:
    return tf_keras.layers.LSTM(
        weights.num_units,
        return_sequences=True,
        zero_output_for_mask=True,
        go_backwards=go_backwards,
    )
