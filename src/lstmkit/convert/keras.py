"""Conversion between the v1 `LSTMCell` and `keras.layers.LSTM`.

Keras keeps the input and recurrent weights in two matrices, orders the
gate blocks i, f, c, o, and stores the forget bias inside `bias`, where the
v1 cell adds `forget_bias` at run time. With `P` the swap of blocks 1 and 2
(see `layouts.reorder_gates`) and a v1 kernel `K` of
`input_depth + num_units` rows:

    kernel           = P(K[:input_depth])         [input_depth, 4 * units]
    recurrent_kernel = P(K[input_depth:])         [units, 4 * units]
    bias             = P(bias_v1) + forget_bias in the f block

Kernels convert exactly. The bias converts to within float32 rounding,
because adding and then subtracting `forget_bias` rounds.

Keras LSTM has no peepholes, cell clipping or output projection, so cells
with them cannot be converted. A Keras mask reproduces the v1
`sequence_length` for right-padded batches: masked steps output zeros and
keep the state, in both directions of `keras.layers.Bidirectional`.
"""

import logging
from typing import Any

import keras
import numpy as np

from lstmkit.cells import LSTMCell
from lstmkit.convert.layouts import (
    GATE_ORDER_KERAS,
    GATE_ORDER_TF1,
    V1Weights,
    gate_slice,
    reorder_gates,
)
from lstmkit.convert.tf1 import (
    activation_spec,
    reject_options,
    v1_weights_and_options,
    v1_weights_to_cell,
)

logger = logging.getLogger(__name__)

_KERAS_TARGET = "Keras LSTM (keras.layers.LSTM)"
_UNSUPPORTED_OPTIONS = ("use_peepholes", "cell_clip", "num_proj", "proj_clip")


def v1_to_keras(weights: V1Weights | Any) -> list[np.ndarray]:
    """Converts v1 LSTM weights to the weights of `keras.layers.LSTM`.

    Args:
        weights: `V1Weights`, or a built lstmkit or v1 `LSTMCell`.

    Returns:
        `[kernel [input_depth, 4 * units], recurrent_kernel
        [units, 4 * units], bias [4 * units]]` in Keras gate order, with
        `forget_bias` added to the f block of the bias. This is the order of
        `layer.get_weights()` and `layer.set_weights()`. A cell's activation
        is not a weight, so `to_keras_lstm` also copies it to the layer.

    Raises:
        ValueError: the cell has peepholes, `cell_clip`, `num_proj` or
            `proj_clip`, which Keras LSTM has no counterpart for.
    """
    weights, options = v1_weights_and_options(weights)
    reject_options(options, _UNSUPPORTED_OPTIONS, _KERAS_TARGET)

    depth = weights.input_depth
    kernel = reorder_gates(
        weights.kernel[:depth], GATE_ORDER_TF1, GATE_ORDER_KERAS
    )
    recurrent_kernel = reorder_gates(
        weights.kernel[depth:], GATE_ORDER_TF1, GATE_ORDER_KERAS
    )

    bias = reorder_gates(weights.bias, GATE_ORDER_TF1, GATE_ORDER_KERAS)
    forget = gate_slice(GATE_ORDER_KERAS, "f", weights.num_units)
    bias[forget] += np.asarray(weights.forget_bias, bias.dtype)
    return [kernel, recurrent_kernel, bias]


def keras_to_v1(
    kernel: Any,
    recurrent_kernel: Any,
    bias: Any | None,
    forget_bias: float = 1.0,
) -> V1Weights:
    """Converts `keras.layers.LSTM` weights to v1 LSTM weights.

    Args:
        kernel: `[input_depth, 4 * units]`, gate blocks i, f, c, o.
        recurrent_kernel: `[units, 4 * units]`, same blocks.
        bias: `[4 * units]`, same blocks, or None for a layer created with
            `use_bias=False`.
        forget_bias: the v1 cell's `forget_bias`, subtracted from the f
            block so that the cell adds it back at run time. Any value
            gives the same outputs, and 1.0 is the v1 default.

    Returns:
        `V1Weights` with kernel `[input_depth + units, 4 * units]` and bias
        `[4 * units]` in v1 gate order.

    Raises:
        ValueError: the shapes do not fit one LSTM layer.
    """
    kernel = np.asarray(kernel)
    recurrent_kernel = np.asarray(recurrent_kernel)
    _check_keras_shapes(kernel, recurrent_kernel, bias)
    units = recurrent_kernel.shape[0]
    if bias is None:
        bias = np.zeros([4 * units], kernel.dtype)

    stacked = np.concatenate([kernel, recurrent_kernel], axis=0)
    v1_kernel = reorder_gates(stacked, GATE_ORDER_KERAS, GATE_ORDER_TF1)

    v1_bias = reorder_gates(bias, GATE_ORDER_KERAS, GATE_ORDER_TF1)
    forget = gate_slice(GATE_ORDER_TF1, "f", units)
    v1_bias[forget] -= np.asarray(forget_bias, v1_bias.dtype)
    return V1Weights(v1_kernel, v1_bias, forget_bias=forget_bias)


