"""LSTM weight file formats of `lstmkit convert`, and their detection.

Formats, guessed from the path unless the caller names them (`--from` /
`--to` on the command line):

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

`lstmkit.convert.loading` reads each format, `lstmkit.convert.saving`
writes it, and `lstmkit.convert.probe` runs it.
"""

import dataclasses
import importlib.util
import pathlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np

TORCH_SUFFIXES = (".npz", ".pt", ".pth")
TORCH_PIN = "torch==2.13.0"
# Max number of names listed in an error message. The rest are counted.
MAX_LISTED_NAMES = 20

# Scopes that dynamic_rnn and bidirectional_dynamic_rnn give the v1 cell.
TF1_SCOPE = "rnn/lstm_cell"
TF1_BIDIRECTIONAL_SCOPE = "bidirectional_rnn"
TF1_DIRECTION_SCOPES = ("fw/lstm_cell", "bw/lstm_cell")
_TF1_DATA_SUFFIX = re.compile(r"\.data-\d+-of-\d+$")

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


# ------------------------------------------------------------ detection


def guess_source_format(path: pathlib.Path, requested: str | None) -> str:
    """Returns the format of SOURCE, checking that it exists.

    Raises:
        ConversionError: the path does not exist or has no known format.
    """
    tf1_prefix = tf1_prefix_from_file(path)
    exists = path.exists() or tf1_index(tf1_prefix).exists()
    if not exists:
        raise ConversionError(
            f"SOURCE {path} not found. Pass a TF1 checkpoint prefix or "
            "folder, a .keras file, or a .npz, .pt or .pth state dict."
        )
    if requested is not None:
        return requested

    if path.is_dir() or tf1_index(tf1_prefix).exists():
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
        import_torch(f"writing {path}")
    if requested == "tf1" and path.is_dir():
        raise ConversionError(
            f"TARGET {path} is a folder, but a TF1 target is a checkpoint "
            f"prefix. Pass a name inside it, such as {path / 'model.ckpt'}."
        )
    return requested


def target_files(path: pathlib.Path, target_format: str) -> list:
    """Lists the files that make up a target at `path`.

    A TF1 target is a checkpoint prefix, whose files are its `.index` file
    and its `.data-*` shards.
    """
    if target_format != "tf1":
        return [path]
    data_files = path.parent.glob(path.name + ".data-*")
    return [tf1_index(path), *sorted(data_files)]


def tf1_prefix_from_file(path: pathlib.Path) -> pathlib.Path:
    """Maps `model.ckpt.index` or `model.ckpt.data-*` to `model.ckpt`."""
    name = _TF1_DATA_SUFFIX.sub("", path.name).removesuffix(".index")
    return path.with_name(name) if name else path


def tf1_index(prefix: pathlib.Path) -> pathlib.Path:
    """Returns the `.index` file of a TF1 checkpoint prefix."""
    return prefix.with_name(prefix.name + ".index")


# ------------------------------------------------------------ helpers


def options_not_stored(cell: Any) -> dict[str, Any]:
    """Returns the options of a cell that a TF1 checkpoint does not store."""
    from lstmkit.convert import v1_cell_options

    options = v1_cell_options(cell)
    return {
        name: options[name]
        for name in ("cell_clip", "proj_clip", "activation")
    }


def torch_installed() -> bool:
    """Returns whether PyTorch can be imported, without importing it.

    `loading` and `probe` call it as `formats.torch_installed()`, so that a
    test that replaces this attribute changes every check.
    """
    return importlib.util.find_spec("torch") is not None


def import_torch(purpose: str) -> Any:
    """Imports PyTorch, or explains how to do without it.

    Raises:
        ConversionError: PyTorch is not installed.
    """
    if not torch_installed():
        raise ConversionError(
            f"{purpose} needs PyTorch, which is not installed. Install it "
            f"with pip install {TORCH_PIN}, or use an .npz state dict, "
            "which needs only NumPy: np.savez(path, **{key: value.numpy() "
            "for key, value in state_dict.items()})."
        )
    import torch

    return torch


def list_names(names: list[str]) -> str:
    """Joins up to `MAX_LISTED_NAMES` names for an error message."""
    listed = names[:MAX_LISTED_NAMES]
    text = ", ".join(listed) if listed else "none"
    if len(names) > len(listed):
        text += f" and {len(names) - len(listed)} more"
    return text


def error_message(error: BaseException) -> str:
    """Returns an error's text without TensorFlow's trailing context."""
    message = getattr(error, "message", None) or str(error)
    return message.strip() or type(error).__name__
