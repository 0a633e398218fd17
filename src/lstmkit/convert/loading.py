"""Reads LSTM weights from each format of `lstmkit.convert.formats`."""

import dataclasses
import logging
import pathlib
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from lstmkit.convert import formats, probe
from lstmkit.convert.formats import (
    TF1_BIDIRECTIONAL_SCOPE,
    TF1_DIRECTION_SCOPES,
    TF1_SCOPE,
    ConversionError,
    LoadedModel,
    error_message,
    import_torch,
    list_names,
    tf1_index,
    tf1_prefix_from_file,
)

logger = logging.getLogger(__name__)

# Exceptions that reading a corrupt zip archive (.npz, .keras) raises.
# zipfile raises OSError for an offset past the end of the file,
# NotImplementedError for an unknown compression method, RuntimeError for a
# set encryption flag and zlib.error for corrupt deflate data. h5py raises
# OSError for a truncated weights file.
_CORRUPT_ARCHIVE_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
)


def load_model(
    model_format: str,
    path: pathlib.Path,
    prefix: str | None,
    forget_bias: float,
    cell_options: dict[str, Any] | None = None,
) -> LoadedModel:
    """Reads the LSTM weights of one file and prepares to run it.

    Args:
        model_format: "tf1", "keras" or "torch".
        path: the file, or the TF1 checkpoint prefix or folder.
        prefix: TF1 variable scope or torch key prefix, or None to detect
            it. Ignored for keras.
        forget_bias: forget bias of the v1 cells on the tf1 side.
        cell_options: `cell_clip`, `proj_clip` and `activation` of the
            cells of a TF1 checkpoint, which does not store them. None
            means no clipping and tanh.

    Raises:
        ConversionError: the file cannot be read, contains no LSTM, its
            weights do not form one, or a weight is NaN or infinite.
    """
    try:
        if model_format == "tf1":
            loaded = load_tf1(path, prefix, forget_bias, cell_options or {})
        elif model_format == "keras":
            loaded = load_keras(path, forget_bias)
        else:
            loaded = load_torch(path, prefix, forget_bias)
    except ValueError as error:
        raise ConversionError(f"Cannot convert {path}: {error}") from error
    _check_finite_weights(loaded)
    return loaded


def _check_finite_weights(loaded: LoadedModel) -> None:
    """Rejects NaN or Inf weights, which no probe comparison can check."""
    for layer, cells in enumerate(loaded.layers):
        for cell in cells:
            if cell is None:
                continue
            for variable in cell.weights:
                values = np.asarray(variable)
                bad = int(np.size(values) - np.isfinite(values).sum())
                if bad:
                    raise ConversionError(
                        f"{loaded.location}: {bad} of the {values.size} "
                        f"values of {variable.name} (layer {layer}) are NaN "
                        "or infinite. Such a model outputs NaN, so its "
                        "conversion cannot be checked; convert a model "
                        "with finite weights."
                    )


def load_tf1(
    path: pathlib.Path,
    prefix: str | None,
    forget_bias: float,
    cell_options: dict[str, Any],
) -> LoadedModel:
    """Reads a TF1 checkpoint of `dynamic_rnn` or its bidirectional form."""
    from lstmkit.convert import read_tf1_checkpoint, v1_weights_to_cell

    checkpoint = _tf1_checkpoint_path(path)
    scopes = _tf1_cell_scopes(checkpoint, prefix)
    cells = [
        v1_weights_to_cell(
            read_tf1_checkpoint(checkpoint, scope, forget_bias),
            **cell_options,
        )
        for scope in scopes
    ]
    layers = [(cells[0], cells[1] if len(cells) == 2 else None)]

    def run_checkpoint(inputs: np.ndarray) -> np.ndarray:
        return probe.run_tf1_checkpoint(checkpoint, scopes, layers[0], inputs)

    runtime = "tf.compat.v1.nn.dynamic_rnn"
    scope_text = scopes[0]
    if len(scopes) == 2:
        runtime = "tf.compat.v1.nn.bidirectional_dynamic_rnn"
        scope_text = _bidirectional_scope(scopes)
    return LoadedModel(
        "tf1", f"{checkpoint} (scope {scope_text})", layers, runtime,
        run_checkpoint,
    )


