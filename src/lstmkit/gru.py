"""GRU cells on lstmkit's cell base, in Keras' and in the v1 convention.

`GRUCell` stores its weights as `keras.layers.GRU` (Keras 3) does and
computes the same step, with the reset gate applied after the recurrent
matrix product by default (`reset_after=True`, the cuDNN form).
`V1GRUCell` stores the variables of the v1 `GRUCell`
(`tf.compat.v1.nn.rnn_cell.GRUCell`, kept in tf_keras as
`tf_keras.src.layers.rnn.legacy_cells.GRUCell`) and computes its step, with
the reset gate applied before the recurrent product.

Both cells keep one state tensor `[batch, units]`, which is also the
output, and both hoist the input part of every step into one matrix
product over all time steps (`project_inputs`). Both take an optional
recurrent dropout mask `weights["h_dropout_mask"]` `[batch, units]` in
`step`, which multiplies the previous h where it enters a recurrent matrix
product, as `keras.layers.GRU(recurrent_dropout=...)` applies its masks.
The interpolation `z * h` (`u * h` in the v1 cell) reads the previous h
undropped.
"""

import collections
import logging
from typing import Any

import keras
import tensorflow as tf

from lstmkit.cells import RecurrentCell, _check_positive_int, v1_activation

logger = logging.getLogger(__name__)

# Column blocks of Keras' GRU kernel, recurrent kernel and bias: update
# gate z, reset gate r, candidate h.
GATE_ORDER_KERAS_GRU = "zrh"
# Column blocks of the v1 gates kernel and bias: reset gate r, update gate u.
GATE_ORDER_V1_GRU = "ru"


class _SingleStateCell(RecurrentCell):
    """A cell whose state is one tensor `[batch, units]`, also its output."""

    units: int
    supports_recurrent_dropout = True

    @property
    def state_size(self) -> int:
        return self.units

    @property
    def output_size(self) -> int:
        return self.units

    def normalize_state(self, state: Any) -> tf.Tensor:
        """Accepts a tensor `[batch, units]` or a one-element list of it.

        Keras passes RNN states as a list, so `[h]` is accepted as well.

        Raises:
            ValueError: the state is a sequence of other than one element.
        """
        if isinstance(state, collections.abc.Sequence) and not isinstance(
            state, str
        ):
            if len(state) != 1:
                raise ValueError(
                    f"A GRU state must be one tensor [batch, {self.units}], "
                    f"but got a {type(state).__name__} of {len(state)} "
                    "elements. Pass the tensor or a one-element list."
                )
            state = state[0]
        if tf.is_tensor(state):
            # A tensor keeps its dtype so that the drivers report a dtype
            # mismatch as a TypeError.
            return tf.convert_to_tensor(state)
        return tf.convert_to_tensor(state, dtype=self.compute_dtype)

    def _check_input_shape(self, input_shape: Any) -> int:
        input_depth = tf.TensorShape(input_shape)[-1]
        if input_depth is None:
            raise ValueError(
                f"The last dimension of the inputs must be known to build "
                f"{self.name}, but the input shape is {input_shape}."
            )
        return int(input_depth)

    def _config_dtype(self, config: dict) -> dict:
        if self._dtype_from_inputs and not self.built:
            # Keep "dtype from the first inputs" for a cell restored before
            # it was built.
            config["dtype"] = None
        return config


def _recurrent_input(state: tf.Tensor, weights: dict) -> tf.Tensor:
    """Returns the previous h as the recurrent products read it.

    That is `state * weights["h_dropout_mask"]` when the mask is present,
    else `state`.
    """
    if "h_dropout_mask" in weights:
        return state * weights["h_dropout_mask"]
    return state


def _project(
    inputs: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None
) -> tf.Tensor:
    """Computes `inputs @ kernel (+ bias)` over the last axis of `inputs`."""
    depth = kernel.shape[0]
    flat = tf.reshape(inputs, [-1, depth])
    projected = tf.matmul(flat, kernel)
    if bias is not None:
        projected = tf.nn.bias_add(projected, bias)
    leading = tf.shape(inputs)[:-1]
    return tf.reshape(projected, tf.concat([leading, [kernel.shape[1]]], 0))


