"""An LSTM cell with Keras' weight layout, on lstmkit's cell and driver.

`KerasLSTMCell` runs the same step as `lstmkit.LSTMCell` (so the v1 options
peepholes, `cell_clip`, `num_proj` and `proj_clip` stay available) but
stores its weights as `keras.layers.LSTM` does, so
`layer.set_weights(keras_layer.get_weights())` works:

    kernel: `[input_depth, 4 * units]`, column blocks i, f, c, o.
    recurrent_kernel: `[h_depth, 4 * units]`, blocks i, f, c, o.
    bias: `[4 * units]`, blocks i, f, c, o. With `unit_forget_bias` the f
        block starts at 1 (it is replaced, not incremented).

Then, if enabled, `w_f_diag`, `w_i_diag`, `w_o_diag` and `projection_kernel`.
Keras' defaults initialize the kernel Glorot uniform over `[input_depth,
4 * units]`, the recurrent kernel orthogonal over the whole matrix, and
the bias to zeros with the forget block at one. No forget bias is added at
run time unless `forget_bias` is set.
"""

import logging
from typing import Any

import keras
import tensorflow as tf

from lstmkit.cells import LSTMCell

logger = logging.getLogger(__name__)

GATE_ORDER_KERAS = "ifco"


@keras.saving.register_keras_serializable(package="lstmkit")
class KerasLSTMCell(LSTMCell):
    """The lstmkit LSTM step with Keras' weights and initializers.

    Args:
        units: size of the cell state.
        kernel_initializer: initializer of `kernel`.
        recurrent_initializer: initializer of `recurrent_kernel`.
        bias_initializer: initializer of `bias`.
        unit_forget_bias: set the forget block of the initial bias to 1.
        forget_bias: added to the forget pre-activation at every step, as
            the v1 cell does; 0 (none) by default, as in Keras.
        use_peepholes, cell_clip, num_proj, proj_clip, activation: as in
            `lstmkit.LSTMCell`.
        **kwargs: passed to `keras.layers.Layer`.
    """

    def __init__(
        self,
        units: int,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        forget_bias: float = 0.0,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        activation: Any = None,
        **kwargs,
    ):
        kwargs.setdefault("name", "keras_lstm_cell")
        super().__init__(
            units,
            use_peepholes=use_peepholes,
            cell_clip=cell_clip,
            num_proj=num_proj,
            proj_clip=proj_clip,
            forget_bias=forget_bias,
            activation=activation,
            **kwargs,
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _resolve_activation(self, activation: Any) -> Any:
        # Names mean what they mean to keras.layers.LSTM, which differs
        # from the v1 cell for "hard_sigmoid" (see `v1_activation`).
        return keras.activations.get(activation)

    @property
    def units(self) -> int:
        """Size of the cell state (Keras' name for `num_units`)."""
        return self.num_units

    def build(self, input_shape: Any) -> None:
        """Creates the variables for inputs of shape `[..., input_depth]`."""
        input_depth = tf.TensorShape(input_shape)[-1]
        if input_depth is None:
            raise ValueError(
                f"The last dimension of the inputs must be known to build "
                f"{self.name}; got input shape {input_shape}."
            )
        self.input_depth = int(input_depth)
        units = self.num_units

        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.input_depth, 4 * units),
            initializer=self.kernel_initializer,
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(self.output_size, 4 * units),
            initializer=self.recurrent_initializer,
        )
        self.bias = self.add_weight(
            name="bias", shape=(4 * units,), initializer=self._bias_init
        )
        self._build_options()
        self.built = True

    def _bias_init(self, shape: Any, dtype: Any = None) -> tf.Tensor:
        units = self.num_units
        if not self.unit_forget_bias:
            return self.bias_initializer(shape, dtype=dtype)
        return tf.concat(
            [
                self.bias_initializer((units,), dtype=dtype),
                tf.ones((units,), dtype=dtype),
                self.bias_initializer((2 * units,), dtype=dtype),
            ],
            axis=0,
        )

    def _build_options(self) -> None:
        if self.use_peepholes:
            self.w_f_diag = self._add_peephole("w_f_diag")
            self.w_i_diag = self._add_peephole("w_i_diag")
            self.w_o_diag = self._add_peephole("w_o_diag")
        if self.num_proj is not None:
            self.projection_kernel = self.add_weight(
                name="projection_kernel",
                shape=(self.num_units, self.num_proj),
                initializer=keras.initializers.GlorotUniform(),
            )

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """Computes `x @ kernel + bias` for all rows at once.

        Args:
            inputs: `[..., input_depth]`.

        Returns:
            `[..., 4 * units]`, blocks i, f, c, o.
        """
        flat = tf.reshape(inputs, [-1, self.input_depth])
        kernel = self.read_weight(self.kernel)
        bias = self.read_weight(self.bias)
        projected = tf.nn.bias_add(tf.matmul(flat, kernel), bias)
        leading = tf.shape(inputs)[:-1]
        return tf.reshape(
            projected, tf.concat([leading, [4 * self.num_units]], 0)
        )

    def recurrent_weights(self) -> dict[str, tf.Tensor]:
        """Reads the recurrent kernel, peepholes and projection once."""
        weights = super().recurrent_weights()
        weights["kernel_h"] = self.read_weight(self.recurrent_kernel)
        return weights

    def split_gates(self, z: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Splits Keras' blocks i, f, c, o and returns them as i, c, f, o."""
        i, f, c, o = tf.split(z, 4, axis=1)
        return i, c, f, o

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("num_units")
        config.pop("initializer")
        config.update(
            units=self.num_units,
            kernel_initializer=keras.initializers.serialize(
                self.kernel_initializer
            ),
            recurrent_initializer=keras.initializers.serialize(
                self.recurrent_initializer
            ),
            bias_initializer=keras.initializers.serialize(
                self.bias_initializer
            ),
            unit_forget_bias=self.unit_forget_bias,
        )
        return config