def _tf1_checkpoint_path(path: pathlib.Path) -> str:
    """Returns the checkpoint prefix of a prefix, file or folder."""
    import tensorflow as tf

    if not path.is_dir():
        prefix = tf1_prefix_from_file(path)
        if not tf1_index(prefix).exists():
            raise ConversionError(
                f"{prefix} is not a TF1 checkpoint: {tf1_index(prefix)} "
                "does not exist. Pass the checkpoint prefix (the name "
                "before .index) or its folder."
            )
        return str(prefix)

    latest = tf.train.latest_checkpoint(str(path))
    if latest is None:
        raise ConversionError(
            f"Folder {path} has no 'checkpoint' file naming a TF1 "
            "checkpoint. Pass the checkpoint prefix (the name before "
            ".index) instead."
        )
    return latest


def _tf1_cell_scopes(checkpoint: str, prefix: str | None) -> list[str]:
    """Returns the scope of one cell, or of the fw and bw cells."""
    from lstmkit.convert.tf1 import open_tf1_checkpoint

    shapes = open_tf1_checkpoint(checkpoint).get_variable_to_shape_map()
    names = dict(sorted(shapes.items()))
    candidates = [TF1_SCOPE, TF1_BIDIRECTIONAL_SCOPE]
    if prefix is not None:
        candidates = [prefix.rstrip("/")]

    for candidate in candidates:
        if f"{candidate}/kernel" in names:
            return [candidate]
        scopes = [f"{candidate}/{scope}" for scope in TF1_DIRECTION_SCOPES]
        if all(f"{scope}/kernel" in names for scope in scopes):
            return scopes
    raise ConversionError(_scope_not_found_message(checkpoint, prefix, names))


def _scope_not_found_message(
    checkpoint: str, prefix: str | None, names: dict[str, list[int]]
) -> str:
    from lstmkit.convert.tf1 import object_checkpoint_hint

    if prefix is None:
        looked_for = (
            f"{TF1_SCOPE}/kernel or {TF1_BIDIRECTIONAL_SCOPE}/"
            "{fw,bw}/lstm_cell/kernel"
        )
    else:
        looked_for = f"{prefix}/kernel or {prefix}/{{fw,bw}}/lstm_cell/kernel"
    scopes = sorted(
        name.removesuffix("/kernel")
        for name in names
        if name.endswith("/kernel") and name[:-len("kernel")] + "bias" in names
    )
    hint = object_checkpoint_hint(names)
    if scopes:
        hint = f" Scopes with a kernel and a bias: {', '.join(scopes)}."
    listing = list_names([f"{name} {shape}" for name, shape in names.items()])
    return (
        f"Checkpoint {checkpoint} has no {looked_for}, so it contains no LSTM "
        f"written by dynamic_rnn or bidirectional_dynamic_rnn.{hint} Pass "
        "the cell's variable scope with --prefix, or for a bidirectional "
        f"RNN the scope above fw and bw. Variables: {listing}."
    )


def _bidirectional_scope(scopes: list[str]) -> str:
    parent = scopes[0].removesuffix("/" + TF1_DIRECTION_SCOPES[0])
    return f"{parent}/{{fw,bw}}/lstm_cell"


