"""Writes LSTM weights in each format of `lstmkit.convert.formats`."""

import logging
import pathlib
from typing import Any

import numpy as np

from lstmkit.convert.formats import ConversionError, Layers, import_torch
from lstmkit.convert.probe import build_v1_rnn, graph_cell_scopes

logger = logging.getLogger(__name__)

# Variables of one v1 cell below its scope, and the `V1Weights` field of
# each.
_TF1_VARIABLES = {
    "kernel": "kernel",
    "bias": "bias",
    "w_f_diag": "w_f_diag",
    "w_i_diag": "w_i_diag",
    "w_o_diag": "w_o_diag",
    "projection/kernel": "projection",
}


def save_model(
    target_format: str, layers: Layers, path: pathlib.Path, overwrite: bool
) -> None:
    """Writes `layers` to `path` in `target_format`.

    Raises:
        ConversionError: the format cannot hold these layers, such as a
            stack in a keras or tf1 target or peepholes in a keras or
            torch target.
    """
    if target_format != "torch" and len(layers) > 1:
        raise ConversionError(
            f"The source is an nn.LSTM with num_layers={len(layers)}, but a "
            f"{target_format} target contains one LSTM or BiLSTM layer. Write "
            "a .npz, .pt or .pth state dict instead."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if target_format == "keras":
            save_keras(layers[0], path)
        elif target_format == "torch":
            save_torch(layers, path)
        else:
            save_tf1(layers[0], path, overwrite)
    except ValueError as error:
        raise ConversionError(f"Cannot write {path}: {error}") from error
    logger.info("Wrote %s.", path)


def save_keras(layer: tuple[Any, Any], path: pathlib.Path) -> None:
    """Writes a plain Keras `Sequential` model around one LSTM layer."""
    import keras

    from lstmkit.convert import to_keras_bidirectional, to_keras_lstm

    cell_fw, cell_bw = layer
    if cell_bw is None:
        keras_layer = to_keras_lstm(cell_fw, return_sequences=True)
    else:
        keras_layer = to_keras_bidirectional(
            cell_fw, cell_bw, return_sequences=True
        )
    inputs = keras.Input((None, cell_fw.input_depth), dtype=cell_fw.dtype)
    model = keras.Sequential([inputs, keras_layer])
    model.save(path)


def save_torch(layers: Layers, path: pathlib.Path) -> None:
    """Writes an `nn.LSTM` state dict as `.npz`, or with `torch.save`."""
    from lstmkit.convert import to_torch_lstm_state_dict

    state_dict = to_torch_lstm_state_dict(layers)
    if path.suffix == ".npz":
        with open(path, "wb") as file:
            np.savez(file, **state_dict)
        return

    torch = import_torch(f"writing {path}")
    tensors = {
        key: torch.from_numpy(np.ascontiguousarray(value))
        for key, value in state_dict.items()
    }
    torch.save(tensors, path)


def save_tf1(
    layer: tuple[Any, Any], path: pathlib.Path, overwrite: bool
) -> None:
    """Writes the variables that `dynamic_rnn` creates, with a `Saver`.

    The checkpoint gets `path.index` and `path.data-00000-of-00001` and no
    meta graph. The folder's `checkpoint` file is written when it does not
    exist yet, or with `overwrite`.
    """
    import tensorflow as tf

    from lstmkit.convert import v1_weights_from_cell

    cells = [cell for cell in layer if cell is not None]
    weights = [v1_weights_from_cell(cell) for cell in cells]
    state_file = path.parent / "checkpoint"
    write_state = overwrite or not state_file.exists()

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        build_v1_rnn(cells)
        scopes = graph_cell_scopes(len(cells))
        for variable in tf.compat.v1.global_variables():
            value = _tf1_variable_value(variable.op.name, scopes, weights)
            variable.load(value, session)
        saver = tf.compat.v1.train.Saver()
        saver.save(
            session,
            str(path),
            write_meta_graph=False,
            write_state=write_state,
        )
    if not write_state:
        logger.info(
            "Left %s unchanged because it exists. Pass --overwrite to point "
            "it at %s.",
            state_file,
            path,
        )


def _tf1_variable_value(
    name: str, scopes: list[str], weights: list[Any]
) -> np.ndarray:
    for scope, cell_weights in zip(scopes, weights):
        if name.startswith(scope + "/"):
            field = _TF1_VARIABLES[name[len(scope) + 1:]]
            return getattr(cell_weights, field)
    raise ConversionError(f"The v1 graph has an unexpected variable {name}.")
