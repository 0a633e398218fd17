"""Keras 3 layers on lstmkit's cell and driver: `LSTM` and `Bidirectional`."""

from lstmkit.layers.bidirectional import Bidirectional
from lstmkit.layers.lstm import LSTM

__all__ = ["Bidirectional", "LSTM"]
