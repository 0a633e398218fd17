"""`lstmkit convert`: move LSTM weights between formats and check them.

Formats, guessed from the path unless `--from` / `--to` names them:

* tf1: a TF1 checkpoint written by `tf.compat.v1.nn.dynamic_rnn` or
  `bidirectional_dynamic_rnn` with the v1 `LSTMCell`. A source is a
  checkpoint prefix (the name before `.index`) or a folder with a
  `checkpoint` file. A target is a checkpoint prefix, guessed from a
  `.ckpt` name or named with `--to tf1`.
* keras: a `.keras` model file. A source contributes its first
  `keras.layers.LSTM`, `keras.layers.Bidirectional` of LSTMs or lstmkit
  layer. A target contains `keras.Sequential([keras.Input((None, depth)),
  LSTM(units, return_sequences=True)])`, or `Bidirectional(LSTM(...))`,
  which loads without lstmkit.
* torch: a PyTorch `nn.LSTM` state dict, as `.npz` (NumPy arrays under
  the PyTorch key names such as `weight_ih_l0`) or as `.pt` / `.pth`
  (`torch.save`, which needs PyTorch).

A TF1 checkpoint stores neither `forget_bias` nor clipping or the
activation, because they are constructor arguments of the v1 cell. The
command reads a TF1 source as a cell with `--forget-bias`, no clipping and
tanh, and prints the constructor arguments of a TF1 target.

After writing, the command reads the target back and runs both files on
one seeded random probe batch, each with its own runtime:
`tf.compat.v1.nn` with the v1 `LSTMCell` for tf1, Keras (or lstmkit
layers) for keras, and `torch.nn.LSTM` for torch, or a float64 NumPy
implementation of its equations when PyTorch is not installed.
"""

import argparse
import dataclasses
import importlib.util
import logging
import math
import pathlib
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lstmkit.cli.arguments import seed_int

logger = logging.getLogger(__name__)

FORMATS = ("tf1", "keras", "torch")
TORCH_SUFFIXES = (".npz", ".pt", ".pth")
TORCH_PIN = "torch==2.13.0"
DEFAULT_FORGET_BIAS = 1.0
# Probe batch [PROBE_BATCH, PROBE_TIME, input_depth].
PROBE_BATCH = 3
PROBE_TIME = 7
# Largest absolute output difference accepted between source and target.
# The small float32 models of tests/test_cli_convert.py differ by about 1e-7.
MAX_DIFFERENCE = 1e-4
# Max number of names listed in an error message. The rest are counted.
MAX_LISTED_NAMES = 20

# Scopes that dynamic_rnn and bidirectional_dynamic_rnn give the v1 cell.
TF1_SCOPE = "rnn/lstm_cell"
TF1_BIDIRECTIONAL_SCOPE = "bidirectional_rnn"
TF1_DIRECTION_SCOPES = ("fw/lstm_cell", "bw/lstm_cell")
_TF1_DATA_SUFFIX = re.compile(r"\.data-\d+-of-\d+$")
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

# One entry per layer, bottom first: (forward cell, backward cell or None).
Layers = list[tuple[Any, Any]]


class ConversionError(Exception):
    """Invalid input for a conversion. The message names the problem."""