def to_keras_lstm(
    cell_or_weights: Any, **lstm_kwargs: Any
) -> keras.layers.LSTM:
    """Creates a built `keras.layers.LSTM` that computes what the cell does.

    Args:
        cell_or_weights: a built lstmkit or v1 `LSTMCell`, or `V1Weights`.
            The cell's activation carries over, and `V1Weights` means tanh.
        **lstm_kwargs: further `keras.layers.LSTM` arguments, such as
            `return_sequences=True` or `return_state=True`. `dtype`
            defaults to the weights' dtype, and `zero_output_for_mask` to
            `return_sequences`, so that masked steps output zeros as the
            v1 `dynamic_rnn` does past `sequence_length`.

    Returns:
        A `keras.layers.LSTM` built for inputs
        `[batch, time, input_depth]`, holding the converted weights.

    Raises:
        ValueError: the cell has peepholes, `cell_clip`, `num_proj` or
            `proj_clip`.
    """
    weights, options = v1_weights_and_options(cell_or_weights)
    layer = _new_keras_lstm(weights, options, lstm_kwargs)
    layer.build((None, None, weights.input_depth))
    layer.set_weights(v1_to_keras(weights))
    return layer


def from_keras_lstm(
    layer: keras.layers.LSTM, forget_bias: float = 1.0
) -> LSTMCell:
    """Creates an lstmkit `LSTMCell` with the weights of a Keras LSTM.

    The cell computes one step as the layer's cell does.
    `lstmkit.dynamic_rnn` over it matches the layer when
    `go_backwards=False`. For a `go_backwards=True` layer, reverse the
    inputs first, as `lstmkit.bidirectional_dynamic_rnn` does.

    Args:
        layer: a built `keras.layers.LSTM` with sigmoid gates (the default
            `recurrent_activation`).
        forget_bias: `forget_bias` of the new cell. It is moved out of the
            stored bias, so every value gives the same outputs.

    Returns:
        A built `lstmkit.LSTMCell` for inputs `[..., input_depth]` with the
        layer's activation and dtype.

    Raises:
        TypeError: `layer` is not a `keras.layers.LSTM`.
        ValueError: the layer is not built, or its `recurrent_activation`
            is not sigmoid.
    """
    _check_keras_lstm(layer)
    cell = layer.cell
    bias = None
    if cell.use_bias:
        bias = keras.ops.convert_to_numpy(cell.bias)
    weights = keras_to_v1(
        keras.ops.convert_to_numpy(cell.kernel),
        keras.ops.convert_to_numpy(cell.recurrent_kernel),
        bias,
        forget_bias=forget_bias,
    )
    return v1_weights_to_cell(
        weights, activation=activation_spec(cell.activation)
    )


def to_keras_bidirectional(
    cell_fw: Any,
    cell_bw: Any,
    merge_mode: str | None = "concat",
    **lstm_kwargs: Any,
) -> keras.layers.Bidirectional:
    """Creates a built `keras.layers.Bidirectional` of two Keras LSTMs.

    Called with a mask that is True for the first `sequence_length` steps
    of each row, the layer reproduces
    `tf.compat.v1.nn.bidirectional_dynamic_rnn(cell_fw, cell_bw, ...,
    sequence_length=...)`: with `merge_mode=None` the outputs are
    `[output_fw, output_bw]`, with "concat" their concatenation.

    Args:
        cell_fw: the forward cell or its `V1Weights`.
        cell_bw: the backward cell or its `V1Weights`, with the same input
            depth.
        merge_mode: `keras.layers.Bidirectional` merge mode.
        **lstm_kwargs: arguments of both `keras.layers.LSTM` layers, such
            as `return_sequences=True` or `return_state=True`.

    Returns:
        The built layer. With `return_state=True` it returns
        `[outputs, h_fw, c_fw, h_bw, c_bw]`.

    Raises:
        ValueError: either cell has an option Keras LSTM lacks (as in
            `to_keras_lstm`), or the input depths differ.
    """
    weights_fw, options_fw = v1_weights_and_options(cell_fw)
    weights_bw, options_bw = v1_weights_and_options(cell_bw)
    if weights_fw.input_depth != weights_bw.input_depth:
        raise ValueError(
            f"cell_fw has input depth {weights_fw.input_depth} and cell_bw "
            f"{weights_bw.input_depth}, but both directions read the same "
            "inputs. Pass cells built for the same depth."
        )
    forward = _new_keras_lstm(weights_fw, options_fw, lstm_kwargs)
    backward = _new_keras_lstm(
        weights_bw, options_bw, {**lstm_kwargs, "go_backwards": True}
    )
    layer = keras.layers.Bidirectional(
        forward, backward_layer=backward, merge_mode=merge_mode
    )
    layer.build((None, None, weights_fw.input_depth))

    # Bidirectional recreates the forward layer from its config, which
    # drops weights, so they are set on its own layers after building.
    layer.forward_layer.set_weights(v1_to_keras(weights_fw))
    layer.backward_layer.set_weights(v1_to_keras(weights_bw))
    return layer


