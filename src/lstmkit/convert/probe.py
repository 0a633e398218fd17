"""Runs a source file and its converted target on one random probe batch.

After writing, `lstmkit convert` reads the target back and runs both files on
one seeded random probe batch, each with its own runtime:
`tf.compat.v1.nn` with the v1 `LSTMCell` for tf1, Keras (or lstmkit
layers) for keras, and `torch.nn.LSTM` for torch, or a float64 NumPy
implementation of its equations when PyTorch is not installed.
"""

import warnings
from typing import Any

import numpy as np

from lstmkit.convert import formats
from lstmkit.convert.formats import (
    TF1_BIDIRECTIONAL_SCOPE,
    TF1_DIRECTION_SCOPES,
    TF1_SCOPE,
    ConversionError,
    Layers,
    LoadedModel,
)

# Probe batch [PROBE_BATCH, PROBE_TIME, input_depth].
PROBE_BATCH = 3
PROBE_TIME = 7


# ------------------------------------------------------------ running


def run_tf1_checkpoint(
    checkpoint: str,
    scopes: list[str],
    layer: tuple[Any, Any],
    inputs: np.ndarray,
) -> np.ndarray:
    """Restores v1 cells from a checkpoint and runs them in a TF1 graph.

    Args:
        checkpoint: checkpoint prefix.
        scopes: the cell's scope, or the fw and bw cells' scopes, in the
            checkpoint.
        layer: lstmkit cells with the v1 cells' structure and options.
        inputs: `[batch, time, input_depth]`.

    Returns:
        `[batch, time, directions * h_depth]`, forward outputs first.
    """
    import tensorflow as tf

    cells = [cell for cell in layer if cell is not None]
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        placeholder, outputs = build_v1_rnn(cells)
        graph_scopes = graph_cell_scopes(len(cells))
        names = {}
        for variable in tf.compat.v1.global_variables():
            name = variable.op.name
            for graph_scope, scope in zip(graph_scopes, scopes):
                if name.startswith(graph_scope + "/"):
                    names[scope + name[len(graph_scope):]] = variable
        tf.compat.v1.train.Saver(names).restore(session, checkpoint)
        return session.run(outputs, {placeholder: inputs})


def build_v1_rnn(cells: list[Any]) -> tuple[Any, Any]:
    """Builds `dynamic_rnn` (one cell) or its bidirectional form (two).

    Returns:
        `(inputs placeholder, outputs)` with the outputs of both
        directions concatenated.
    """
    import tensorflow as tf

    dtype = tf.as_dtype(cells[0].dtype)
    inputs = tf.compat.v1.placeholder(
        dtype, [None, None, cells[0].input_depth]
    )
    v1_cells = [_new_v1_cell(cell) for cell in cells]
    if len(v1_cells) == 1:
        outputs, _ = tf.compat.v1.nn.dynamic_rnn(
            v1_cells[0], inputs, dtype=dtype
        )
        return inputs, outputs
    outputs, _ = tf.compat.v1.nn.bidirectional_dynamic_rnn(
        v1_cells[0], v1_cells[1], inputs, dtype=dtype
    )
    return inputs, tf.concat(outputs, axis=-1)


def _new_v1_cell(cell: Any) -> Any:
    """Creates the v1 `LSTMCell` with the options of an lstmkit cell."""
    from tf_keras.src.layers.rnn.legacy_cells import LSTMCell as V1LSTMCell

    from lstmkit.convert import v1_cell_options

    options = v1_cell_options(cell)
    with warnings.catch_warnings():
        # The v1 cell warns on every construction that it is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        return V1LSTMCell(
            options["num_units"],
            use_peepholes=options["use_peepholes"],
            cell_clip=options["cell_clip"],
            num_proj=options["num_proj"],
            proj_clip=options["proj_clip"],
            forget_bias=options["forget_bias"],
            activation=options["activation"],
        )


def graph_cell_scopes(cell_count: int) -> list[str]:
    """Returns the scopes that `build_v1_rnn` gives its one or two cells."""
    if cell_count == 1:
        return [TF1_SCOPE]
    return [
        f"{TF1_BIDIRECTIONAL_SCOPE}/{scope}" for scope in TF1_DIRECTION_SCOPES
    ]


def run_keras_layer(layer: Any, inputs: np.ndarray) -> np.ndarray:
    """Runs each direction of a Keras or lstmkit layer on `inputs`.

    Each direction runs as a copy of its layer made with
    `return_sequences=True`, no returned state and no carried state, so
    any saved layer yields its full output sequence.

    Returns:
        `[batch, time, directions * units]`, forward outputs first.
    """
    directions = [layer]
    if hasattr(layer, "forward_layer"):
        directions = [layer.forward_layer, layer.backward_layer]

    outputs = []
    for direction in directions:
        config = direction.get_config()
        config.update(
            return_sequences=True, return_state=False, stateful=False
        )
        copy = type(direction).from_config(config)
        copy.build((None, None, inputs.shape[-1]))
        copy.set_weights(direction.get_weights())
        output = np.asarray(copy(inputs))
        if direction.go_backwards:
            # go_backwards returns outputs in reading order, last step
            # first. Bidirectional flips them back the same way.
            output = output[:, ::-1]
        outputs.append(output)
    return np.concatenate(outputs, axis=-1)


