"""`lstmkit.layers.LSTM`: a Keras layer on lstmkit's cell and driver."""

import logging
from typing import Any

import keras
import tensorflow as tf
from keras.src.utils import tracking

from lstmkit import rnn, validation
from lstmkit.cells import LSTMCell, LSTMStateTuple
from lstmkit.keras_cell import KerasLSTMCell
from lstmkit.layers import masks

logger = logging.getLogger(__name__)

SEMANTICS = ("keras", "tf1")


@keras.saving.register_keras_serializable(package="lstmkit")
class LSTM(keras.layers.Layer):
    """An LSTM layer with the arguments of `keras.layers.LSTM`.

    It runs `lstmkit.KerasLSTMCell` or `lstmkit.LSTMCell` with the same
    driver as `lstmkit.dynamic_rnn`, chosen by `semantics`:

    * `"keras"` (default): Keras' weights `[kernel, recurrent_kernel, bias]`
      in gate order i, f, c, o, Keras' initializers, the forget bias stored
      in the bias, and at masked steps the previous output (zeros with
      `zero_output_for_mask=True`). `set_weights(keras_lstm.get_weights())`
      gives Keras' numbers.
    * `"tf1"`: the v1 cell's weights `[kernel, bias]` (gate order i, j, f, o,
      kernel over `concat([x, h])`), v1 initialization, `forget_bias` added
      at run time (1.0 by default), zeros at masked steps.

    Both return states in Keras' order, `[output, h, c]`.

    Args:
        units: size of the cell state.
        activation: of the candidate and the cell state (default tanh).
        kernel_initializer, recurrent_initializer, bias_initializer,
            unit_forget_bias: Keras' initialization ("keras" semantics).
            With "tf1", a given `kernel_initializer` initializes the whole
            v1 kernel (and peepholes, projection) as v1's `initializer`.
        dropout: fraction of input units dropped while training, one mask
            per sequence.
        recurrent_dropout: fraction of `h` units dropped before the
            recurrent product while training, one mask per sequence.
        return_sequences: return all outputs `[batch, time, units]` instead
            of the last one.
        return_state: also return the final `h` and `c`.
        go_backwards: read the time axis reversed (padding included) and
            return outputs in reading order, as Keras does.
        stateful: carry the final state of each batch into the next; needs
            a fixed batch size. `reset_states()` zeroes it.
        zero_output_for_mask: output zeros at masked steps with "keras"
            semantics ("tf1" always does).
        semantics: `"keras"` or `"tf1"`.
        use_peepholes, cell_clip, num_proj, proj_clip: the v1 options.
        forget_bias: added to the forget gate at every step; default 0 with
            "keras" semantics and 1 with "tf1".
        seed: seed of the dropout masks.
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        inputs: `[batch, time, depth]`.
        mask: optional bool `[batch, time]`; right or left padding and
            holes all work.
        training: applies dropout when True.
        initial_state: optional `[h, c]`.
        sequence_length: optional int `[batch]` lengths; given with a mask,
            both must mark the same steps.

    Example:
        >>> import numpy as np, lstmkit
        >>> layer = lstmkit.layers.LSTM(4, return_sequences=True)
        >>> layer(np.zeros([2, 3, 5], "float32")).shape
        TensorShape([2, 3, 4])
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        zero_output_for_mask: bool = False,
        semantics: str = "keras",
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        forget_bias: float | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if semantics not in SEMANTICS:
            raise ValueError(
                f"semantics must be one of {SEMANTICS}; got {semantics!r}."
            )
        for name, rate in (("dropout", dropout),
                           ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {rate!r}.")
        self.units = int(units)
        self.activation = activation
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.unit_forget_bias = unit_forget_bias
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = stateful
        self.zero_output_for_mask = zero_output_for_mask
        self.semantics = semantics
        self.use_peepholes = use_peepholes
        self.cell_clip = cell_clip
        self.num_proj = num_proj
        self.proj_clip = proj_clip
        self.forget_bias = forget_bias
        self.seed = seed
        self.supports_masking = True
        self.cell = self._make_cell()
        self._seed_generator = keras.random.SeedGenerator(seed)
        self.state_variables = None

    def _make_cell(self) -> LSTMCell:
        common = dict(
            use_peepholes=self.use_peepholes,
            cell_clip=self.cell_clip,
            num_proj=self.num_proj,
            proj_clip=self.proj_clip,
            activation=self.activation,
            dtype=self.dtype_policy,
        )
        if self.semantics == "keras":
            return KerasLSTMCell(
                self.units,
                kernel_initializer=self.kernel_initializer,
                recurrent_initializer=self.recurrent_initializer,
                bias_initializer=self.bias_initializer,
                unit_forget_bias=self.unit_forget_bias,
                forget_bias=self.forget_bias or 0.0,
                name="lstm_cell",
                **common,
            )
        self._check_tf1_arguments()
        initializer = None
        if self.kernel_initializer != "glorot_uniform":
            initializer = self.kernel_initializer
        forget_bias = 1.0 if self.forget_bias is None else self.forget_bias
        return LSTMCell(
            self.units,
            initializer=initializer,
            forget_bias=forget_bias,
            name="lstm_cell",
            **common,
        )

    def _check_tf1_arguments(self) -> None:
        keras_only = {
            "recurrent_initializer": (self.recurrent_initializer, "orthogonal"),
            "bias_initializer": (self.bias_initializer, "zeros"),
            "unit_forget_bias": (self.unit_forget_bias, True),
        }
        for name, (value, default) in keras_only.items():
            if value != default:
                raise ValueError(
                    f"{name}={value!r} has no effect with semantics='tf1', "
                    "whose bias starts at zero and whose kernel covers x and "
                    "h together; use semantics='keras' or drop the argument."
                )

    def build(self, input_shape: Any) -> None:
        """Builds the cell and, when stateful, the state variables."""
        input_shape = tf.TensorShape(input_shape)
        self.cell.build(input_shape[-1:])
        if self.stateful:
            self._build_state_variables(input_shape[0])
        self.built = True

    def _build_state_variables(self, batch: int | None) -> None:
        if batch is None:
            raise ValueError(
                f"{self.name}: stateful=True needs a fixed batch size, but "
                f"the input's batch size is {batch}. Give the input one, "
                "for example keras.Input(shape=..., batch_size=32)."
            )
        sizes = self.cell.state_size
        # As in keras.layers.RNN, the carried state is not a weight. It is
        # left out of `weights`, `get_weights()` and `.keras` files, so a
        # stateful layer takes `set_weights(keras_lstm.get_weights())` too.
        with tracking.DotNotTrackScope():
            self.state_variables = LSTMStateTuple(
                *[
                    keras.Variable(
                        initializer="zeros",
                        shape=(batch, size),
                        dtype=self.variable_dtype,
                        trainable=False,
                        name=name,
                    )
                    for name, size in (
                        ("state_c", sizes.c),
                        ("state_h", sizes.h),
                    )
                ]
            )

    @property
    def variables(self) -> list:
        """All variables, with the carried state of a stateful layer.

        The state is not a weight, but `model.export` saves the variables
        listed here, so an exported stateful model keeps carrying it.
        """
        variables = super().variables
        state = getattr(self, "state_variables", None)
        if state is not None:
            variables = variables + list(state)
        return variables

    def reset_states(self) -> None:
        """Sets the carried state of a stateful layer to zeros."""
        if self.state_variables is not None:
            for variable in self.state_variables:
                variable.assign(tf.zeros_like(variable))

    reset_state = reset_states

    def call(
        self,
        inputs: Any,
        mask: Any = None,
        training: bool | None = None,
        initial_state: Any = None,
        sequence_length: Any = None,
    ) -> Any:
        inputs = validation.as_inputs(inputs, time_major=False)
        x = tf.transpose(inputs, [1, 0, 2])
        batch, time = tf.shape(inputs)[0], tf.shape(inputs)[1]
        valid = masks.step_mask(mask, sequence_length, batch, time)
        if valid is not None:
            valid = tf.transpose(valid)
        if self.go_backwards:
            x = tf.reverse(x, axis=[0])
            valid = None if valid is None else tf.reverse(valid, axis=[0])

        state = self._initial_state(initial_state, batch, inputs.dtype)
        x, weights = self._dropout(x, batch, training)
        carry = self.semantics == "keras" and not self.zero_output_for_mask
        outputs, state, last_output = rnn.run_masked(
            self.cell, x, valid, state, carry_output=carry, weights=weights
        )
        if self.stateful:
            for variable, value in zip(self.state_variables, state):
                variable.assign(value)
        return self._format(outputs, state, last_output)

    def _initial_state(self, initial_state: Any, batch: Any, dtype: Any):
        if initial_state is not None:
            if len(initial_state) != 2:
                raise ValueError(
                    f"{self.name}: initial_state must be [h, c]; got "
                    f"{len(initial_state)} tensors."
                )
            h, c = initial_state
            return validation.check_state(
                self.cell, (c, h), batch, dtype, "initial_state"
            )
        if self.stateful:
            return LSTMStateTuple(
                *[tf.convert_to_tensor(v) for v in self.state_variables]
            )
        return self.cell.zero_state(batch, dtype)

    def _dropout(self, x: tf.Tensor, batch: Any, training: Any):
        weights = self.cell.recurrent_weights()
        if not training:
            return x, weights
        if self.dropout > 0:
            keep = self._mask([batch, tf.shape(x)[2]], self.dropout, x.dtype)
            x = x * keep[None]
        if self.recurrent_dropout > 0:
            shape = [batch, self.cell.output_size]
            weights["h_dropout_mask"] = self._mask(
                shape, self.recurrent_dropout, x.dtype
            )
        return x, weights

    def _mask(self, shape: Any, rate: float, dtype: Any) -> tf.Tensor:
        ones = tf.ones(shape, dtype)
        return keras.random.dropout(ones, rate, seed=self._seed_generator)

    def _format(self, outputs: tf.Tensor, state: Any, last_output: Any):
        if self.return_sequences:
            output = tf.transpose(outputs, [1, 0, 2])
        elif self.semantics == "keras":
            output = last_output
        else:
            output = state.h
        if self.return_state:
            return [output, state.h, state.c]
        return output

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask, None, None]
        return output_mask

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation,
            kernel_initializer=_serialize(self.kernel_initializer),
            recurrent_initializer=_serialize(self.recurrent_initializer),
            bias_initializer=_serialize(self.bias_initializer),
            unit_forget_bias=self.unit_forget_bias,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            zero_output_for_mask=self.zero_output_for_mask,
            semantics=self.semantics,
            use_peepholes=self.use_peepholes,
            cell_clip=self.cell_clip,
            num_proj=self.num_proj,
            proj_clip=self.proj_clip,
            forget_bias=self.forget_bias,
            seed=self.seed,
        )
        return config


def _serialize(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return keras.initializers.serialize(keras.initializers.get(value))
