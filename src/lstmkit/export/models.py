"""The models that `lstmkit export` exports: `.keras` files or a demo."""

import logging
import pathlib
import zipfile
from typing import Any

import keras
import tensorflow as tf

from lstmkit.layers import LSTM, Bidirectional, RNN

logger = logging.getLogger(__name__)


class ExportError(ValueError):
    """An invalid model, path or option. The message names the fix."""


def load_model(path: pathlib.Path) -> keras.Model:
    """Loads a `.keras` model that contains lstmkit recurrent layers.

    Args:
        path: a `.keras` file written by `model.save`.

    Returns:
        The model, checked with `check_model`.

    Raises:
        ExportError: the file is missing, not a `.keras` file, cannot be
            read, or the model cannot be exported.
    """
    if not path.exists():
        raise ExportError(f"model file {path} not found.")
    if path.suffix != ".keras" or not path.is_file():
        raise ExportError(
            f"model file {path} is not a .keras file. Save the model with "
            "model.save('model.keras') first."
        )
    _import_lstmkit_classes()
    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError, OSError, zipfile.BadZipFile) as error:
        raise ExportError(
            f"cannot read {path} as a Keras model: {error}"
        ) from error
    check_model(model, str(path))
    return model


def _import_lstmkit_classes() -> None:
    """Imports every public lstmkit class, which registers it with Keras.

    `lstmkit` imports its modules on first use, and `keras.saving` finds
    only the classes of modules already imported. Cells of your own must
    be imported before loading a model that uses them.
    """
    import lstmkit

    for name in lstmkit.__all__:
        getattr(lstmkit, name)


def build_demo_model(
    units: int,
    input_depth: int,
    bidirectional: bool,
    semantics: str = "keras",
    outputs: int = 3,
    seed: int = 0,
) -> keras.Model:
    """Builds a small per-step tagger on an lstmkit LSTM or BiLSTM.

    The model is `Input([None, input_depth])`, an `lstmkit.layers.LSTM`
    with `return_sequences=True` (wrapped in `Bidirectional` when
    `bidirectional`) and a `Dense(outputs)` on every step. Its weights
    are Keras' random initialization drawn with `seed`.
    """
    keras.utils.set_random_seed(seed)
    recurrent = LSTM(units, return_sequences=True, semantics=semantics)
    if bidirectional:
        recurrent = Bidirectional(recurrent)
    name = "demo_bilstm" if bidirectional else "demo_lstm"
    return keras.Sequential(
        [
            keras.Input((None, input_depth)),
            recurrent,
            keras.layers.Dense(outputs),
        ],
        name=name,
    )


def recurrent_layers(model: keras.Model) -> list[Any]:
    """Returns the lstmkit `RNN` and `Bidirectional` layers of `model`.

    Nested models are searched too. The layers inside a `Bidirectional`
    are not listed separately.
    """
    found = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, Bidirectional):
            found.append(layer)
        elif isinstance(layer, RNN) and not _inside_bidirectional(
            layer, found
        ):
            found.append(layer)
    return found


def _inside_bidirectional(layer: Any, found: list[Any]) -> bool:
    return any(
        layer is other.forward_layer or layer is other.backward_layer
        for other in found
        if isinstance(other, Bidirectional)
    )


def check_model(model: keras.Model, source: str) -> None:
    """Checks that `model` takes one float32 `[batch, time, depth]` input,
    returns one tensor and contains an lstmkit recurrent layer.

    Raises:
        ExportError: one of these conditions fails. The message names it.
    """
    if not recurrent_layers(model):
        raise ExportError(_no_layer_message(model, source))
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        raise ExportError(
            f"{source}: the model must have exactly one input "
            "[batch, time, depth]; got "
            f"{len(inputs) if inputs else 'no known'} inputs."
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 3 or shape[2] is None:
        raise ExportError(
            f"{source}: the model input must be [batch, time, depth] with a "
            f"known depth; got shape {shape}."
        )
    if inputs[0].dtype != "float32":
        raise ExportError(
            f"{source}: the model input must be float32; got "
            f"{inputs[0].dtype}. Models that start with an Embedding take "
            "token ids, which the export signature does not."
        )
    if len(tf.nest.flatten(model.outputs)) != 1:
        raise ExportError(
            f"{source}: the model must return one tensor; got "
            f"{len(tf.nest.flatten(model.outputs))} outputs."
        )


def _no_layer_message(model: keras.Model, source: str) -> str:
    names = sorted(
        {type(layer).__name__ for layer in model._flatten_layers(False)}
    )
    message = (
        f"{source} contains no lstmkit recurrent layer "
        "(lstmkit.layers.LSTM, RNN or Bidirectional); its layers are "
        f"{', '.join(names) or 'none'}."
    )
    if any(
        isinstance(layer, (keras.layers.LSTM, keras.layers.Bidirectional))
        for layer in model._flatten_layers(False)
    ):
        message += (
            " Replace keras.layers.LSTM and Bidirectional with "
            "lstmkit.layers.LSTM and Bidirectional, which take the same "
            "arguments, copy the weights with "
            "layer.set_weights(keras_layer.get_weights()) and save again."
        )
    return message


def input_depth(model: keras.Model) -> int:
    """Returns the depth of the model's `[batch, time, depth]` input."""
    return int(model.inputs[0].shape[2])
