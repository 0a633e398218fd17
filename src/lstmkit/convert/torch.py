"""Conversion between the v1 `LSTMCell` and PyTorch `nn.LSTM` state dicts.

An `nn.LSTM` state dict has, for layer `k` and the suffix "" (forward) or
"_reverse" (backward direction of a bidirectional LSTM):

    weight_ih_l{k}{suffix}  [4 * hidden_size, input_size]
    weight_hh_l{k}{suffix}  [4 * hidden_size, proj_size or hidden_size]
    bias_ih_l{k}{suffix}    [4 * hidden_size], absent with bias=False
    bias_hh_l{k}{suffix}    [4 * hidden_size], absent with bias=False
    weight_hr_l{k}{suffix}  [proj_size, hidden_size], with proj_size > 0

with gate blocks i, f, g, o. The gates add both biases, so with `P` the swap
of blocks 1 and 2 and a v1 kernel `K` of `input_depth + h_depth` rows:

    weight_ih           = P(K[:input_depth]).T
    weight_hh           = P(K[input_depth:]).T
    bias_ih + bias_hh   = P(bias_v1) + forget_bias in the f block
    weight_hr           = projection_kernel.T

Writing puts the whole bias in `bias_ih` and zeros in `bias_hh`. Reading
adds the two. Layer `k > 0` reads the previous layer's outputs, and for a
bidirectional LSTM that is the forward and backward outputs concatenated,
so its input size is `2 * h_depth`.

`nn.LSTM` has tanh activations and no peepholes or clipping, so cells with
those options cannot be converted. This module needs no PyTorch: values
may be NumPy arrays or torch tensors, and written values are NumPy arrays,
which `{k: torch.from_numpy(v) for k, v in d.items()}` turns into a state
dict that `nn.LSTM.load_state_dict` accepts.
"""

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lstmkit.cells import LSTMCell
from lstmkit.convert.layouts import (
    GATE_ORDER_TF1,
    GATE_ORDER_TORCH,
    V1Weights,
    check_forget_bias,
    gate_slice,
    reorder_gates,
)
from lstmkit.convert.tf1 import (
    reject_options,
    v1_weights_and_options,
    v1_weights_to_cell,
)

logger = logging.getLogger(__name__)

_TORCH_TARGET = "PyTorch nn.LSTM"
_UNSUPPORTED_OPTIONS = ("use_peepholes", "cell_clip", "proj_clip", "activation")
_KEY_PATTERN = re.compile(
    r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$"
)

# One entry of `to_torch_lstm_state_dict`'s `layers`: a cell (or weights)
# for a unidirectional layer, or a (forward, backward or None) pair.
LayerSpec = Any


def v1_to_torch(
    weights: V1Weights | Any, layer: int = 0, reverse: bool = False
) -> dict[str, np.ndarray]:
    """Converts one v1 LSTM cell to the entries of one `nn.LSTM` direction.

    Args:
        weights: `V1Weights`, or a built lstmkit or v1 `LSTMCell`.
        layer: the layer index `k` in the key names.
        reverse: name the keys for the backward direction ("_reverse").

    Returns:
        `weight_ih_l{k}` `[4 * units, input_depth]`, `weight_hh_l{k}`
        `[4 * units, h_depth]`, `bias_ih_l{k}` `[4 * units]` (with
        `forget_bias` in the f block), `bias_hh_l{k}` (zeros) and, with a
        projection, `weight_hr_l{k}` `[num_proj, units]`, all in the
        weights' dtype.

    Raises:
        ValueError: the cell has peepholes, `cell_clip`, `proj_clip` or an
            activation other than tanh.
    """
    weights, options = v1_weights_and_options(weights)
    reject_options(options, _UNSUPPORTED_OPTIONS, _TORCH_TARGET)

    suffix = _key_suffix(layer, reverse)
    depth = weights.input_depth
    kernel = reorder_gates(weights.kernel, GATE_ORDER_TF1, GATE_ORDER_TORCH)

    bias = reorder_gates(weights.bias, GATE_ORDER_TF1, GATE_ORDER_TORCH)
    forget = gate_slice(GATE_ORDER_TORCH, "f", weights.num_units)
    bias[forget] += np.asarray(weights.forget_bias, bias.dtype)

    entries = {
        f"weight_ih{suffix}": np.ascontiguousarray(kernel[:depth].T),
        f"weight_hh{suffix}": np.ascontiguousarray(kernel[depth:].T),
        f"bias_ih{suffix}": bias,
        f"bias_hh{suffix}": np.zeros_like(bias),
    }
    if weights.projection is not None:
        entries[f"weight_hr{suffix}"] = np.ascontiguousarray(
            weights.projection.T
        )
    return entries


