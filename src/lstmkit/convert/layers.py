"""Converted weights as `lstmkit.layers` objects, ready for a Keras model.

The other converters return `lstmkit.LSTMCell` objects; these functions
put one direction (or a pair) into an `lstmkit.layers.LSTM` (or
`Bidirectional`) with either semantics, so a TF1 checkpoint or a PyTorch
state dict drops into a Keras model in one call.
"""

from typing import Any, Mapping

import numpy as np

from lstmkit.convert.layouts import (
    GATE_ORDER_KERAS,
    GATE_ORDER_TF1,
    V1Weights,
    gate_slice,
    reorder_gates,
)
from lstmkit.convert.tf1 import (
    read_tf1_bidirectional_checkpoint,
    read_tf1_checkpoint,
    v1_weights_from_cell,
)
from lstmkit.convert.torch import from_torch_lstm_state_dict


def to_lstmkit_layer(
    cell_fw: Any,
    cell_bw: Any = None,
    semantics: str = "tf1",
    **layer_kwargs: Any,
) -> Any:
    """Builds an `lstmkit.layers.LSTM` (or `Bidirectional`) from v1 weights.

    Args:
        cell_fw: an `lstmkit.LSTMCell`, a v1 cell or a `V1Weights`.
        cell_bw: the backward direction of a BiLSTM, or `None`.
        semantics: `"tf1"` keeps the v1 weights and run-time forget bias;
            `"keras"` folds the forget bias into Keras' bias.
        **layer_kwargs: passed to `lstmkit.layers.LSTM`, for example
            `return_sequences=True`.

    Returns:
        A built layer whose weights reproduce the source.

    Raises:
        ValueError: options that the chosen semantics cannot hold.
    """
    from lstmkit import layers

    directions = [cell_fw] if cell_bw is None else [cell_fw, cell_bw]
    weights = [_as_v1_weights(cell) for cell in directions]
    first = weights[0]
    options = dict(
        use_peepholes=first.use_peepholes,
        num_proj=first.num_proj,
    )
    if semantics == "tf1":
        options["forget_bias"] = first.forget_bias
    layer = layers.LSTM(
        first.num_units, semantics=semantics, **options, **layer_kwargs
    )
    if cell_bw is not None:
        layer = layers.Bidirectional(layer)
    layer.build((None, None, first.input_depth))

    arrays = []
    for direction in weights:
        arrays += _layer_arrays(direction, semantics)
    layer.set_weights(arrays)
    return layer


def layers_from_torch_state_dict(
    state_dict: Mapping[str, Any],
    forget_bias: float = 1.0,
    semantics: str = "keras",
    **layer_kwargs: Any,
) -> list[Any]:
    """Converts a PyTorch `nn.LSTM` state dict to one lstmkit layer per layer.

    Stacked (`num_layers > 1`) and bidirectional state dicts give a list of
    `LSTM` or `Bidirectional` layers, in order; feed each layer's
    sequence output to the next (`return_sequences=True` is set).

    Args:
        state_dict: the module's `state_dict()`, as arrays or tensors.
        forget_bias: the run-time forget bias of the v1 form, see
            `torch_to_v1`; it does not change the outputs.
        semantics: `"keras"` (default) or `"tf1"`.
        **layer_kwargs: passed to every `lstmkit.layers.LSTM`.
    """
    layer_kwargs.setdefault("return_sequences", True)
    stack = from_torch_lstm_state_dict(state_dict, forget_bias=forget_bias)
    return [
        to_lstmkit_layer(cell_fw, cell_bw, semantics, **layer_kwargs)
        for cell_fw, cell_bw in stack
    ]


def layer_from_tf1_checkpoint(
    path: str,
    prefix: str | None = None,
    bidirectional: bool = False,
    forget_bias: float = 1.0,
    semantics: str = "tf1",
    **layer_kwargs: Any,
) -> Any:
    """Reads a checkpoint written by `dynamic_rnn` into an lstmkit layer.

    Args:
        path: the checkpoint prefix or its folder.
        prefix: variable scope; `"rnn/lstm_cell"` or `"bidirectional_rnn"`
            by default.
        bidirectional: read `<prefix>/fw/...` and `<prefix>/bw/...`.
        forget_bias: the forget bias the model used; TF1 checkpoints do not
            store it.
        semantics: `"tf1"` (default) or `"keras"`.
        **layer_kwargs: passed to `lstmkit.layers.LSTM`.
    """
    if bidirectional:
        forward, backward = read_tf1_bidirectional_checkpoint(
            path, prefix=prefix or "bidirectional_rnn", forget_bias=forget_bias
        )
        return to_lstmkit_layer(forward, backward, semantics, **layer_kwargs)
    weights = read_tf1_checkpoint(
        path, prefix=prefix or "rnn/lstm_cell", forget_bias=forget_bias
    )
    return to_lstmkit_layer(weights, None, semantics, **layer_kwargs)


def _as_v1_weights(source: Any) -> V1Weights:
    if isinstance(source, V1Weights):
        return source
    return v1_weights_from_cell(source)


def _keras_arrays(weights: V1Weights) -> list[np.ndarray]:
    """Keras' `[kernel, recurrent_kernel, bias]`, forget bias folded in.

    Unlike `v1_to_keras`, this keeps peepholes and projection possible,
    because `KerasLSTMCell` stores them after the three Keras arrays.
    """
    kernel = reorder_gates(weights.kernel, GATE_ORDER_TF1, GATE_ORDER_KERAS)
    bias = weights.bias.astype(np.float64).copy()
    bias[gate_slice(GATE_ORDER_TF1, "f", weights.num_units)] += (
        weights.forget_bias
    )
    bias = reorder_gates(bias, GATE_ORDER_TF1, GATE_ORDER_KERAS)
    depth = weights.input_depth
    return [
        kernel[:depth],
        kernel[depth:],
        bias.astype(weights.kernel.dtype),
    ]


def _layer_arrays(weights: V1Weights, semantics: str) -> list[Any]:
    if semantics == "keras":
        arrays = _keras_arrays(weights)
    else:
        arrays = [weights.kernel, weights.bias]
    if weights.use_peepholes:
        arrays += [weights.w_f_diag, weights.w_i_diag, weights.w_o_diag]
    if weights.projection is not None:
        arrays.append(weights.projection)
    return arrays
