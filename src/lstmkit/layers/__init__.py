"""Keras 3 layers on lstmkit's cells: `LSTM`, `RNN` and `Bidirectional`."""

# Every cell module registers its cells with Keras' serialization, so
# importing them here lets `keras.saving.load_model` rebuild an `RNN` over
# any lstmkit cell once `lstmkit.layers` is imported.
from lstmkit import gru, regularization, variants  # noqa: F401
from lstmkit.layers.bidirectional import Bidirectional
from lstmkit.layers.lstm import LSTM
from lstmkit.layers.rnn import RNN

__all__ = ["Bidirectional", "LSTM", "RNN"]
