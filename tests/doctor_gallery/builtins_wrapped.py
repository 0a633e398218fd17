"""Correct implementations: lstmkit's own code and the built-ins, wrapped.

The doctor must report no fault for any of them. NaN padding turns the
weight gradients of the v1 built-in and of Keras' masked LSTM into NaN,
which the doctor reports as a warning.
"""

import keras
import tensorflow as tf

import lstmkit
from lstmkit import builtins, doctor


class V1Module(tf.Module):
    """`tf.compat.v1.nn.dynamic_rnn` or its bidirectional form, v1 cells."""

    def __init__(self, depth: int, units: int, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        names = ["fw", "bw"] if bidirectional else ["rnn"]
        self.cells = []
        for name in names:
            cell = builtins.v1_lstm_cell(units, name=f"{name}_lstm_cell")
            cell.build(tf.TensorShape([None, depth]))
            self.cells.append(cell)

    def __call__(self, inputs, lengths):
        if self.bidirectional:
            outputs, states = builtins.v1_bidirectional_dynamic_rnn(
                *self.cells, inputs, sequence_length=lengths,
                dtype=inputs.dtype,
            )
            return tf.concat(outputs, -1), states
        return builtins.v1_dynamic_rnn(
            self.cells[0], inputs, sequence_length=lengths, dtype=inputs.dtype
        )


class LstmkitModule(tf.Module):
    """`lstmkit.dynamic_rnn` (or the bidirectional one) over lstmkit cells.

    Keras 3 variables are invisible to `tf.Module`, so the adapter finds
    the cells' weights through the `cell_fw` and `cell_bw` attributes.
    """

    def __init__(self, depth: int, units: int, bidirectional: bool,
                 cell_class=None):
        super().__init__()
        cell_class = cell_class or lstmkit.LSTMCell
        self.bidirectional = bidirectional
        self.cell_fw = cell_class(units)
        self.cell_fw.build((None, depth))
        if bidirectional:
            self.cell_bw = cell_class(units)
            self.cell_bw.build((None, depth))

    def __call__(self, inputs, lengths):
        if self.bidirectional:
            outputs, states = lstmkit.bidirectional_dynamic_rnn(
                self.cell_fw, self.cell_bw, inputs, sequence_length=lengths
            )
            return tf.concat(outputs, -1), states
        return lstmkit.dynamic_rnn(
            self.cell_fw, inputs, sequence_length=lengths
        )


def v1_builtin(bidirectional: bool = False) -> doctor.ModuleAdapter:
    return doctor.ModuleAdapter(
        lambda depth, units: V1Module(depth, units, bidirectional),
        bidirectional=bidirectional, convention="v1",
        name="v1_bidirectional_dynamic_rnn" if bidirectional
        else "v1_dynamic_rnn",
    )


def lstmkit_module(bidirectional: bool = False) -> doctor.ModuleAdapter:
    return doctor.ModuleAdapter(
        lambda depth, units: LstmkitModule(depth, units, bidirectional),
        bidirectional=bidirectional, convention="v1",
        name="lstmkit_bidirectional_dynamic_rnn" if bidirectional
        else "lstmkit_dynamic_rnn",
    )


def keras_lstm() -> doctor.KerasLayerAdapter:
    return doctor.KerasLayerAdapter(
        lambda depth, units: keras.layers.LSTM(
            units, return_sequences=True, return_state=True
        ),
        convention="keras", name="keras_lstm",
    )


def keras_bidirectional() -> doctor.KerasLayerAdapter:
    return doctor.KerasLayerAdapter(
        lambda depth, units: keras.layers.Bidirectional(
            keras.layers.LSTM(units, return_sequences=True, return_state=True)
        ),
        bidirectional=True, convention="keras", name="keras_bidirectional",
    )


def lstmkit_layer(semantics: str) -> doctor.KerasLayerAdapter:
    return doctor.KerasLayerAdapter(
        lambda depth, units: lstmkit.layers.LSTM(
            units, return_sequences=True, return_state=True,
            semantics=semantics,
        ),
        convention="keras" if semantics == "keras" else "v1",
        name=f"lstmkit_layers_lstm_{semantics}",
    )


def lstmkit_bidirectional_layer() -> doctor.KerasLayerAdapter:
    return doctor.KerasLayerAdapter(
        lambda depth, units: lstmkit.layers.Bidirectional(
            lstmkit.layers.LSTM(units, return_sequences=True, return_state=True)
        ),
        bidirectional=True, convention="keras",
        name="lstmkit_layers_bidirectional",
    )


def layer_norm_module(bidirectional: bool = False) -> doctor.ModuleAdapter:
    """A custom cell judged against lstmkit's driver running that cell."""
    return doctor.ModuleAdapter(
        lambda depth, units: LstmkitModule(
            depth, units, bidirectional, lstmkit.LayerNormLSTMCell
        ),
        bidirectional=bidirectional,
        reference_cell=lstmkit.LayerNormLSTMCell,
        name="layer_norm_lstm",
    )
