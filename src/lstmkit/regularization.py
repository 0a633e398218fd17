"""Recurrent regularizers on the lstmkit cell interface: zoneout, DropConnect.

Both cells subclass `lstmkit.LSTMCell` and keep its variables, so weights
move between them and `lstmkit.LSTMCell` with `set_weights`. They run under
`lstmkit.dynamic_rnn` and `lstmkit.bidirectional_dynamic_rnn` with lengths
and padding, and importing this module registers both classes for
`keras.saving` under the package name "lstmkit".

Training mode is the attribute `cell.training` (default False). The
sequence drivers take no `training` argument, so the caller sets the
attribute before a run. Its value is read in Python while a graph is
traced: a `tf.function` traced with one value keeps it until it is traced
again, so set the attribute before the first call of each function, or
use one function per mode. `training` is not part of `get_config`, so a
restored cell starts in inference mode.
"""

from typing import Any, Callable

import keras
import tensorflow as tf

from lstmkit.cells import LSTMCell, LSTMStateTuple, _check_number


def _check_rate(name: str, value: Any) -> float:
    """Returns `value` as a float after checking that it is in `[0, 1)`."""
    _check_number(name, value)
    if value is None or not 0 <= value < 1:
        raise ValueError(
            f"{name} must be a number in [0, 1); got {value!r}."
        )
    return float(value)


