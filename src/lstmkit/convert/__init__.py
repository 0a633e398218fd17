"""Weight conversion between the v1 `LSTMCell`, Keras, PyTorch and TF1.

Every converter goes through `V1Weights`, the arrays of one v1 `LSTMCell`
(kernel blocks i, j, f, o, with the forget bias kept apart from `bias`):

* lstmkit or v1 cells: `v1_weights_from_cell`, `v1_weights_to_cell`;
* `keras.layers.LSTM` and `keras.layers.Bidirectional`: `v1_to_keras`,
  `keras_to_v1`, `to_keras_lstm`, `from_keras_lstm`,
  `to_keras_bidirectional`, `from_keras_bidirectional`;
* PyTorch `nn.LSTM` state dicts (PyTorch itself is not needed):
  `v1_to_torch`, `torch_to_v1`, `to_torch_lstm_state_dict`,
  `from_torch_lstm_state_dict`;
* TF1 checkpoints: `read_tf1_checkpoint`,
  `read_tf1_bidirectional_checkpoint`, `cells_from_tf1_checkpoint`;
* `lstmkit.layers` objects: `to_lstmkit_layer`,
  `layer_from_tf1_checkpoint`, `layers_from_torch_state_dict`.

Example:
    >>> import keras
    >>> from lstmkit.convert import from_keras_lstm
    >>> layer = keras.layers.LSTM(8)
    >>> layer.build((None, None, 3))
    >>> cell = from_keras_lstm(layer)
    >>> tuple(cell.kernel.shape)
    (11, 32)
"""

from lstmkit.convert.keras import (
    from_keras_bidirectional,
    from_keras_lstm,
    keras_to_v1,
    to_keras_bidirectional,
    to_keras_lstm,
    v1_to_keras,
)
from lstmkit.convert.layers import (
    layer_from_tf1_checkpoint,
    layers_from_torch_state_dict,
    to_lstmkit_layer,
)
from lstmkit.convert.layouts import (
    GATE_ORDER_KERAS,
    GATE_ORDER_TF1,
    GATE_ORDER_TORCH,
    V1Weights,
    gate_slice,
    reorder_gates,
)
from lstmkit.convert.tf1 import (
    cells_from_tf1_checkpoint,
    read_tf1_bidirectional_checkpoint,
    read_tf1_checkpoint,
    v1_cell_options,
    v1_weights_from_cell,
    v1_weights_to_cell,
)
from lstmkit.convert.torch import (
    from_torch_lstm_state_dict,
    to_torch_lstm_state_dict,
    torch_to_v1,
    v1_to_torch,
)

__all__ = [
    "GATE_ORDER_KERAS",
    "GATE_ORDER_TF1",
    "GATE_ORDER_TORCH",
    "V1Weights",
    "cells_from_tf1_checkpoint",
    "from_keras_bidirectional",
    "from_keras_lstm",
    "from_torch_lstm_state_dict",
    "gate_slice",
    "keras_to_v1",
    "layer_from_tf1_checkpoint",
    "layers_from_torch_state_dict",
    "read_tf1_bidirectional_checkpoint",
    "read_tf1_checkpoint",
    "reorder_gates",
    "to_keras_bidirectional",
    "to_keras_lstm",
    "to_lstmkit_layer",
    "to_torch_lstm_state_dict",
    "torch_to_v1",
    "v1_cell_options",
    "v1_to_keras",
    "v1_to_torch",
    "v1_weights_from_cell",
    "v1_weights_to_cell",
]
