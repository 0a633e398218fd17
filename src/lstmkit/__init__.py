"""lstmkit: LSTM and BiLSTM for TensorFlow 2 that match the built-ins.

The cell and the sequence drivers reproduce `tf.compat.v1.nn.dynamic_rnn`
and `bidirectional_dynamic_rnn` with the v1 `LSTMCell`, number for number,
in code short enough to read and change.

The public names below import TensorFlow on first use, so that the
`lstmkit` command can configure TensorFlow's logging before it loads.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CIFGLSTMCell": "lstmkit.variants",
    "DropConnectLSTMCell": "lstmkit.regularization",
    "GRUCell": "lstmkit.gru",
    "KerasLSTMCell": "lstmkit.keras_cell",
    "LSTMCell": "lstmkit.cells",
    "LayerNormLSTMCell": "lstmkit.variants",
    "LSTMStateTuple": "lstmkit.cells",
    "RecurrentCell": "lstmkit.cells",
    "TrainableInitialState": "lstmkit.stack",
    "V1GRUCell": "lstmkit.gru",
    "VariationalDropoutCell": "lstmkit.regularization",
    "ZoneoutLSTMCell": "lstmkit.regularization",
    "bidirectional_dynamic_rnn": "lstmkit.rnn",
    "dynamic_rnn": "lstmkit.rnn",
    "stacked_bidirectional_dynamic_rnn": "lstmkit.stack",
    "stacked_dynamic_rnn": "lstmkit.stack",
}

__all__ = sorted(_EXPORTS) + ["__version__", "convert", "layers"]


_SUBMODULES = ("convert", "layers")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"lstmkit.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lstmkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