def from_keras_bidirectional(
    layer: keras.layers.Bidirectional, forget_bias: float = 1.0
) -> tuple[LSTMCell, LSTMCell]:
    """Creates the forward and backward lstmkit cells of a Keras BiLSTM.

    `lstmkit.bidirectional_dynamic_rnn(cell_fw, cell_bw, inputs,
    sequence_length=lengths)` then matches the layer called with the mask
    `tf.sequence_mask(lengths)` on right-padded inputs.

    Args:
        layer: a built `keras.layers.Bidirectional` around a
            `keras.layers.LSTM` in each direction.
        forget_bias: `forget_bias` of both new cells, as in
            `from_keras_lstm`.

    Returns:
        `(cell_fw, cell_bw)`, built `lstmkit.LSTMCell`s.

    Raises:
        TypeError: `layer` is not a Bidirectional of two Keras LSTMs.
        ValueError: as `from_keras_lstm`.
    """
    if not isinstance(layer, keras.layers.Bidirectional):
        raise TypeError(
            "Expected a keras.layers.Bidirectional; got "
            f"{type(layer).__name__}. For a single LSTM use from_keras_lstm."
        )
    cell_fw = from_keras_lstm(layer.forward_layer, forget_bias)
    cell_bw = from_keras_lstm(layer.backward_layer, forget_bias)
    return cell_fw, cell_bw


def _new_keras_lstm(
    weights: V1Weights, options: dict[str, Any], lstm_kwargs: dict[str, Any]
) -> keras.layers.LSTM:
    """Creates an unbuilt Keras LSTM with the cell's size and activation."""
    reject_options(options, _UNSUPPORTED_OPTIONS, _KERAS_TARGET)

    # Zeros at masked steps, as v1 outputs past sequence_length. Only with
    # return_sequences: otherwise the zeros would replace the last output.
    return_sequences = lstm_kwargs.get("return_sequences", False)
    kwargs = {
        "dtype": weights.dtype.name,
        "zero_output_for_mask": return_sequences,
        **lstm_kwargs,
    }
    return keras.layers.LSTM(
        weights.num_units,
        activation=options["activation"],
        recurrent_activation="sigmoid",
        **kwargs,
    )


def _check_keras_lstm(layer: Any) -> None:
    if not isinstance(layer, keras.layers.LSTM):
        raise TypeError(
            f"Expected a keras.layers.LSTM; got {type(layer).__name__}. "
            "For keras.layers.Bidirectional use from_keras_bidirectional."
        )
    if not layer.built:
        raise ValueError(
            f"Keras layer {layer.name!r} is not built, so it has no weights. "
            "Call it on inputs or call layer.build((None, None, depth)) "
            "first."
        )

    gate_activation = getattr(layer.cell.recurrent_activation, "__name__", "")
    if gate_activation != "sigmoid":
        raise ValueError(
            f"Layer {layer.name!r} has recurrent_activation="
            f"{gate_activation or layer.cell.recurrent_activation!r}, but "
            "the v1 LSTMCell has sigmoid gates, so only "
            "recurrent_activation='sigmoid' converts."
        )


def _check_keras_shapes(
    kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: Any | None
) -> None:
    if recurrent_kernel.ndim != 2:
        raise ValueError(
            "recurrent_kernel must have shape [units, 4 * units]; got "
            f"{recurrent_kernel.shape}."
        )
    units = recurrent_kernel.shape[0]
    expected = {
        "kernel": (kernel.shape, (None, 4 * units)),
        "recurrent_kernel": (recurrent_kernel.shape, (units, 4 * units)),
    }
    if bias is not None:
        expected["bias"] = (np.shape(bias), (4 * units,))

    for name, (shape, expected_shape) in expected.items():
        matches = len(shape) == len(expected_shape) and all(
            size is None or size == actual
            for actual, size in zip(shape, expected_shape)
        )
        if not matches:
            expected_text = str(expected_shape).replace("None", "input_depth")
            raise ValueError(
                f"{name} has shape {shape}; expected {expected_text} for "
                f"units={units} (from recurrent_kernel)."
            )

