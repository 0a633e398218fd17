"""Recurrent regularizers on the lstmkit cell interface.

`ZoneoutLSTMCell` and `DropConnectLSTMCell` subclass `lstmkit.LSTMCell` and
keep its variables, so weights move between them and `lstmkit.LSTMCell`
with `set_weights`. `VariationalDropoutCell` wraps any lstmkit cell and
adds no variables of its own. All three run under `lstmkit.dynamic_rnn`,
`lstmkit.bidirectional_dynamic_rnn` and the stacked drivers with lengths
and padding, and importing this module registers them for `keras.saving`
under the package name "lstmkit".

Training mode is the attribute `cell.training` (default False). The
sequence drivers take no `training` argument, so the caller sets the
attribute before a run. Its value is read in Python while a graph is
traced: a `tf.function` traced with one value keeps it until it is traced
again, so set the attribute before the first call of each function, or
use one function per mode. `lstmkit.layers.RNN` sets it from its
`training` call argument for the length of each call. `training` is not
part of `get_config`, so a restored cell starts in inference mode.
"""

import logging
from typing import Any, Callable

import keras
import tensorflow as tf

from lstmkit import validation
from lstmkit.cells import (
    LSTMCell,
    LSTMStateTuple,
    RecurrentCell,
    _check_number,
    takes_dtype_from_inputs,
)

logger = logging.getLogger(__name__)


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

    @property
    def deterministic_step(self) -> bool:
        """False while training with a positive rate: `step` draws masks."""
        active = self.zoneout_c > 0 or self.zoneout_h > 0
        return not (self.training and active)

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