def torch_to_v1(
    state_dict: Mapping[str, Any],
    layer: int = 0,
    reverse: bool = False,
    forget_bias: float = 1.0,
) -> V1Weights:
    """Converts one layer and direction of an `nn.LSTM` state dict.

    Args:
        state_dict: `nn.LSTM.state_dict()` or a mapping with the same keys,
            with torch tensors or NumPy arrays as values.
        layer: the layer index `k` to read.
        reverse: read the backward direction ("_reverse" keys).
        forget_bias: the new cell's `forget_bias`, subtracted from the
            summed bias. Any value gives the same outputs, and 1.0 is the v1
            default.

    Returns:
        `V1Weights` with kernel `[input_size + h_depth, 4 * hidden_size]`,
        bias `[4 * hidden_size]` and, when `weight_hr` is present,
        projection `[hidden_size, proj_size]`.

    Raises:
        ValueError: a key of this layer is missing, a shape does not fit
            or a value is not floating-point; the message lists what is
            missing and the keys found.
        TypeError: `state_dict` is not a mapping, or `forget_bias` is not
            a number.
    """
    _check_mapping(state_dict)
    forget_bias = check_forget_bias(forget_bias)
    suffix = _key_suffix(layer, reverse)
    arrays = _layer_arrays(state_dict, suffix)
    _check_layer_shapes(arrays, suffix)
    units = arrays["weight_ih"].shape[0] // 4

    stacked = np.concatenate(
        [arrays["weight_ih"].T, arrays["weight_hh"].T], axis=0
    )
    kernel = reorder_gates(stacked, GATE_ORDER_TORCH, GATE_ORDER_TF1)

    if "bias_ih" in arrays:
        bias = arrays["bias_ih"] + arrays["bias_hh"]
    else:
        bias = np.zeros([4 * units], kernel.dtype)
    bias = reorder_gates(bias, GATE_ORDER_TORCH, GATE_ORDER_TF1)
    forget = gate_slice(GATE_ORDER_TF1, "f", units)
    bias[forget] -= np.asarray(forget_bias, bias.dtype)

    projection = None
    if "weight_hr" in arrays:
        projection = np.ascontiguousarray(arrays["weight_hr"].T)
    return V1Weights(
        kernel, bias, forget_bias=forget_bias, projection=projection
    )


def from_torch_lstm_state_dict(
    state_dict: Mapping[str, Any], forget_bias: float = 1.0
) -> list[tuple[LSTMCell, LSTMCell | None]]:
    """Creates lstmkit cells for every layer of an `nn.LSTM` state dict.

    `num_layers`, `bidirectional` and `proj_size` are read from the keys and
    shapes. With `batch_first=True` inputs, layer 0 matches
    `lstmkit.dynamic_rnn(cell_fw, x)` (or `bidirectional_dynamic_rnn` with
    the pair, whose outputs concatenated on the last axis are the layer's
    output), and layer `k + 1` reads the outputs of layer `k`.

    Args:
        state_dict: `nn.LSTM.state_dict()` of one `nn.LSTM` module, with
            torch tensors or NumPy arrays as values.
        forget_bias: `forget_bias` of every new cell, as in `torch_to_v1`.

    Returns:
        One `(cell_fw, cell_bw)` per layer, `cell_bw` None unless the LSTM
        is bidirectional. Cells are built and named "lstm_cell_l{k}" and
        "lstm_cell_l{k}_reverse".

    Raises:
        ValueError: a key is not an `nn.LSTM` key, a layer or direction is
            missing or incomplete, the shapes do not fit together, or a
            value is not floating-point.
        TypeError: `state_dict` is not a mapping.
    """
    _check_mapping(state_dict)
    layer_count, bidirectional = _state_dict_structure(state_dict)

    layers = []
    for layer in range(layer_count):
        weights_fw = torch_to_v1(state_dict, layer, False, forget_bias)
        weights_bw = None
        if bidirectional:
            weights_bw = torch_to_v1(state_dict, layer, True, forget_bias)
        layers.append((weights_fw, weights_bw))
    _check_stack(layers, "state dict")

    cells = []
    for layer, (weights_fw, weights_bw) in enumerate(layers):
        suffix = _key_suffix(layer, False)
        cell_fw = v1_weights_to_cell(weights_fw, name=f"lstm_cell{suffix}")
        cell_bw = None
        if weights_bw is not None:
            cell_bw = v1_weights_to_cell(
                weights_bw, name=f"lstm_cell{suffix}_reverse"
            )
        cells.append((cell_fw, cell_bw))
    logger.debug(
        "Read an nn.LSTM state dict: num_layers=%d, bidirectional=%s.",
        layer_count,
        bidirectional,
    )
    return cells


