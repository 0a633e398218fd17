"""A forget-gate-only LSTM (JANET) written on lstmkit's extension point.

Westhuizen and Lasenby, 2018, "The unreasonable effectiveness of the forget
gate", keep only the forget gate of the LSTM and tie the input gate to it:

    z = x @ W_x + b + h @ W_h             # [batch, 2 * units], blocks f, j
    f, j = split(z, 2)
    c' = sigmoid(f) * c + (1 - sigmoid(f - beta)) * tanh(j)
    h' = c'

`beta` shifts the input gate so the cell starts out remembering (the paper
uses 1). The state is one tensor, and the output is the new state.

`docs/custom-cell.md` walks through this file.
"""

import keras
import tensorflow as tf

import lstmkit


@keras.saving.register_keras_serializable(package="lstmkit_examples")
class JanetCell(lstmkit.RecurrentCell):
    """The JANET cell.

    Variables:
        kernel_x: `[input_depth, 2 * units]`, blocks f, j.
        kernel_h: `[units, 2 * units]`, blocks f, j.
        bias: `[2 * units]`, blocks f, j.

    Args:
        units: size of the state.
        beta: shift of the input gate.
        **kwargs: passed to `keras.layers.Layer`.
    """

    def __init__(self, units: int, beta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.beta = beta

    @property
    def state_size(self) -> int:
        return self.units

    @property
    def output_size(self) -> int:
        return self.units

    def build(self, input_shape) -> None:
        self.input_depth = int(input_shape[-1])
        self.kernel_x = self.add_weight(
            name="kernel_x", shape=(self.input_depth, 2 * self.units)
        )
        self.kernel_h = self.add_weight(
            name="kernel_h",
            shape=(self.units, 2 * self.units),
            initializer="orthogonal",
        )
        self.bias = self.add_weight(
            name="bias", shape=(2 * self.units,), initializer="zeros"
        )
        self.built = True

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        # One product for every time step: [..., depth] -> [..., 2 * units].
        kernel = self.read_weight(self.kernel_x)
        return tf.tensordot(inputs, kernel, 1) + self.read_weight(self.bias)

    def recurrent_weights(self) -> dict:
        return {"kernel_h": self.read_weight(self.kernel_h)}

    def step(self, projected, state, weights=None):
        weights = weights or self.recurrent_weights()
        z = projected + tf.matmul(state, weights["kernel_h"])
        f, j = tf.split(z, 2, axis=1)
        input_gate = 1 - tf.sigmoid(f - self.beta)
        c = tf.sigmoid(f) * state + input_gate * tf.tanh(j)
        return c, c

    def normalize_state(self, state):
        return tf.convert_to_tensor(state, dtype=self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        return {**config, "units": self.units, "beta": self.beta}
