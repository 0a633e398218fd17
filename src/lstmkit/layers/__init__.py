"""Keras 3 layers on lstmkit's cells: `LSTM`, `RNN` and `Bidirectional`."""

from lstmkit.layers.bidirectional import Bidirectional
from lstmkit.layers.lstm import LSTM
from lstmkit.layers.rnn import RNN

__all__ = ["Bidirectional", "LSTM", "RNN"]