@keras.saving.register_keras_serializable(package="lstmkit")
class GRUCell(_SingleStateCell):
    """The GRU step of `keras.layers.GRU`, with Keras' weight layout.

    `cell.set_weights(keras_gru.get_weights())` gives the same numbers as
    the Keras layer with the same `reset_after`, `use_bias` and
    activations.

    Equations for one step (`*` is elementwise, `sigma` is
    `recurrent_activation`, `phi` is `activation`, `b_x` and `b_h` are the
    input and recurrent rows of `bias`):

        x_z, x_r, x_h = split(x @ kernel + b_x, 3)
        with reset_after=True:
            h_z, h_r, h_h = split(h @ recurrent_kernel + b_h, 3)
            z = sigma(x_z + h_z)
            r = sigma(x_r + h_r)
            candidate = phi(x_h + r * h_h)
        with reset_after=False (no recurrent bias):
            h_z, h_r = split(h @ recurrent_kernel[:, :2 * units], 2)
            z = sigma(x_z + h_z)
            r = sigma(x_r + h_r)
            candidate = phi(x_h + (r * h) @ recurrent_kernel[:, 2 * units:])
        h' = z * h + (1 - z) * candidate
        output = state = h'

    With `weights["h_dropout_mask"]` (recurrent dropout), every `h` inside
    a matrix product above becomes `h * mask`. The last line keeps `h`.

    Variables, in `cell.weights` order:
        kernel: `[input_depth, 3 * units]`, column blocks z, r, h.
        recurrent_kernel: `[units, 3 * units]`, blocks z, r, h.
        bias (with `use_bias`): `[2, 3 * units]` with `reset_after`, row 0
            for the input product and row 1 for the recurrent product.
            Without `reset_after` it is `[3 * units]`, the input bias only.
            Column blocks z, r, h.

    Keras' default initialization: Glorot uniform for `kernel`, orthogonal
    for `recurrent_kernel`, zeros for `bias`.

    Args:
        units: size of the state and the output.
        activation: activation of the candidate (callable or Keras name).
        recurrent_activation: activation of the gates z and r.
        use_bias: add the bias rows.
        kernel_initializer: initializer of `kernel`.
        recurrent_initializer: initializer of `recurrent_kernel`.
        bias_initializer: initializer of `bias`.
        reset_after: apply the reset gate after the recurrent product (Keras
            3 and cuDNN default) instead of before it.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Example:
        >>> import lstmkit, tensorflow as tf
        >>> from lstmkit.gru import GRUCell
        >>> outputs, state = lstmkit.dynamic_rnn(
        ...     GRUCell(8), tf.zeros([2, 5, 3]), sequence_length=[5, 2])
        >>> outputs.shape, state.shape
        (TensorShape([2, 5, 8]), TensorShape([2, 8]))
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        reset_after: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("name", "gru_cell")
        super().__init__(**kwargs)
        _check_positive_int("units", units)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(
            recurrent_activation
        )
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.reset_after = bool(reset_after)
        self.input_depth = None

    def build(self, input_shape: Any) -> None:
        """Creates the variables for inputs of shape `[..., input_depth]`."""
        self.input_depth = self._check_input_shape(input_shape)
        units = self.units
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.input_depth, 3 * units),
            initializer=self.kernel_initializer,
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(units, 3 * units),
            initializer=self.recurrent_initializer,
        )
        self.bias = None
        if self.use_bias:
            shape = (2, 3 * units) if self.reset_after else (3 * units,)
            self.bias = self.add_weight(
                name="bias", shape=shape, initializer=self.bias_initializer
            )
        self.built = True

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """Computes `x @ kernel + b_x` for all rows at once.

        Args:
            inputs: `[..., input_depth]`.

        Returns:
            `[..., 3 * units]`, blocks z, r, h.
        """
        bias = None
        if self.use_bias:
            bias = self.read_weight(self.bias)
            if self.reset_after:
                bias = bias[0]
        return _project(inputs, self.read_weight(self.kernel), bias)

    def recurrent_weights(self) -> dict[str, tf.Tensor]:
        """Reads the recurrent kernel and the recurrent bias once.

        Returns:
            `{"recurrent_kernel": [units, 3 * units]}`, plus
            `"recurrent_bias": [3 * units]` with `reset_after` and
            `use_bias`.
        """
        weights = {
            "recurrent_kernel": self.read_weight(self.recurrent_kernel)
        }
        if self.use_bias and self.reset_after:
            weights["recurrent_bias"] = self.read_weight(self.bias)[1]
        return weights

    def step(
        self,
        projected: tf.Tensor,
        state: tf.Tensor,
        weights: dict[str, tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Runs the recurrent part of one GRU step.

        Args:
            projected: `[batch, 3 * units]` from `project_inputs`.
            state: `[batch, units]`, the previous h.
            weights: from `recurrent_weights()`, or read here when `None`.
                An optional `h_dropout_mask` `[batch, units]` entry
                multiplies the previous h in the recurrent products.

        Returns:
            `(h', h')` with h' `[batch, units]`.
        """
        if weights is None:
            weights = self.recurrent_weights()
        units = self.units
        recurrent_kernel = weights["recurrent_kernel"]
        h_input = _recurrent_input(state, weights)
        x_z, x_r, x_h = tf.split(projected, 3, axis=1)

        if self.reset_after:
            inner = tf.matmul(h_input, recurrent_kernel)
            if "recurrent_bias" in weights:
                inner = tf.nn.bias_add(inner, weights["recurrent_bias"])
            h_z, h_r, h_h = tf.split(inner, 3, axis=1)
            z = self.recurrent_activation(x_z + h_z)
            r = self.recurrent_activation(x_r + h_r)
            recurrent_h = r * h_h
        else:
            inner = tf.matmul(h_input, recurrent_kernel[:, : 2 * units])
            h_z, h_r = tf.split(inner, 2, axis=1)
            z = self.recurrent_activation(x_z + h_z)
            r = self.recurrent_activation(x_r + h_r)
            recurrent_h = tf.matmul(
                r * h_input, recurrent_kernel[:, 2 * units :]
            )

        candidate = self.activation(x_h + recurrent_h)
        new_h = z * state + (1 - z) * candidate
        return new_h, new_h

    def get_config(self) -> dict:
        config = self._config_dtype(super().get_config())
        config.update(
            units=self.units,
            activation=keras.activations.serialize(self.activation),
            recurrent_activation=keras.activations.serialize(
                self.recurrent_activation
            ),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(
                self.kernel_initializer
            ),
            recurrent_initializer=keras.initializers.serialize(
                self.recurrent_initializer
            ),
            bias_initializer=keras.initializers.serialize(
                self.bias_initializer
            ),
            reset_after=self.reset_after,
        )
        return config


