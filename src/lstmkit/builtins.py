"""The TensorFlow built-ins that lstmkit reproduces, imported in one place.

With Keras 3 installed, `tf.compat.v1.nn.rnn_cell.LSTMCell` raises unless
`TF_USE_LEGACY_KERAS` is set, and setting it turns `tf.keras` into Keras 2
for the whole process. The same v1 cell is importable from tf_keras
directly, which leaves Keras 3 in place.
"""

import warnings
from typing import Any

import tensorflow as tf


def v1_lstm_cell_class() -> type:
    """Returns the v1 `LSTMCell` class from tf_keras.

    Raises:
        ImportError: tf_keras is not installed.
    """
    try:
        from tf_keras.src.layers.rnn.legacy_cells import LSTMCell
    except ImportError as error:
        raise ImportError(
            "The v1 LSTMCell comes from tf_keras, which is not installed; "
            "install it with: pip install tf_keras==2.21.0"
        ) from error
    return LSTMCell


def v1_lstm_cell(num_units: int, **kwargs: Any) -> Any:
    """Creates a v1 `LSTMCell` (`tf.compat.v1.nn.rnn_cell.LSTMCell`).

    The cell's deprecation warning is silenced: here it is used on purpose,
    as the reference.
    """
    cell_class = v1_lstm_cell_class()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        return cell_class(num_units, **kwargs)


def v1_dynamic_rnn(*args: Any, **kwargs: Any) -> Any:
    """Calls `tf.compat.v1.nn.dynamic_rnn`."""
    return tf.compat.v1.nn.dynamic_rnn(*args, **kwargs)


def v1_bidirectional_dynamic_rnn(*args: Any, **kwargs: Any) -> Any:
    """Calls `tf.compat.v1.nn.bidirectional_dynamic_rnn`."""
    return tf.compat.v1.nn.bidirectional_dynamic_rnn(*args, **kwargs)