@dataclasses.dataclass
class LoadedModel:
    """LSTM weights read from one file, with a way to run that file.

    Attributes:
        format: "tf1", "keras" or "torch".
        location: the path, plus the scope, key prefix or layer used.
        layers: lstmkit `LSTMCell`s per layer, all with the forget bias
            of `--forget-bias`.
        runtime: name of the framework function that `run` calls.
        run: maps inputs `[batch, time, input_depth]` to the top layer's
            outputs `[batch, time, directions * h_depth]`, forward
            direction first.
    """

    format: str
    location: str
    layers: Layers
    runtime: str
    run: Callable[[np.ndarray], np.ndarray]

    @property
    def bidirectional(self) -> bool:
        """Whether the layers have a backward cell."""
        return self.layers[0][1] is not None

    @property
    def first_cell(self) -> Any:
        """Forward cell of the bottom layer."""
        return self.layers[0][0]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `convert` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="convert LSTM weights between TF1, Keras and PyTorch files",
        description=(
            "Convert the weights of one LSTM or BiLSTM from SOURCE to "
            "TARGET, then run both files on the same random probe batch "
            "and print the largest absolute output difference. Formats: "
            "tf1 (a TF1 checkpoint of tf.compat.v1.nn.dynamic_rnn or "
            "bidirectional_dynamic_rnn with the v1 LSTMCell), keras (a "
            ".keras model file) and torch (an nn.LSTM state dict as .npz, "
            ".pt or .pth). An nn.LSTM with num_layers > 1 converts only to "
            "another state dict. The target is read back and run with its "
            "own framework. Exits with 0 when the difference is at most "
            f"{MAX_DIFFERENCE:g}, 1 when it is larger, and 2 on invalid "
            "input."
        ),
    )
    parser.add_argument(
        "source", type=pathlib.Path, metavar="SOURCE",
        help="TF1 checkpoint prefix or folder, .keras file, or .npz, .pt "
        "or .pth state dict",
    )
    parser.add_argument(
        "target", type=pathlib.Path, metavar="TARGET",
        help=".keras file, .npz, .pt or .pth state dict, or a TF1 "
        "checkpoint prefix (a .ckpt name, or any name with --to tf1)",
    )
    parser.add_argument(
        "--from", dest="source_format", choices=FORMATS, default=None,
        help="format of SOURCE (default: guessed from the path)",
    )
    parser.add_argument(
        "--to", dest="target_format", choices=FORMATS, default=None,
        help="format of TARGET (default: guessed from the extension)",
    )
    parser.add_argument(
        "--prefix", default=None,
        help="tf1 source: variable scope of the cell, such as "
        f"{TF1_SCOPE}, or of a bidirectional RNN, such as "
        f"{TF1_BIDIRECTIONAL_SCOPE} (default: whichever of the two the "
        "checkpoint has). torch source: key prefix of the nn.LSTM module "
        "in a larger state dict, such as encoder.lstm (default: the only "
        "module with a weight_ih_l0 key)",
    )
    parser.add_argument(
        "--forget-bias", type=_finite_float, default=DEFAULT_FORGET_BIAS,
        help="forget_bias of the v1 LSTMCell on the tf1 side (default: "
        f"{DEFAULT_FORGET_BIAS}, the v1 default). A TF1 checkpoint does not "
        "store it, so pass the value a tf1 source was built with, and build "
        "the v1 cell of a tf1 target with this value. Keras and PyTorch "
        "keep the whole bias in their weights, so conversions without a "
        "tf1 side give the same outputs with any value",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace TARGET if it exists",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0,
        help="seed of the random probe batch (default: 0)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Converts SOURCE to TARGET and compares their outputs.

    Returns:
        0 when the outputs match within `MAX_DIFFERENCE`, 1 when they do
        not, and 2 on invalid input.
    """
    import tensorflow as tf

    try:
        source_format = guess_source_format(args.source, args.source_format)
        target_format = guess_target_format(args.target, args.target_format)
        _check_arguments(args, source_format)
        _check_target_path(args, target_format)

        source = load_model(
            source_format, args.source, args.prefix, args.forget_bias
        )
        save_model(target_format, source.layers, args.target, args.overwrite)
        target = load_model(
            target_format,
            args.target,
            None,
            args.forget_bias,
            _options_not_stored(source.first_cell),
        )
        differences = compare_outputs(source, target, args.seed)
    except (ConversionError, ValueError, OSError, tf.errors.OpError) as error:
        print(f"lstmkit convert: error: {_message(error)}", file=sys.stderr)
        return 2

    print_report(source, target, differences, args)
    worst = differences["all"]
    if not worst <= MAX_DIFFERENCE:
        print(
            f"lstmkit convert: error: the outputs of {args.target} differ "
            f"from those of {args.source} by up to {worst:.3g}, more than "
            f"{MAX_DIFFERENCE:g}. The target was written but does not "
            "compute what the source does. Do not use it.",
            file=sys.stderr,
        )
        return 1
    return 0


# ------------------------------------------------------------ formats


def guess_source_format(path: pathlib.Path, requested: str | None) -> str:
    """Returns the format of SOURCE, checking that it exists.

    Raises:
        ConversionError: the path does not exist or has no known format.
    """
    tf1_prefix = _tf1_prefix_from_file(path)
    exists = path.exists() or _tf1_index(tf1_prefix).exists()
    if not exists:
        raise ConversionError(
            f"SOURCE {path} not found. Pass a TF1 checkpoint prefix or "
            "folder, a .keras file, or a .npz, .pt or .pth state dict."
        )
    if requested is not None:
        return requested

    if path.is_dir() or _tf1_index(tf1_prefix).exists():
        return "tf1"
    if path.suffix == ".keras":
        return "keras"
    if path.suffix in TORCH_SUFFIXES:
        return "torch"
    raise ConversionError(
        f"Cannot tell the format of SOURCE {path} from its name. Use a "
        ".keras, .npz, .pt or .pth file or a TF1 checkpoint prefix, or "
        "pass --from tf1, keras or torch."
    )


def guess_target_format(path: pathlib.Path, requested: str | None) -> str:
    """Returns the format of TARGET and checks that its name fits it.

    Raises:
        ConversionError: the extension does not match the format, or no
            format can be guessed.
    """
    if requested is None:
        guesses = {".keras": "keras", ".ckpt": "tf1"}
        guesses.update({suffix: "torch" for suffix in TORCH_SUFFIXES})
        requested = guesses.get(path.suffix)
    if requested is None:
        raise ConversionError(
            f"Cannot tell the format of TARGET {path} from its extension. "
            "Use a .keras, .npz, .pt or .pth name, or pass --to tf1 with a "
            "checkpoint prefix such as out/model.ckpt."
        )

    if requested == "keras" and path.suffix != ".keras":
        raise ConversionError(
            f"TARGET {path} must end in .keras, the extension of Keras "
            "model files."
        )
    if requested == "torch" and path.suffix not in TORCH_SUFFIXES:
        raise ConversionError(
            f"TARGET {path} must end in .npz (NumPy arrays) or .pt / .pth "
            "(torch.save) for a PyTorch state dict."
        )
    if requested == "torch" and path.suffix != ".npz":
        _import_torch(f"writing {path}")
    if requested == "tf1" and path.is_dir():
        raise ConversionError(
            f"TARGET {path} is a folder, but a TF1 target is a checkpoint "
            f"prefix. Pass a name inside it, such as {path / 'model.ckpt'}."
        )
    return requested


def _check_arguments(args: argparse.Namespace, source_format: str) -> None:
    if args.prefix is not None and source_format == "keras":
        raise ConversionError(
            "--prefix selects a TF1 variable scope or a PyTorch key prefix, "
            "but SOURCE is a .keras file, whose first LSTM layer is used."
        )


def _check_target_path(args: argparse.Namespace, target_format: str) -> None:
    """Rejects a TARGET that exists (without `--overwrite`) or is SOURCE."""
    if args.source.resolve() == args.target.resolve():
        raise ConversionError(
            f"SOURCE and TARGET are the same path, {args.source}. Choose "
            "another TARGET."
        )
    existing = [
        str(path) for path in _target_files(args.target, target_format)
        if path.exists()
    ]
    if existing and not args.overwrite:
        raise ConversionError(
            f"TARGET {args.target} already exists ({', '.join(existing)}). "
            "Choose another TARGET or pass --overwrite to replace it."
        )
    for parent in args.target.parents:
        if parent.exists() and not parent.is_dir():
            raise ConversionError(
                f"TARGET {args.target} is inside {parent}, which is a file."
            )


def _target_files(path: pathlib.Path, target_format: str) -> list:
    if target_format != "tf1":
        return [path]
    data_files = path.parent.glob(path.name + ".data-*")
    return [_tf1_index(path), *sorted(data_files)]


# ------------------------------------------------------------ reading


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
        ConversionError: the file cannot be read, contains no LSTM, or its
            weights do not form one.
    """
    try:
        if model_format == "tf1":
            return load_tf1(path, prefix, forget_bias, cell_options or {})
        if model_format == "keras":
            return load_keras(path, forget_bias)
        return load_torch(path, prefix, forget_bias)
    except ValueError as error:
        raise ConversionError(f"Cannot convert {path}: {error}") from error


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
        return run_tf1_checkpoint(checkpoint, scopes, layers[0], inputs)

    runtime = "tf.compat.v1.nn.dynamic_rnn"
    scope_text = scopes[0]
    if len(scopes) == 2:
        runtime = "tf.compat.v1.nn.bidirectional_dynamic_rnn"
        scope_text = _bidirectional_scope(scopes)
    return LoadedModel(
        "tf1", f"{checkpoint} (scope {scope_text})", layers, runtime,
        run_checkpoint,
    )


def _tf1_prefix_from_file(path: pathlib.Path) -> pathlib.Path:
    """Maps `model.ckpt.index` or `model.ckpt.data-*` to `model.ckpt`."""
    name = _TF1_DATA_SUFFIX.sub("", path.name).removesuffix(".index")
    return path.with_name(name) if name else path


def _tf1_index(prefix: pathlib.Path) -> pathlib.Path:
    return prefix.with_name(prefix.name + ".index")


def _tf1_checkpoint_path(path: pathlib.Path) -> str:
    """Returns the checkpoint prefix of a prefix, file or folder."""
    import tensorflow as tf

    if not path.is_dir():
        prefix = _tf1_prefix_from_file(path)
        if not _tf1_index(prefix).exists():
            raise ConversionError(
                f"{prefix} is not a TF1 checkpoint: {_tf1_index(prefix)} "
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
    import tensorflow as tf

    names = dict(tf.train.list_variables(checkpoint))
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
    hint = ""
    if scopes:
        hint = f" Scopes with a kernel and a bias: {', '.join(scopes)}."
    listing = _list_names([f"{name} {shape}" for name, shape in names.items()])
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
    except (ValueError, TypeError, KeyError, zipfile.BadZipFile) as error:
        raise ConversionError(
            f"Keras could not load {path}: {_message(error)}"
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
        return run_keras_layer(layer, inputs)

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
        return run_torch_lstm(state_dict, layers, inputs)

    location = str(path)
    if module_prefix:
        location += f" (keys {module_prefix}*)"
    runtime = "torch.nn.LSTM"
    if not _torch_installed():
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
    except (ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ConversionError(
            f"Could not read {path} as an .npz archive of arrays: "
            f"{_message(error)}"
        ) from error


def _read_torch_file(path: pathlib.Path) -> dict[str, np.ndarray]:
    torch = _import_torch(f"reading {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
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
    text = _message(error)
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
            f"{_list_names(list(arrays))}."
        )
    return start, selected


# ------------------------------------------------------------ writing


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

    torch = _import_torch(f"writing {path}")
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
        _build_v1_rnn(cells)
        scopes = _graph_cell_scopes(len(cells))
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


def _graph_cell_scopes(cell_count: int) -> list[str]:
    if cell_count == 1:
        return [TF1_SCOPE]
    return [
        f"{TF1_BIDIRECTIONAL_SCOPE}/{scope}" for scope in TF1_DIRECTION_SCOPES
    ]


def _tf1_variable_value(
    name: str, scopes: list[str], weights: list[Any]
) -> np.ndarray:
    for scope, cell_weights in zip(scopes, weights):
        if name.startswith(scope + "/"):
            field = _TF1_VARIABLES[name[len(scope) + 1:]]
            return getattr(cell_weights, field)
    raise ConversionError(f"The v1 graph has an unexpected variable {name}.")


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
        placeholder, outputs = _build_v1_rnn(cells)
        graph_scopes = _graph_cell_scopes(len(cells))
        names = {}
        for variable in tf.compat.v1.global_variables():
            name = variable.op.name
            for graph_scope, scope in zip(graph_scopes, scopes):
                if name.startswith(graph_scope + "/"):
                    names[scope + name[len(graph_scope):]] = variable
        tf.compat.v1.train.Saver(names).restore(session, checkpoint)
        return session.run(outputs, {placeholder: inputs})


def _build_v1_rnn(cells: list[Any]) -> tuple[Any, Any]:
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
    if not _torch_installed():
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


def print_report(
    source: LoadedModel,
    target: LoadedModel,
    differences: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    """Prints the formats, shapes and output differences as a table."""
    probe = differences["probe"]
    print(f"source  {source.format:<6} {source.location}")
    print(f"target  {target.format:<6} {target.location}")
    print(f"model   {_describe_layers(source.layers)}")
    print(f"probe   {list(probe.shape)} {probe.dtype}, seed {args.seed}")
    print()

    rows = [
        ("side", "format", "output shape", "runtime"),
        _runtime_row("source", source, differences["source"]),
        _runtime_row("target", target, differences["target"]),
    ]
    _print_table(rows)
    print()

    rows = [("direction", "max abs diff")]
    for direction in ("forward", "backward"):
        if direction in differences:
            rows.append((direction, f"{differences[direction]:.3g}"))
    rows.append(("all", f"{differences['all']:.3g}"))
    _print_table(rows)

    if target.format == "tf1":
        print()
        print(
            f"To restore {args.target}, run {target.runtime} with the v1 "
            f"cell {_v1_cell_call(target.first_cell)}."
        )


def _runtime_row(
    side: str, model: LoadedModel, outputs: np.ndarray
) -> tuple[str, ...]:
    return (side, model.format, str(list(outputs.shape)), model.runtime)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [value.ljust(width) for value, width in zip(row, widths)]
        print("  ".join(cells).rstrip())


def _describe_layers(layers: Layers) -> str:
    cell = layers[0][0]
    kind = "BiLSTM" if layers[0][1] is not None else "LSTM"
    text = (
        f"{kind}, num_layers {len(layers)}, input_depth {cell.input_depth}, "
        f"num_units {cell.num_units}"
    )
    if cell.num_proj is not None:
        text += f", num_proj {cell.num_proj}"
    if cell.use_peepholes:
        text += ", peepholes"
    return text


def _v1_cell_call(cell: Any) -> str:
    """Formats the v1 `LSTMCell` call that matches a TF1 target."""
    from lstmkit.convert import v1_cell_options

    options = v1_cell_options(cell)
    arguments = [str(options["num_units"])]
    for name in ("use_peepholes", "cell_clip", "num_proj", "proj_clip"):
        if options[name] not in (None, False):
            arguments.append(f"{name}={options[name]!r}")
    arguments.append(f"forget_bias={options['forget_bias']!r}")
    if options["activation"] != "tanh":
        arguments.append(f"activation={options['activation']!r}")
    return f"LSTMCell({', '.join(arguments)})"


# ------------------------------------------------------------ helpers


def _options_not_stored(cell: Any) -> dict[str, Any]:
    """Returns the options of a cell that a TF1 checkpoint does not store."""
    from lstmkit.convert import v1_cell_options

    options = v1_cell_options(cell)
    return {
        name: options[name]
        for name in ("cell_clip", "proj_clip", "activation")
    }


def _torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def _import_torch(purpose: str) -> Any:
    """Imports PyTorch, or explains how to do without it.

    Raises:
        ConversionError: PyTorch is not installed.
    """
    if not _torch_installed():
        raise ConversionError(
            f"{purpose} needs PyTorch, which is not installed. Install it "
            f"with pip install {TORCH_PIN}, or use an .npz state dict, "
            "which needs only NumPy: np.savez(path, **{key: value.numpy() "
            "for key, value in state_dict.items()})."
        )
    import torch

    return torch


def _finite_float(text: str) -> float:
    """Parses a command-line number that must be finite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"expected a finite number, got {text}"
        )
    return value


def _list_names(names: list[str]) -> str:
    listed = names[:MAX_LISTED_NAMES]
    text = ", ".join(listed) if listed else "none"
    if len(names) > len(listed):
        text += f" and {len(names) - len(listed)} more"
    return text


def _message(error: BaseException) -> str:
    """Returns an error's text without TensorFlow's trailing context."""
    message = getattr(error, "message", None) or str(error)
    return message.strip() or type(error).__name__