def to_torch_lstm_state_dict(
    layers: Sequence[LayerSpec],
) -> dict[str, np.ndarray]:
    """Converts a stack of v1 LSTM cells to an `nn.LSTM` state dict.

    Args:
        layers: one entry per layer, bottom first. An entry is a built
            lstmkit or v1 `LSTMCell` or `V1Weights` for a unidirectional
            layer, or a pair `(cell_fw, cell_bw)` where `cell_bw` None means
            unidirectional. Either every layer or none has a backward
            cell, all share `num_units` and `num_proj`, and layer `k > 0`
            must read `h_depth` (`2 * h_depth` when bidirectional)
            features.

    Returns:
        The state dict in `nn.LSTM` key order, as NumPy arrays, for
        `nn.LSTM(input_size, num_units, num_layers=len(layers),
        bidirectional=..., proj_size=num_proj or 0)`.

    Raises:
        ValueError: a cell has an option `nn.LSTM` lacks (peepholes,
            `cell_clip`, `proj_clip`, a non-tanh activation), `layers` is
            empty, or the layers do not stack as in one `nn.LSTM`.
    """
    if len(layers) == 0:
        raise ValueError("layers is empty. Pass at least one cell.")

    weight_pairs = []
    for entry in layers:
        source_fw, source_bw = _as_pair(entry)
        weights_bw = None
        if source_bw is not None:
            weights_bw = _exportable_weights(source_bw)
        weight_pairs.append((_exportable_weights(source_fw), weights_bw))
    _check_stack(weight_pairs, "layers")

    state_dict = {}
    for layer, (weights_fw, weights_bw) in enumerate(weight_pairs):
        state_dict.update(v1_to_torch(weights_fw, layer))
        if weights_bw is not None:
            state_dict.update(v1_to_torch(weights_bw, layer, reverse=True))
    return state_dict


def _exportable_weights(source: Any) -> V1Weights:
    weights, options = v1_weights_and_options(source)
    reject_options(options, _UNSUPPORTED_OPTIONS, _TORCH_TARGET)
    return weights


def _as_pair(entry: LayerSpec) -> tuple[Any, Any]:
    if isinstance(entry, (tuple, list)):
        if len(entry) != 2 or entry[0] is None:
            raise ValueError(
                "A layer given as a tuple must be (cell_fw, cell_bw) with "
                f"cell_bw possibly None; got {len(entry)} items: {entry!r:.200}"
            )
        return entry[0], entry[1]
    return entry, None


def _key_suffix(layer: int, reverse: bool) -> str:
    if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
        raise ValueError(f"layer must be an int >= 0; got {layer!r}.")
    return f"_l{layer}" + ("_reverse" if reverse else "")


def _shape(value: Any) -> tuple[int, ...]:
    if hasattr(value, "shape"):
        return tuple(value.shape)
    return np.shape(value)