def load_keras(path: pathlib.Path, forget_bias: float) -> LoadedModel:
    """Reads the first LSTM or BiLSTM layer of a `.keras` model file."""
    import keras

    # Registers lstmkit's layers so that models containing them load.
    import lstmkit.layers  # noqa: F401

    if not zipfile.is_zipfile(path):
        raise ConversionError(
            f"{path} is not a .keras model file, which is a zip archive "
            "written by model.save()."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = keras.saving.load_model(path, compile=False)
    except (TypeError, KeyError, *_CORRUPT_ARCHIVE_ERRORS) as error:
        raise ConversionError(
            f"Keras could not load {path}: {error_message(error)}"
        ) from error

    layer = _first_lstm_layer(model)
    if layer is None:
        kinds = sorted({type(item).__name__ for item in _walk_layers(model)})
        raise ConversionError(
            f"{path} contains no keras.layers.LSTM, Bidirectional LSTM or "
            f"lstmkit layer. Its layers: {', '.join(kinds) or 'none'}."
        )
    layers = [_keras_layer_cells(layer, forget_bias)]

    def run_layer(inputs: np.ndarray) -> np.ndarray:
        return probe.run_keras_layer(layer, inputs)

    return LoadedModel(
        "keras",
        f"{path} (layer {layer.name!r}, {_layer_kind(layer)})",
        layers,
        _layer_kind(layer),
        run_layer,
    )


def _walk_layers(model: Any) -> list:
    """Lists the layers of a model depth-first, nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        found += _walk_layers(layer)
    return found


def _first_lstm_layer(model: Any) -> Any | None:
    for layer in _walk_layers(model):
        if _is_lstm_layer(layer):
            return layer
    return None


def _is_lstm_layer(layer: Any) -> bool:
    import keras

    import lstmkit.layers

    lstm_types = (keras.layers.LSTM, lstmkit.layers.LSTM)
    wrapper_types = (keras.layers.Bidirectional, lstmkit.layers.Bidirectional)
    if isinstance(layer, wrapper_types):
        return isinstance(layer.forward_layer, lstm_types)
    return isinstance(layer, lstm_types)


def _layer_kind(layer: Any) -> str:
    module = "lstmkit.layers" if _is_lstmkit(layer) else "keras.layers"
    return f"{module}.{type(layer).__name__}"


def _is_lstmkit(layer: Any) -> bool:
    return type(layer).__module__.startswith("lstmkit.")


def _keras_layer_cells(layer: Any, forget_bias: float) -> tuple[Any, Any]:
    """Returns `(cell_fw, cell_bw or None)` for a Keras or lstmkit layer."""
    from lstmkit.convert import from_keras_bidirectional, from_keras_lstm

    directions = [layer]
    if hasattr(layer, "forward_layer"):
        directions = [layer.forward_layer, layer.backward_layer]
    elif layer.go_backwards:
        raise ConversionError(
            f"Layer {layer.name!r} has go_backwards=True, so it reads its "
            "inputs reversed. convert reads forward LSTM layers and "
            "Bidirectional layers only."
        )
    for direction in directions:
        if not direction.built:
            raise ConversionError(
                f"Layer {direction.name!r} is not built, so it has no "
                "weights. Save the model after calling it on inputs."
            )

    if not _is_lstmkit(layer):
        if len(directions) == 2:
            return from_keras_bidirectional(layer, forget_bias)
        return from_keras_lstm(layer, forget_bias), None

    cells = [_lstmkit_layer_cell(item, forget_bias) for item in directions]
    return cells[0], cells[1] if len(cells) == 2 else None


def _lstmkit_layer_cell(layer: Any, forget_bias: float) -> Any:
    """Copies the cell of an `lstmkit.layers.LSTM` with a new forget bias."""
    from lstmkit.convert import (
        v1_cell_options,
        v1_weights_from_cell,
        v1_weights_to_cell,
    )

    weights = with_forget_bias(v1_weights_from_cell(layer.cell), forget_bias)
    options = v1_cell_options(layer.cell)
    return v1_weights_to_cell(
        weights,
        cell_clip=options["cell_clip"],
        proj_clip=options["proj_clip"],
        activation=options["activation"],
    )


def with_forget_bias(weights: Any, forget_bias: float) -> Any:
    """Moves the difference of two forget biases into the stored bias.

    Args:
        weights: `V1Weights` with any `forget_bias`.
        forget_bias: the forget bias of the result.

    Returns:
        `V1Weights` that compute the same outputs with `forget_bias`: the
        f block of `bias [4 * num_units]` grows by the old forget bias
        minus the new one.
    """
    from lstmkit.convert import GATE_ORDER_TF1, gate_slice

    if weights.forget_bias == forget_bias:
        return weights
    bias = np.array(weights.bias)
    forget = gate_slice(GATE_ORDER_TF1, "f", weights.num_units)
    shift = weights.forget_bias - forget_bias
    bias[forget] += np.asarray(shift, bias.dtype)
    return dataclasses.replace(weights, bias=bias, forget_bias=forget_bias)


def load_torch(
    path: pathlib.Path, prefix: str | None, forget_bias: float
) -> LoadedModel:
    """Reads an `nn.LSTM` state dict from `.npz`, `.pt` or `.pth`."""
    from lstmkit.convert import from_torch_lstm_state_dict

    arrays = _read_state_dict(path)
    module_prefix, state_dict = _select_module(arrays, prefix, path)
    layers = from_torch_lstm_state_dict(state_dict, forget_bias)

    def run_state_dict(inputs: np.ndarray) -> np.ndarray:
        return probe.run_torch_lstm(state_dict, layers, inputs)

    location = str(path)
    if module_prefix:
        location += f" (keys {module_prefix}*)"
    runtime = "torch.nn.LSTM"
    if not formats.torch_installed():
        runtime = "NumPy float64 nn.LSTM equations (PyTorch not installed)"
    return LoadedModel("torch", location, layers, runtime, run_state_dict)


def _read_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
    if path.suffix != ".npz":
        return _read_torch_file(path)

    if not zipfile.is_zipfile(path):
        raise ConversionError(
            f"{path} is not an .npz archive. Save the state dict with "
            "np.savez(path, **{key: value.numpy() for key, value in "
            "state_dict.items()})."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except _CORRUPT_ARCHIVE_ERRORS as error:
        raise ConversionError(
            f"Could not read {path} as an .npz archive of arrays: "
            f"{error_message(error)}"
        ) from error


def _read_torch_file(path: pathlib.Path) -> dict[str, np.ndarray]:
    torch = import_torch(f"reading {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        # torch.load parses the bytes with its own unpickler, which raises
        # whatever its parsing step hits on corrupt input: UnpicklingError,
        # RuntimeError, EOFError, IndexError, KeyError and more (PyTorch
        # 2.13). weights_only=True keeps it from running code.
        raise ConversionError(
            f"torch.load(weights_only=True) could not read {path}: "
            f"{_torch_load_reason(error)} Save the state_dict() of the "
            "nn.LSTM (not the module) with torch.save, or as .npz."
        ) from error
    if not isinstance(loaded, Mapping):
        raise ConversionError(
            f"{path} contains a {type(loaded).__name__}, not a state dict. "
            "Save module.state_dict() of the nn.LSTM."
        )

    arrays = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(
                f"{path} maps {key!r} to a {type(value).__name__}, but a "
                "state dict maps names to tensors."
            )
        tensor = value.detach().cpu()
        if not tensor.is_floating_point():
            raise ConversionError(
                f"{path} maps {key!r} to a {tensor.dtype} tensor, but "
                "nn.LSTM weights are floating-point. Save the state_dict() "
                "of the nn.LSTM, or cast its values with .float()."
            )
        if tensor.dtype not in (torch.float32, torch.float64):
            # NumPy has no bfloat16, so reduced precision becomes float32.
            tensor = tensor.float()
        arrays[key] = tensor.numpy()
    return arrays


def _torch_load_reason(error: BaseException) -> str:
    """Returns the cause in a `torch.load` error, without its advice.

    With `weights_only=True`, PyTorch 2.13 puts the cause after
    "WeightsUnpickler error:" and surrounds it with advice to load the
    file with `weights_only=False`, which can run arbitrary code.
    """
    text = error_message(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip().splitlines()[0]
        text = text.split(". ", 1)[0]
    text = " ".join(text.split()).rstrip(".")
    return text + "."


def _select_module(
    arrays: dict[str, np.ndarray], prefix: str | None, path: pathlib.Path
) -> tuple[str, dict[str, np.ndarray]]:
    """Returns `(key prefix, the nn.LSTM's entries without the prefix)`."""
    if prefix is None:
        if "weight_ih_l0" in arrays:
            return "", arrays
        modules = sorted(
            key.removesuffix("weight_ih_l0")
            for key in arrays
            if key.endswith(".weight_ih_l0")
        )
        if len(modules) > 1:
            raise ConversionError(
                f"{path} contains {len(modules)} nn.LSTM modules, with key "
                f"prefixes {', '.join(modules)}. Pass one with --prefix."
            )
        if not modules:
            return "", arrays
        prefix = modules[0]
        logger.info("Reading the nn.LSTM with key prefix %r.", prefix)

    start = prefix.rstrip(".") + "."
    selected = {
        key[len(start):]: value
        for key, value in arrays.items()
        if key.startswith(start)
    }
    if not selected:
        raise ConversionError(
            f"No key of {path} starts with {start!r}. Keys: "
            f"{list_names(list(arrays))}."
        )
    return start, selected