@keras.saving.register_keras_serializable(package="lstmkit")
class V1GRUCell(_SingleStateCell):
    """The v1 `GRUCell`, readable and modifiable.

    Same variables, initialization and math as
    `tf.compat.v1.nn.rnn_cell.GRUCell` (tf_keras 2.21,
    `tf_keras.src.layers.rnn.legacy_cells.GRUCell`), so
    `cell.set_weights(v1_cell.get_weights())` gives the same numbers. The
    reset gate acts before the recurrent product of the candidate.

    Equations for one step (`*` is elementwise, `W_x` are the first
    `input_depth` rows of a kernel, `W_h` the rest):

        r, u = split(sigmoid(x @ gates_W_x + h @ gates_W_h + gates_bias), 2)
        c = activation(x @ candidate_W_x + (r * h) @ candidate_W_h
                       + candidate_bias)
        h' = u * h + (1 - u) * c
        output = state = h'

    With `weights["h_dropout_mask"]` (recurrent dropout), `h` in both
    matrix products becomes `h * mask`. The last line keeps `h`.

    Variables, in `cell.weights` order. The v1 names are `gates/kernel` and
    so on, but Keras 3 rejects `/` in variable names, so `_` replaces it:
        gates_kernel: `[input_depth + units, 2 * units]`, rows for x first,
            then rows for h. Column blocks r, u.
        gates_bias: `[2 * units]`, blocks r, u.
        candidate_kernel: `[input_depth + units, units]`, x rows, then h.
        candidate_bias: `[units]`.

    Default initialization (both initializers `None`): Glorot uniform over
    each whole kernel, ones for `gates_bias` and zeros for
    `candidate_bias`. An explicit `bias_initializer` replaces both bias
    defaults, as in the v1 cell.

    Args:
        num_units: size of the state and the output.
        activation: activation of the candidate (callable or name, as the
            v1 cell reads it, see `lstmkit.cells.v1_activation`), tanh when
            `None`.
        kernel_initializer: Keras initializer of both kernels, Glorot
            uniform when `None`.
        bias_initializer: Keras initializer of both biases, the v1 defaults
            above when `None`.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        num_units: int,
        activation: Any = None,
        kernel_initializer: Any = None,
        bias_initializer: Any = None,
        **kwargs,
    ):
        kwargs.setdefault("name", "v1_gru_cell")
        super().__init__(**kwargs)
        _check_positive_int("num_units", num_units)
        self.units = int(num_units)
        self.activation = v1_activation(activation or "tanh")
        self._activation_config = activation
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.input_depth = None

    @property
    def num_units(self) -> int:
        """Size of the state (the v1 name for `units`)."""
        return self.units

    def build(self, input_shape: Any) -> None:
        """Creates the variables for inputs of shape `[..., input_depth]`."""
        self.input_depth = self._check_input_shape(input_shape)
        rows = self.input_depth + self.units
        self.gates_kernel = self.add_weight(
            name="gates_kernel",
            shape=(rows, 2 * self.units),
            initializer=self._fresh(self.kernel_initializer, "glorot_uniform"),
        )
        self.gates_bias = self.add_weight(
            name="gates_bias",
            shape=(2 * self.units,),
            initializer=self._fresh(self.bias_initializer, "ones"),
        )
        self.candidate_kernel = self.add_weight(
            name="candidate_kernel",
            shape=(rows, self.units),
            initializer=self._fresh(self.kernel_initializer, "glorot_uniform"),
        )
        self.candidate_bias = self.add_weight(
            name="candidate_bias",
            shape=(self.units,),
            initializer=self._fresh(self.bias_initializer, "zeros"),
        )
        self.built = True

    @staticmethod
    def _fresh(
        initializer: Any, default: str
    ) -> keras.initializers.Initializer:
        # A new object per variable, because an unseeded Keras 3
        # initializer fixes its seed when created and would repeat its
        # values in variables of the same shape.
        initializer = keras.initializers.get(initializer or default)
        if isinstance(initializer, keras.initializers.Initializer):
            return initializer.__class__.from_config(initializer.get_config())
        return initializer

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """Computes the x part of both products for all rows at once.

        Args:
            inputs: `[..., input_depth]`.

        Returns:
            `[..., 3 * units]`: `x @ gates_W_x + gates_bias` (blocks r, u),
            then `x @ candidate_W_x + candidate_bias`.
        """
        depth = self.input_depth
        kernel_x = tf.concat(
            [
                self.read_weight(self.gates_kernel)[:depth],
                self.read_weight(self.candidate_kernel)[:depth],
            ],
            axis=1,
        )
        bias = tf.concat(
            [
                self.read_weight(self.gates_bias),
                self.read_weight(self.candidate_bias),
            ],
            axis=0,
        )
        return _project(inputs, kernel_x, bias)

    def recurrent_weights(self) -> dict[str, tf.Tensor]:
        """Reads the h rows of both kernels once.

        Returns:
            `{"gates_kernel_h": [units, 2 * units],
            "candidate_kernel_h": [units, units]}`.
        """
        depth = self.input_depth
        return {
            "gates_kernel_h": self.read_weight(self.gates_kernel)[depth:],
            "candidate_kernel_h": self.read_weight(self.candidate_kernel)[
                depth:
            ],
        }

    def step(
        self,
        projected: tf.Tensor,
        state: tf.Tensor,
        weights: dict[str, tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Runs the recurrent part of one v1 GRU step.

        Args:
            projected: `[batch, 3 * units]` from `project_inputs`.
            state: `[batch, units]`, the previous h.
            weights: from `recurrent_weights()`, or read here when `None`.
                An optional `h_dropout_mask` `[batch, units]` entry
                multiplies the previous h in both recurrent products.

        Returns:
            `(h', h')` with h' `[batch, units]`.
        """
        if weights is None:
            weights = self.recurrent_weights()
        units = self.units
        h_input = _recurrent_input(state, weights)
        gates_x = projected[:, : 2 * units]
        candidate_x = projected[:, 2 * units :]

        gates = tf.sigmoid(
            gates_x + tf.matmul(h_input, weights["gates_kernel_h"])
        )
        r, u = tf.split(gates, 2, axis=1)
        candidate = self.activation(
            candidate_x
            + tf.matmul(r * h_input, weights["candidate_kernel_h"])
        )
        new_h = u * state + (1 - u) * candidate
        return new_h, new_h

    def get_config(self) -> dict:
        config = self._config_dtype(super().get_config())
        activation = self._activation_config
        if activation is not None and not isinstance(activation, str):
            activation = keras.activations.serialize(activation)
        config.update(
            num_units=self.units,
            activation=activation,
            kernel_initializer=_serialize_initializer(
                self.kernel_initializer
            ),
            bias_initializer=_serialize_initializer(self.bias_initializer),
        )
        return config


def _serialize_initializer(initializer: Any) -> Any:
    if initializer is None or isinstance(initializer, str):
        return initializer
    return keras.initializers.serialize(keras.initializers.get(initializer))