def run_torch_lstm(
    state_dict: dict[str, np.ndarray], layers: Layers, inputs: np.ndarray
) -> np.ndarray:
    """Runs an `nn.LSTM(batch_first=True)` state dict on `inputs`.

    Uses `torch.nn.LSTM` when PyTorch is installed, else
    `numpy_torch_lstm`.

    Args:
        state_dict: `nn.LSTM` entries as NumPy arrays.
        layers: the cells read from `state_dict`, which give its sizes.
        inputs: `[batch, time, input_size]`.

    Returns:
        The top layer's outputs `[batch, time, directions * h_depth]`.
    """
    if not formats.torch_installed():
        return numpy_torch_lstm(state_dict, len(layers), inputs)

    import torch

    cell = layers[0][0]
    module = torch.nn.LSTM(
        cell.input_depth,
        cell.num_units,
        num_layers=len(layers),
        bias=any(key.startswith("bias_") for key in state_dict),
        batch_first=True,
        bidirectional=layers[0][1] is not None,
        proj_size=cell.num_proj or 0,
        dtype=getattr(torch, np.dtype(cell.dtype).name),
    )
    module.load_state_dict(
        {key: torch.from_numpy(value) for key, value in state_dict.items()}
    )
    with torch.no_grad(), warnings.catch_warnings():
        # PyTorch notes that oneDNN lacks proj_size and falls back to its
        # default implementation, which is the reference anyway.
        warnings.filterwarnings(
            "ignore", message="LSTM with projections", category=UserWarning
        )
        outputs, _ = module(torch.from_numpy(inputs))
    return outputs.numpy()


def numpy_torch_lstm(
    state_dict: dict[str, np.ndarray], num_layers: int, inputs: np.ndarray
) -> np.ndarray:
    """Computes `nn.LSTM(batch_first=True)` outputs in float64 with NumPy.

    Follows the equations of the `torch.nn.LSTM` documentation: per layer
    and direction, with blocks i, f, g, o of
    `weight_ih` (and of `weight_hh` and both biases),

        gates = x_t W_ih^T + b_ih + h W_hh^T + b_hh
        c = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h = sigmoid(o) * tanh(c), then h = h W_hr^T when proj_size > 0.

    The "_reverse" direction reads the sequence from its last step, and
    layer k + 1 reads the concatenated outputs of layer k.

    Returns:
        `[batch, time, directions * h_depth]` in float64.
    """
    weights = {
        key: np.asarray(value, np.float64) for key, value in state_dict.items()
    }
    suffixes = [""]
    if any(key.endswith("_reverse") for key in weights):
        suffixes.append("_reverse")

    layer_inputs = np.asarray(inputs, np.float64)
    for layer in range(num_layers):
        outputs = []
        for suffix in suffixes:
            reverse = suffix == "_reverse"
            sequence = layer_inputs[:, ::-1] if reverse else layer_inputs
            output = _numpy_torch_direction(
                sequence, weights, f"_l{layer}{suffix}"
            )
            outputs.append(output[:, ::-1] if reverse else output)
        layer_inputs = np.concatenate(outputs, axis=-1)
    return layer_inputs


def _numpy_torch_direction(
    inputs: np.ndarray, weights: dict[str, np.ndarray], suffix: str
) -> np.ndarray:
    weight_ih = weights["weight_ih" + suffix]
    weight_hh = weights["weight_hh" + suffix]
    weight_hr = weights.get("weight_hr" + suffix)
    units = weight_ih.shape[0] // 4
    bias = np.zeros(4 * units)
    if "bias_ih" + suffix in weights:
        bias = weights["bias_ih" + suffix] + weights["bias_hh" + suffix]

    batch, time, _ = inputs.shape
    h = np.zeros([batch, weight_hh.shape[1]])
    c = np.zeros([batch, units])
    outputs = []
    for step in range(time):
        gates = inputs[:, step] @ weight_ih.T + h @ weight_hh.T + bias
        i, f, g, o = np.split(gates, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        if weight_hr is not None:
            h = h @ weight_hr.T
        outputs.append(h)
    return np.stack(outputs, axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form does not overflow for large negative x.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# ------------------------------------------------------------ comparing


def probe_batch(input_depth: int, dtype: Any, seed: int) -> np.ndarray:
    """Returns standard normal inputs `[PROBE_BATCH, PROBE_TIME, depth]`."""
    rng = np.random.default_rng(seed)
    shape = [PROBE_BATCH, PROBE_TIME, input_depth]
    return rng.standard_normal(shape).astype(dtype)


def compare_outputs(
    source: LoadedModel, target: LoadedModel, seed: int
) -> dict[str, Any]:
    """Runs source and target on one probe batch and measures the gap.

    Returns:
        "probe" (the inputs), "source" and "target" (the outputs
        `[batch, time, directions * h_depth]`), and the largest absolute
        output difference in "all" and, for a BiLSTM, in "forward" and
        "backward".

    Raises:
        ConversionError: the output shapes differ.
    """
    cell = source.first_cell
    probe = probe_batch(cell.input_depth, np.dtype(cell.dtype), seed)
    source_outputs = np.asarray(source.run(probe), np.float64)
    target_outputs = np.asarray(target.run(probe), np.float64)
    if source_outputs.shape != target_outputs.shape:
        raise ConversionError(
            f"The source outputs have shape {list(source_outputs.shape)} "
            f"but the target outputs {list(target_outputs.shape)}."
        )

    gap = np.abs(source_outputs - target_outputs)
    differences = {
        "probe": probe,
        "source": source_outputs,
        "target": target_outputs,
        "all": float(gap.max()),
    }
    if source.bidirectional:
        forward, backward = np.split(gap, 2, axis=-1)
        differences["forward"] = float(forward.max())
        differences["backward"] = float(backward.max())
    return differences
