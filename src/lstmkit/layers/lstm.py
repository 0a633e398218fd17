"""`lstmkit.layers.LSTM`: a Keras layer on lstmkit's cell and driver."""

import logging
import numbers
from typing import Any

import keras
import tensorflow as tf

from lstmkit.cells import LSTMCell
from lstmkit.keras_cell import KerasLSTMCell
from lstmkit.layers.rnn import RNN

logger = logging.getLogger(__name__)

SEMANTICS = ("keras", "tf1")


@keras.saving.register_keras_serializable(package="lstmkit")
class LSTM(RNN):
    """An LSTM layer with the arguments of `keras.layers.LSTM`.

    It is `lstmkit.layers.RNN` with a cell that it creates itself,
    `lstmkit.KerasLSTMCell` or `lstmkit.LSTMCell`, chosen by `semantics`:

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
            semantics ("tf1" always does). Without `return_sequences` the
            output is then zeros for a row whose last step is masked, as
            in Keras ("tf1" returns the final h).
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
        if semantics not in SEMANTICS:
            raise ValueError(
                f"semantics must be one of {SEMANTICS}; got {semantics!r}."
            )
        for name, rate in (("dropout", dropout),
                           ("recurrent_dropout", recurrent_dropout)):
            number = isinstance(rate, numbers.Real)
            if not number or isinstance(rate, bool) or not 0 <= rate < 1:
                raise ValueError(f"{name} must be in [0, 1); got {rate!r}.")
        cell = _make_cell(
            semantics,
            units,
            activation=activation,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            use_peepholes=use_peepholes,
            cell_clip=cell_clip,
            num_proj=num_proj,
            proj_clip=proj_clip,
            forget_bias=forget_bias,
            # Layer.__init__ resolves the layer's policy the same way.
            dtype=keras.dtype_policies.get(kwargs.get("dtype")),
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            zero_output_for_mask=zero_output_for_mask,
            **kwargs,
        )
        self.units = int(units)
        self.activation = activation
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.unit_forget_bias = unit_forget_bias
        self.dropout = float(dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.semantics = semantics
        self.use_peepholes = use_peepholes
        self.cell_clip = cell_clip
        self.num_proj = num_proj
        self.proj_clip = proj_clip
        self.forget_bias = forget_bias
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    def _carries_output(self) -> bool:
        return self.semantics == "keras" and not self.zero_output_for_mask

    def _last_output(self, state: Any, last_output: tf.Tensor) -> tf.Tensor:
        # The v1 driver returns the final h, which for a row without valid
        # steps is its initial h rather than zeros.
        if self.semantics == "keras":
            return last_output
        return state.h

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

    def get_config(self) -> dict:
        config = super().get_config()
        # The layer creates its cell from the options below.
        del config["cell"]
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

    @classmethod
    def from_config(cls, config: dict) -> "LSTM":
        return cls(**config)


def _make_cell(semantics: str, units: int, **options: Any) -> LSTMCell:
    """Creates the cell of an LSTM layer.

    Args:
        semantics: `"keras"` or `"tf1"`.
        units: size of the cell state.
        **options: the layer's activation, initializer, v1 and `dtype`
            arguments.

    Raises:
        ValueError: a Keras-only initializer argument with "tf1".
    """
    common = dict(
        use_peepholes=options["use_peepholes"],
        cell_clip=options["cell_clip"],
        num_proj=options["num_proj"],
        proj_clip=options["proj_clip"],
        activation=options["activation"],
        dtype=options["dtype"],
        name="lstm_cell",
    )
    forget_bias = options["forget_bias"]
    if semantics == "keras":
        return KerasLSTMCell(
            units,
            kernel_initializer=options["kernel_initializer"],
            recurrent_initializer=options["recurrent_initializer"],
            bias_initializer=options["bias_initializer"],
            unit_forget_bias=options["unit_forget_bias"],
            forget_bias=forget_bias or 0.0,
            **common,
        )
    _check_tf1_arguments(options)
    initializer = None
    if options["kernel_initializer"] != "glorot_uniform":
        initializer = options["kernel_initializer"]
    return LSTMCell(
        units,
        initializer=initializer,
        forget_bias=1.0 if forget_bias is None else forget_bias,
        **common,
    )


def _check_tf1_arguments(options: dict) -> None:
    keras_only = {
        "recurrent_initializer": "orthogonal",
        "bias_initializer": "zeros",
        "unit_forget_bias": True,
    }
    for name, default in keras_only.items():
        value = options[name]
        if value != default:
            raise ValueError(
                f"{name}={value!r} has no effect with semantics='tf1', "
                "whose bias starts at zero and whose kernel covers x and "
                "h together; use semantics='keras' or drop the argument."
            )


def _serialize(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return keras.initializers.serialize(keras.initializers.get(value))