def _to_numpy(value: Any) -> np.ndarray:
    """Converts a torch tensor (on any device) or an array to NumPy."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value)


def _layer_arrays(
    state_dict: Mapping[str, Any], suffix: str
) -> dict[str, np.ndarray]:
    """Collects the arrays of one layer and direction, keyed without suffix.

    Biases are required when any key of the state dict is a bias, because
    an `nn.LSTM` with `bias=False` has none at all.
    """
    has_bias = any(key.startswith("bias_") for key in state_dict)
    required = ["weight_ih", "weight_hh"]
    if has_bias:
        required += ["bias_ih", "bias_hh"]

    missing = [
        name + suffix for name in required if name + suffix not in state_dict
    ]
    if missing:
        raise ValueError(
            f"Missing key(s) {', '.join(missing)} in the nn.LSTM state dict. "
            f"Found keys: {_list_keys(state_dict)}. Check num_layers and "
            "bidirectional, or pass the state_dict() of the nn.LSTM itself."
        )

    names = required + ["weight_hr"]
    arrays = {
        name: _to_numpy(state_dict[name + suffix])
        for name in names
        if name + suffix in state_dict
    }
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            raise ValueError(
                f"{name}{suffix} has dtype {array.dtype} with shape "
                f"{array.shape}, but nn.LSTM weights are floating-point. "
                "Pass the state_dict() of the nn.LSTM, or cast its values "
                "to float32."
            )
    return arrays


def _check_mapping(state_dict: Any) -> None:
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping from nn.LSTM key names to "
            f"tensors or arrays, such as lstm.state_dict(); got "
            f"{type(state_dict).__name__} {state_dict!r:.100}."
        )


def _check_layer_shapes(arrays: dict[str, np.ndarray], suffix: str) -> None:
    weight_ih = arrays["weight_ih"]
    rows = weight_ih.shape[0] if weight_ih.ndim == 2 else 0
    if rows == 0 or rows % 4 != 0:
        raise ValueError(
            f"weight_ih{suffix} must have shape [4 * hidden_size, "
            f"input_size]; got {weight_ih.shape}."
        )
    units = weight_ih.shape[0] // 4
    h_depth = units
    if "weight_hr" in arrays:
        h_depth = arrays["weight_hr"].shape[0]

    expected = {
        "weight_hh": (4 * units, h_depth),
        "bias_ih": (4 * units,),
        "bias_hh": (4 * units,),
        "weight_hr": (h_depth, units),
    }
    wrong = [
        f"{name}{suffix} {arrays[name].shape} (expected {shape})"
        for name, shape in expected.items()
        if name in arrays and arrays[name].shape != shape
    ]
    if wrong:
        raise ValueError(
            f"Inconsistent shapes in the nn.LSTM state dict for hidden_size="
            f"{units} (from weight_ih{suffix} {weight_ih.shape}): "
            f"{'; '.join(wrong)}."
        )


def _state_dict_structure(state_dict: Mapping[str, Any]) -> tuple[int, bool]:
    """Returns `(num_layers, bidirectional)` read from the keys."""
    layers = set()
    bidirectional = False
    unexpected = []
    for key in state_dict:
        match = _KEY_PATTERN.match(key)
        if match is None:
            unexpected.append(key)
            continue
        layers.add(int(match.group(2)))
        bidirectional = bidirectional or match.group(3) is not None

    if unexpected:
        raise ValueError(
            f"Keys {unexpected!r:.500} are not nn.LSTM keys, which are "
            "weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} and "
            "weight_hr_l{k}, each optionally with _reverse. Pass the "
            "state_dict() of the nn.LSTM module, not of a model around it."
        )
    if not layers:
        raise ValueError(
            "The state dict is empty, so no nn.LSTM keys were found."
        )

    missing_layers = sorted(set(range(max(layers) + 1)) - layers)
    if missing_layers:
        raise ValueError(
            f"Layers {missing_layers} are missing from the nn.LSTM state "
            f"dict. Found keys: {_list_keys(state_dict)}."
        )
    return max(layers) + 1, bidirectional


def _check_stack(
    layers: list[tuple[V1Weights, V1Weights | None]], label: str
) -> None:
    """Checks that the layers fit one `nn.LSTM` (shared sizes, depths)."""
    first = layers[0][0]
    bidirectional = layers[0][1] is not None
    directions = 2 if bidirectional else 1

    problems = []
    for layer, (weights_fw, weights_bw) in enumerate(layers):
        if (weights_bw is not None) != bidirectional:
            problems.append(
                f"layer {layer} is "
                f"{'bi' if weights_bw is not None else 'uni'}directional "
                f"but layer 0 is not"
            )
            continue
        for direction, weights in (("", weights_fw), ("_reverse", weights_bw)):
            if weights is None:
                continue
            where = f"layer {layer}{direction}"
            problems += _stack_problems(weights, first, where)
            if layer > 0:
                expected_depth = directions * first.h_depth
            else:
                expected_depth = first.input_depth
            if weights.input_depth != expected_depth:
                problems.append(
                    f"{where} reads {weights.input_depth} features, "
                    f"expected {expected_depth}"
                )

    if problems:
        raise ValueError(
            f"The {label} does not describe one nn.LSTM: "
            f"{'; '.join(problems)}. nn.LSTM layers share hidden_size and "
            "proj_size, and layer k > 0 reads the previous layer's outputs."
        )


def _stack_problems(
    weights: V1Weights, first: V1Weights, where: str
) -> list[str]:
    problems = []
    if weights.num_units != first.num_units:
        problems.append(
            f"{where} has num_units={weights.num_units}, layer 0 has "
            f"{first.num_units}"
        )
    if weights.num_proj != first.num_proj:
        problems.append(
            f"{where} has num_proj={weights.num_proj}, layer 0 has "
            f"{first.num_proj}"
        )
    return problems


def _list_keys(state_dict: Mapping[str, Any]) -> str:
    keys = [f"{key} {_shape(value)}" for key, value in state_dict.items()]
    return ", ".join(keys) if keys else "none"