@keras.saving.register_keras_serializable(package="lstmkit")
class ZoneoutLSTMCell(LSTMCell):
    """The v1 LSTM with zoneout on the cell state and on the output state.

    Zoneout is from Krueger et al., 2016, "Zoneout: Regularizing RNNs by
    randomly preserving hidden activations". While training, each unit of
    c and of h keeps its previous value with probability `zoneout_c` or
    `zoneout_h`, with a new random mask at every step and for every row. At
    inference each unit is the expected value of that choice.

    Equations for one step follow. `c_new` and `h_new` are the new state of
    `lstmkit.LSTMCell` (after its clipping and projection), and `*` is
    elementwise.

        c_new, h_new = LSTMCell.step(x, c, h)
        training:   k_c ~ Bernoulli(zoneout_c)   # [batch, num_units]
                    k_h ~ Bernoulli(zoneout_h)   # [batch, h_depth]
                    c' = k_c * c + (1 - k_c) * c_new
                    h' = k_h * h + (1 - k_h) * h_new
        inference:  c' = zoneout_c * c + (1 - zoneout_c) * c_new
                    h' = zoneout_h * h + (1 - zoneout_h) * h_new
        output = h', state = LSTMStateTuple(c', h')

    The output is the zoned-out h', so it repeats the previous output at
    the kept units. A rate of 0 skips that part, so with both rates 0 the
    cell computes exactly what `lstmkit.LSTMCell` computes. The masks come
    from `tf.random.uniform` inside `step`, which draws new values at every
    iteration of the time loop, also under XLA.

    Variables, in `cell.weights` order (those of `lstmkit.LSTMCell`):
        kernel: `[input_depth + h_depth, 4 * num_units]`, rows for x first,
            then rows for h; column blocks i, j, f, o.
        bias: `[4 * num_units]`, blocks i, j, f, o.
        w_f_diag, w_i_diag, w_o_diag: `[num_units]` each, with peepholes.
        projection_kernel: `[num_units, num_proj]`, with `num_proj`.

    Attributes:
        training: draw random masks when True, use the expectation when
            False (the default). Set it before tracing, see the module
            docstring.

    Args:
        num_units: size of the cell state.
        zoneout_c: probability that a unit of c keeps its previous value,
            in `[0, 1)`.
        zoneout_h: probability that a unit of h keeps its previous value,
            in `[0, 1)`.
        use_peepholes, cell_clip, initializer, num_proj, proj_clip,
            forget_bias, activation: as in `lstmkit.LSTMCell`.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Raises:
        TypeError: a rate is not a number.
        ValueError: a rate is outside `[0, 1)`.

    Example:
        >>> import lstmkit, tensorflow as tf
        >>> from lstmkit.regularization import ZoneoutLSTMCell
        >>> cell = ZoneoutLSTMCell(8, zoneout_c=0.5, zoneout_h=0.05)
        >>> cell.training = True
        >>> outputs, state = lstmkit.dynamic_rnn(
        ...     cell, tf.zeros([2, 5, 3]), sequence_length=[5, 2])
        >>> outputs.shape
        TensorShape([2, 5, 8])
    """

    def __init__(
        self,
        num_units: int,
        zoneout_c: float = 0.0,
        zoneout_h: float = 0.0,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        initializer: Any = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        forget_bias: float = 1.0,
        activation: str | Callable | None = None,
        **kwargs,
    ):
        kwargs.setdefault("name", "zoneout_lstm_cell")
        super().__init__(
            num_units,
            use_peepholes=use_peepholes,
            cell_clip=cell_clip,
            initializer=initializer,
            num_proj=num_proj,
            proj_clip=proj_clip,
            forget_bias=forget_bias,
            activation=activation,
            **kwargs,
        )
        self.zoneout_c = _check_rate("zoneout_c", zoneout_c)
        self.zoneout_h = _check_rate("zoneout_h", zoneout_h)
        self.training = False

    def step(
        self,
        projected: tf.Tensor,
        state: LSTMStateTuple,
        weights: dict[str, tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, LSTMStateTuple]:
        """Runs one LSTM step, then applies zoneout to c and h.

        Args:
            projected: `[batch, 4 * num_units]` from `project_inputs`.
            state: `LSTMStateTuple(c [batch, num_units], h [batch, h_depth])`.
            weights: from `recurrent_weights()`; read here when `None`.

        Returns:
            `(h', LSTMStateTuple(c', h'))` with h' `[batch, h_depth]`.
        """
        c_prev, h_prev = state
        _, (c_new, h_new) = super().step(projected, state, weights)
        c = self.zone_out(c_prev, c_new, self.zoneout_c)
        h = self.zone_out(h_prev, h_new, self.zoneout_h)
        return h, LSTMStateTuple(c, h)

    def zone_out(
        self, previous: tf.Tensor, new: tf.Tensor, rate: float
    ) -> tf.Tensor:
        """Mixes the previous and the new value of one state part.

        Args:
            previous: `[batch, size]`, the value before this step.
            new: `[batch, size]`, the value that the LSTM step computed.
            rate: probability of keeping `previous`.

        Returns:
            `[batch, size]`: per unit `previous` with probability `rate`,
            else `new`, while training, and
            `rate * previous + (1 - rate) * new` at inference.
        """
        if rate == 0:
            return new
        if self.training:
            draw = tf.random.uniform(tf.shape(new), dtype=new.dtype)
            return tf.where(draw < rate, previous, new)
        return rate * previous + (1 - rate) * new

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(zoneout_c=self.zoneout_c, zoneout_h=self.zoneout_h)
        return config


@keras.saving.register_keras_serializable(package="lstmkit")
class DropConnectLSTMCell(LSTMCell):
    """The v1 LSTM with DropConnect on the recurrent weights.

    While training, the h rows of the kernel (`W_h`) are multiplied by one
    Bernoulli mask, scaled so that each entry keeps its expected value. The
    mask is drawn in `recurrent_weights()`, which the sequence drivers call
    once per run, so every step of every row in a batch uses the same
    dropped connections, as in the weight drop of AWD-LSTM. The input rows
    `W_x`, the bias, the peepholes and the projection are never dropped.

    Equations for one run (`*` is elementwise, `p` is
    `recurrent_dropconnect`):

        training:   M ~ Bernoulli(1 - p)         # [h_depth, 4 * num_units]
                    W_h' = W_h * M / (1 - p)
        inference:  W_h' = W_h
        every step: the `lstmkit.LSTMCell` step with W_h' in place of W_h

    At inference, and with `p = 0`, the cell computes exactly what
    `lstmkit.LSTMCell` computes.

    Variables, in `cell.weights` order (those of `lstmkit.LSTMCell`):
        kernel: `[input_depth + h_depth, 4 * num_units]`, rows for x first,
            then rows for h; column blocks i, j, f, o.
        bias: `[4 * num_units]`, blocks i, j, f, o.
        w_f_diag, w_i_diag, w_o_diag: `[num_units]` each, with peepholes.
        projection_kernel: `[num_units, num_proj]`, with `num_proj`.

    Attributes:
        training: drop connections when True, use `W_h` unchanged when
            False (the default). Set it before tracing, see the module
            docstring.

    Args:
        num_units: size of the cell state.
        recurrent_dropconnect: probability that an entry of `W_h` is
            dropped while training, in `[0, 1)`.
        use_peepholes, cell_clip, initializer, num_proj, proj_clip,
            forget_bias, activation: as in `lstmkit.LSTMCell`.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Raises:
        TypeError: the rate is not a number.
        ValueError: the rate is outside `[0, 1)`.

    Example:
        >>> import lstmkit, tensorflow as tf
        >>> from lstmkit.regularization import DropConnectLSTMCell
        >>> cell = DropConnectLSTMCell(8, recurrent_dropconnect=0.5)
        >>> cell.training = True
        >>> outputs, state = lstmkit.dynamic_rnn(
        ...     cell, tf.zeros([2, 5, 3]), sequence_length=[5, 2])
        >>> outputs.shape
        TensorShape([2, 5, 8])
    """

    def __init__(
        self,
        num_units: int,
        recurrent_dropconnect: float = 0.0,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        initializer: Any = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        forget_bias: float = 1.0,
        activation: str | Callable | None = None,
        **kwargs,
    ):
        kwargs.setdefault("name", "drop_connect_lstm_cell")
        super().__init__(
            num_units,
            use_peepholes=use_peepholes,
            cell_clip=cell_clip,
            initializer=initializer,
            num_proj=num_proj,
            proj_clip=proj_clip,
            forget_bias=forget_bias,
            activation=activation,
            **kwargs,
        )
        self.recurrent_dropconnect = _check_rate(
            "recurrent_dropconnect", recurrent_dropconnect
        )
        self.training = False

    def recurrent_weights(self) -> dict[str, tf.Tensor]:
        """Reads the recurrent weights and, while training, drops `W_h`.

        Returns:
            `LSTMCell.recurrent_weights()`, with `kernel_h`
            `[h_depth, 4 * num_units]` multiplied by a new scaled Bernoulli
            mask while training and the rate is positive.
        """
        weights = super().recurrent_weights()
        rate = self.recurrent_dropconnect
        if self.training and rate > 0:
            kernel_h = weights["kernel_h"]
            draw = tf.random.uniform(tf.shape(kernel_h), dtype=kernel_h.dtype)
            mask = tf.cast(draw >= rate, kernel_h.dtype) / (1 - rate)
            weights["kernel_h"] = kernel_h * mask
        return weights

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(recurrent_dropconnect=self.recurrent_dropconnect)
        return config