@keras.saving.register_keras_serializable(package="lstmkit")
class VariationalDropoutCell(RecurrentCell):
    """Any lstmkit cell with variational dropout on its inputs and its h.

    Variational dropout is from Gal and Ghahramani, 2016, "A theoretically
    grounded application of dropout in recurrent neural networks"
    (NeurIPS 2016, arXiv:1512.05287). While training, one mask per
    sequence drops input features and one drops units of the previous h
    where h feeds the recurrent matrix products. Every time step of a call
    reuses the same two masks. This is the rule
    of `keras.layers.LSTM(dropout=..., recurrent_dropout=...)` and of
    `keras.layers.GRU`, with one difference. With `recurrent_dropout > 0`,
    Keras 3.15 draws a separate mask for each gate (four for an LSTM, three
    for a GRU), and this cell draws one for all gates, as
    `lstmkit.layers.LSTM` does.

    Equations for one call on inputs `x` `[time, batch, depth]` follow.
    `p` is `dropout`, `q` is `recurrent_dropout`, and `*` is elementwise.

        training:   m_x ~ Bernoulli(1 - p) / (1 - p)   # [batch, depth]
                    m_h ~ Bernoulli(1 - q) / (1 - q)   # [batch, output_size]
                    every step t: the wrapped cell's step on x_t * m_x,
                    with h * m_h in place of the previous h in its
                    recurrent products (weights["h_dropout_mask"] = m_h)
        inference:  the wrapped cell unchanged

    A rate of 0 skips its mask. At inference every call goes to the wrapped
    cell unchanged, so the outputs are the wrapped cell's, up to rounding
    where a driver runs the two on different kernels (`lstmkit.kernels`
    picks a kernel by cell class).

    The masks are drawn before the time loop, in `project_inputs`, because
    that is the only call of the extension point that sees the batch size.
    The input mask multiplies the inputs there. With `recurrent_dropout >
    0`, the recurrent mask is appended to every projected row as its last
    `output_size` columns, and `step` splits it off and passes it to the
    wrapped cell's `step` as `weights["h_dropout_mask"]`. So a driver that
    calls only `project_inputs`, `recurrent_weights` and `step` applies
    both masks, and `step` itself draws nothing. At inference these columns
    are ones, which leave h unchanged. `step` thus depends only on
    `recurrent_dropout` and never reads `training`, so a kernel may trace
    `step` again (for a backward pass) after `training` changed.

    How a cell applies `h_dropout_mask` (`supports_recurrent_dropout`):
        `lstmkit.LSTMCell`, `KerasLSTMCell`, `LayerNormLSTMCell`,
        `CIFGLSTMCell`, `ZoneoutLSTMCell`, `DropConnectLSTMCell`: the h
            in `h @ W_h`. Zoneout mixes in the undropped previous h.
        `lstmkit.GRUCell`, `V1GRUCell`: the h in every recurrent product,
            also `r * h` before the candidate's product; the interpolation
            with the update gate reads the undropped h.
        Other cells: only `dropout` works unless the cell's `step` applies
            the mask and the class sets `supports_recurrent_dropout = True`.

    Variables: those of the wrapped cell, shared with it, in its order. The
    seed generator's state is a variable but not a weight.

    Attributes:
        cell: the wrapped cell.
        training: apply dropout when True, run the wrapped cell unchanged
            when False (the default). Setting it also sets `training` on
            the wrapped cell when that cell has the attribute. Set it
            before tracing, see the module docstring.

    Args:
        cell: an lstmkit cell, such as `lstmkit.LSTMCell` or
            `lstmkit.GRUCell`.
        dropout: fraction of input features dropped while training, in
            `[0, 1)`.
        recurrent_dropout: fraction of the units of the previous h dropped
            before the recurrent products while training, in `[0, 1)`.
        seed: optional int seed of the masks. A seeded cell draws the same
            sequence of masks in every program run.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).
            Without `dtype` the wrapper takes the wrapped cell's.

    Raises:
        TypeError: `cell` is not an lstmkit cell, or a rate is not a number.
        ValueError: a rate is outside `[0, 1)`, or `recurrent_dropout > 0`
            for a cell whose `step` does not read `h_dropout_mask`.

    Example:
        >>> import lstmkit, tensorflow as tf
        >>> cell = lstmkit.VariationalDropoutCell(
        ...     lstmkit.LSTMCell(8), dropout=0.25, recurrent_dropout=0.25)
        >>> cell.training = True
        >>> outputs, state = lstmkit.dynamic_rnn(
        ...     cell, tf.ones([2, 5, 3]), sequence_length=[5, 2])
        >>> outputs.shape
        TensorShape([2, 5, 8])
    """

    def __init__(
        self,
        cell: RecurrentCell,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        validation.check_cell(cell)
        if kwargs.get("dtype") is None and not takes_dtype_from_inputs(cell):
            kwargs["dtype"] = cell.dtype_policy
        kwargs.setdefault("name", "variational_dropout_cell")
        super().__init__(**kwargs)
        self.dropout = _check_rate("dropout", dropout)
        self.recurrent_dropout = _check_rate(
            "recurrent_dropout", recurrent_dropout
        )
        _check_supports_recurrent_dropout(cell, self.recurrent_dropout)
        self.cell = cell
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)
        self._training = False

    @property
    def training(self) -> bool:
        return self._training

    @training.setter
    def training(self, value: bool) -> None:
        self._training = bool(value)
        if hasattr(self.cell, "training"):
            self.cell.training = value

    @property
    def supports_recurrent_dropout(self) -> bool:
        return getattr(self.cell, "supports_recurrent_dropout", False)

    @property
    def deterministic_step(self) -> bool:
        """The wrapped cell's value, because `step` itself draws nothing."""
        return getattr(self.cell, "deterministic_step", True)

    @property
    def state_size(self) -> Any:
        return self.cell.state_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def state_dtypes(self, dtype: Any) -> Any:
        """Returns the wrapped cell's state dtypes for a loop in `dtype`."""
        return self.cell.state_dtypes(dtype)

    @property
    def input_depth(self) -> int | None:
        """Input depth of the wrapped cell, `None` before it is built."""
        return getattr(self.cell, "input_depth", None)

    def build(self, input_shape: Any) -> None:
        """Builds the wrapped cell, in this wrapper's dtype if it had none."""
        if not self.cell.built:
            if takes_dtype_from_inputs(self.cell):
                self.cell.dtype_policy = self.dtype_policy
            self.cell.build(input_shape)
        self.built = True

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """Draws the masks and runs the wrapped cell's input projection.

        Args:
            inputs: `[..., batch, depth]`, typically `[time, batch, depth]`.

        Returns:
            The wrapped cell's `[..., batch, projected_depth]`. With
            `recurrent_dropout > 0`, `[..., batch, projected_depth +
            output_size]`, whose last `output_size` columns contain the
            recurrent mask (ones at inference), equal at every leading
            index.

        Raises:
            ValueError: `inputs` has fewer than two dimensions.
        """
        inputs = tf.convert_to_tensor(inputs)
        if inputs.shape.rank is not None and inputs.shape.rank < 2:
            raise ValueError(
                f"{self.name} takes inputs [..., batch, depth]; got shape "
                f"{inputs.shape}."
            )
        batch = tf.shape(inputs)[-2]

        if self.training and self.dropout > 0:
            shape = tf.stack([batch, tf.shape(inputs)[-1]])
            inputs = inputs * self.draw_mask(shape, self.dropout, inputs.dtype)
        projected = self.cell.project_inputs(inputs)
        if self.recurrent_dropout > 0:
            projected = self._append_recurrent_mask(projected, batch)
        return projected

    def _append_recurrent_mask(
        self, projected: tf.Tensor, batch: tf.Tensor
    ) -> tf.Tensor:
        width = self.cell.output_size
        shape = tf.stack([batch, width])
        dtype = projected.dtype
        if self.training:
            mask = self.draw_mask(shape, self.recurrent_dropout, dtype)
        else:
            mask = tf.ones(shape, dtype)
        leading = tf.shape(projected)[:-1]
        tiled = tf.broadcast_to(mask, tf.concat([leading, [width]], 0))
        return tf.concat([projected, tiled], axis=-1)

    def draw_mask(
        self, shape: Any, rate: float, dtype: tf.DType
    ) -> tf.Tensor:
        """Draws one dropout mask.

        Args:
            shape: int32 `[2]`, `[batch, size]`.
            rate: probability of a zero.
            dtype: dtype of the mask.

        Returns:
            `[batch, size]` of zeros (with probability `rate`) and
            `1 / (1 - rate)`.
        """
        ones = tf.ones(shape, dtype)
        return keras.random.dropout(ones, rate, seed=self._seed_generator)

    def recurrent_weights(self) -> Any:
        """Returns the wrapped cell's `recurrent_weights()` unchanged."""
        return self.cell.recurrent_weights()

    def step(
        self, projected: tf.Tensor, state: Any, weights: Any = None
    ) -> tuple[tf.Tensor, Any]:
        """Runs the wrapped cell's step with this call's recurrent mask.

        Args:
            projected: `[batch, projected_depth]` from `project_inputs`,
                with the recurrent mask as its last `output_size` columns
                when `recurrent_dropout > 0`.
            state: the previous state, structured as `state_size`.
            weights: from `recurrent_weights()`; read here when `None`.

        Returns:
            The wrapped cell's `(output, new_state)`.
        """
        if weights is None:
            weights = self.recurrent_weights()
        if self.recurrent_dropout > 0:
            width = self.cell.output_size
            mask = projected[:, -width:]
            projected = projected[:, :-width]
            weights = self._with_recurrent_mask(weights, mask)
        return self.cell.step(projected, state, weights)

    def _with_recurrent_mask(self, weights: Any, mask: tf.Tensor) -> dict:
        if not isinstance(weights, dict):
            raise TypeError(
                f"{type(self.cell).__name__}.recurrent_weights() returned a "
                f"{type(weights).__name__}, but recurrent dropout adds "
                "'h_dropout_mask' to it and needs a dict. Return the weights "
                "in a dict, or use recurrent_dropout=0."
            )
        if "h_dropout_mask" in weights:
            # A mask that arrives in `weights`, from an outer
            # VariationalDropoutCell, applies as well.
            mask = mask * weights["h_dropout_mask"]
        return {**weights, "h_dropout_mask": mask}

    def normalize_state(self, state: Any) -> Any:
        """Converts a state as the wrapped cell does."""
        return self.cell.normalize_state(state)

    def get_config(self) -> dict:
        config = super().get_config()
        if self._dtype_from_inputs and not self.built:
            config["dtype"] = None
        config.update(
            cell=keras.saving.serialize_keras_object(self.cell),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "VariationalDropoutCell":
        config = dict(config)
        config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        return cls(**config)


def _check_supports_recurrent_dropout(cell: Any, rate: float) -> None:
    if rate == 0 or getattr(cell, "supports_recurrent_dropout", False):
        return
    raise ValueError(
        f"recurrent_dropout={rate!r} needs a cell whose step applies "
        f"weights['h_dropout_mask'], and {type(cell).__name__} does not. "
        "Use recurrent_dropout=0 (dropout on the inputs still works), or "
        "make its step multiply the previous h by that mask before each "
        "recurrent product and set supports_recurrent_dropout = True on "
        "the class."
    )
