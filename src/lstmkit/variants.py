"""LSTM variants on the lstmkit cell interface: layer norm and CIFG.

Both cells subclass `lstmkit.LSTMCell` and change only the step math, so
`lstmkit.dynamic_rnn` and `lstmkit.bidirectional_dynamic_rnn` run them with
lengths, padding and both directions, and Keras saving works through
`get_config`. Importing this module registers both classes for
`keras.saving` under the package name "lstmkit".
"""

from typing import Any, Callable

import keras
import tensorflow as tf

from lstmkit.cells import LSTMCell, LSTMStateTuple, _check_number, as_dtype

LAYER_NORM_PLACEMENTS = ("gates", "separate", None)


def layer_norm(
    x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float
) -> tf.Tensor:
    """Normalizes `x` over its last axis, then scales and shifts it.

    Args:
        x: `[..., depth]`.
        gamma: `[depth]` gain.
        beta: `[depth]` shift.
        epsilon: added to the variance before the square root.

    Returns:
        `(x - mean) / sqrt(variance + epsilon) * gamma + beta`, same shape
        as `x`, with mean and (biased) variance over the last axis.
    """
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta


@keras.saving.register_keras_serializable(package="lstmkit")
class LayerNormLSTMCell(LSTMCell):
    """The v1 LSTM with layer normalization.

    Layer normalization is from Ba et al., 2016, "Layer normalization".

    `norm` places the normalization of the gate pre-activations, and
    `norm_cell` adds one more on the new cell state. The two combine freely.
    Layer norm here is `LN(v) = (v - mean(v)) / sqrt(var(v) + epsilon) *
    gamma + beta` over the last axis, with the biased variance.

    Equations for one step follow. `W_x` and `W_h` are as in
    `lstmkit.LSTMCell`, the block order is i, j, f, o, and `[...]` parts
    apply only with the matching option.

        norm="gates":     a = x @ W_x + h @ W_h
                          z = concat(LN_g(a_g) for g in i, j, f, o) + bias
        norm="separate":  z = LN_x(x @ W_x) + LN_h(h @ W_h) + bias
        norm=None:        z = x @ W_x + h @ W_h + bias
        i, j, f, o = split(z, 4)
        c' = sigmoid(f + forget_bias [+ w_f_diag * c]) * c
             + sigmoid(i [+ w_i_diag * c]) * activation(j)
        c' = LN_c(c')                            # norm_cell=True
        c' = clip(c', -cell_clip, cell_clip)     # if cell_clip is set
        m = sigmoid(o [+ w_o_diag * c']) * activation(c')
        m = clip(m @ projection_kernel, -proj_clip, proj_clip)  # if num_proj
        output = m, state = LSTMStateTuple(c', m)

    With "gates" each of the four blocks is normalized over its own
    `num_units` columns with its own gain and shift. With "separate" each
    product is normalized over all `4 * num_units` columns, as in Ba et al.
    2016's LSTM equations and in TF Addons' `LayerNormLSTMCell`. Because
    the input product is normalized independently of h, `project_inputs`
    computes `LN_x(x @ W_x) + bias` for all steps at once.

    The normalized cell state is the state passed to the next step, as in
    TF Addons' `LayerNormLSTMCell`. This module has no option that
    normalizes only the tanh input and keeps c' unnormalized.

    `norm="separate", norm_cell=True` is TF Addons' arrangement. TF Addons'
    cell uses Keras' gate order i, f, c, o and no run-time forget bias, so
    its weights do not load here unchanged.

    `bias` is added after the normalization, so it adds the same kind of
    per-unit offset as the shifts. It is kept so that the first two
    variables have `lstmkit.LSTMCell`'s names and shapes.

    Variables, in `cell.weights` order:
        kernel: `[input_depth + h_depth, 4 * num_units]`, as in
            `lstmkit.LSTMCell`.
        bias: `[4 * num_units]`, blocks i, j, f, o.
        w_f_diag, w_i_diag, w_o_diag: `[num_units]` each, with peepholes.
        projection_kernel: `[num_units, num_proj]`, with `num_proj`.
        gates_gamma, gates_beta: `[4 * num_units]` each, blocks i, j, f, o,
            with `norm="gates"`.
        input_gamma, input_beta, recurrent_gamma, recurrent_beta:
            `[4 * num_units]` each, with `norm="separate"`.
        cell_gamma, cell_beta: `[num_units]` each, with `norm_cell`.
    Every gamma starts at 1 and every beta at 0.

    Args:
        num_units: size of the cell state.
        norm: "gates", "separate" or None (no normalization of the gate
            pre-activations).
        norm_cell: normalize the new cell state.
        norm_epsilon: added to each variance before the square root. The
            default 1e-3 is also the default of
            `keras.layers.LayerNormalization` (Keras 3.15).
        use_peepholes, cell_clip, initializer, num_proj, proj_clip,
            forget_bias, activation: as in `lstmkit.LSTMCell`.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Raises:
        ValueError: `norm` is not one of "gates", "separate" or None, or
            `norm_epsilon` is not positive.
        TypeError: `norm_cell` is not a bool.

    Example:
        >>> import lstmkit, tensorflow as tf
        >>> from lstmkit.variants import LayerNormLSTMCell
        >>> cell = LayerNormLSTMCell(8, norm="separate", norm_cell=True)
        >>> outputs, state = lstmkit.dynamic_rnn(
        ...     cell, tf.zeros([2, 5, 3]), sequence_length=[5, 2])
        >>> outputs.shape
        TensorShape([2, 5, 8])
    """

    def __init__(
        self,
        num_units: int,
        norm: str | None = "gates",
        norm_cell: bool = True,
        norm_epsilon: float = 1e-3,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        initializer: Any = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        forget_bias: float = 1.0,
        activation: str | Callable | None = None,
        **kwargs,
    ):
        kwargs.setdefault("name", "layer_norm_lstm_cell")
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
        if norm == "cell":
            raise ValueError(
                'norm="cell" is not a placement. Normalize the cell state '
                'with norm_cell=True and set norm to "gates", "separate" '
                "or None."
            )
        if norm not in LAYER_NORM_PLACEMENTS:
            raise ValueError(
                f'norm must be "gates", "separate" or None; got {norm!r}.'
            )
        if not isinstance(norm_cell, bool):
            raise TypeError(
                f"norm_cell must be a bool; got {type(norm_cell).__name__} "
                f"{norm_cell!r}."
            )
        _check_number("norm_epsilon", norm_epsilon)
        if norm_epsilon is None or not norm_epsilon > 0:
            raise ValueError(
                f"norm_epsilon must be a positive number; got "
                f"{norm_epsilon!r}."
            )
        self.norm = norm
        self.norm_cell = norm_cell
        self.norm_epsilon = float(norm_epsilon)

    def build(self, input_shape: Any) -> None:
        """Creates the LSTM variables, then the gains and shifts."""
        super().build(input_shape)
        if self.norm == "gates":
            self.gates_gamma, self.gates_beta = self._add_norm("gates", 4)
        elif self.norm == "separate":
            self.input_gamma, self.input_beta = self._add_norm("input", 4)
            self.recurrent_gamma, self.recurrent_beta = self._add_norm(
                "recurrent", 4
            )
        if self.norm_cell:
            self.cell_gamma, self.cell_beta = self._add_norm("cell", 1)

    def _add_norm(
        self, prefix: str, blocks: int
    ) -> tuple[keras.Variable, keras.Variable]:
        shape = (blocks * self.num_units,)
        gamma = self.add_weight(
            name=f"{prefix}_gamma", shape=shape, initializer="ones"
        )
        beta = self.add_weight(
            name=f"{prefix}_beta", shape=shape, initializer="zeros"
        )
        return gamma, beta

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """Computes the part of `z` that depends only on x, for all rows.

        Args:
            inputs: `[..., input_depth]`.

        Returns:
            `[..., 4 * num_units]`, blocks i, j, f, o: `x @ W_x` with
            "gates" (normalized in `step` together with `h @ W_h`),
            `LN_x(x @ W_x) + bias` with "separate", and
            `x @ W_x + bias` with None.
        """
        if self.norm is None:
            return super().project_inputs(inputs)
        kernel_x = self.read_weight(self.kernel)[: self.input_depth]
        flat = tf.reshape(inputs, [-1, self.input_depth])
        projected = tf.matmul(flat, kernel_x)
        if self.norm == "separate":
            # Normalized in cell_state_dtype (float32 under mixed
            # precision) and stored in the compute dtype.
            normalized = layer_norm(
                as_dtype(projected, self.cell_state_dtype),
                self.read_gate_weight(self.input_gamma),
                self.read_gate_weight(self.input_beta),
                self.norm_epsilon,
            )
            normalized = tf.nn.bias_add(
                normalized, self.read_gate_weight(self.bias)
            )
            projected = as_dtype(normalized, projected.dtype)
        leading = tf.shape(inputs)[:-1]
        return tf.reshape(
            projected, tf.concat([leading, [4 * self.num_units]], 0)
        )

    def recurrent_weights(self) -> dict[str, tf.Tensor]:
        """Reads the LSTM weights of `step`, then the gains and shifts.

        Returns:
            `LSTMCell.recurrent_weights()` plus `bias`, `gates_gamma` and
            `gates_beta` with "gates", `recurrent_gamma` and
            `recurrent_beta` with "separate", and `cell_gamma` and
            `cell_beta` with `norm_cell`.
        """
        weights = super().recurrent_weights()
        names = []
        if self.norm == "gates":
            names += ["bias", "gates_gamma", "gates_beta"]
        elif self.norm == "separate":
            names += ["recurrent_gamma", "recurrent_beta"]
        if self.norm_cell:
            names += ["cell_gamma", "cell_beta"]
        for name in names:
            weights[name] = self.read_gate_weight(getattr(self, name))
        return weights

    def gate_preactivations(
        self,
        projected: tf.Tensor,
        h_input: tf.Tensor,
        weights: dict[str, tf.Tensor],
    ) -> tf.Tensor:
        """Computes `z` `[batch, 4 * num_units]` from the projected x and h.

        Args:
            projected: `[batch, 4 * num_units]` from `project_inputs`.
            h_input: `[batch, h_depth]`, the previous h after any dropout.
            weights: from `recurrent_weights()`.

        Returns:
            `z`, blocks i, j, f, o, before the forget bias and peepholes,
            in `cell_state_dtype`, in which the layer norms also run.
        """
        dtype = self.cell_state_dtype
        recurrent = tf.matmul(h_input, weights["kernel_h"])
        if self.norm == "separate":
            recurrent = layer_norm(
                as_dtype(recurrent, dtype),
                weights["recurrent_gamma"],
                weights["recurrent_beta"],
                self.norm_epsilon,
            )
            return as_dtype(projected, dtype) + recurrent
        z = as_dtype(projected + recurrent, dtype)
        if self.norm != "gates":
            return z
        # Normalize each gate block over its own num_units columns.
        units = self.num_units
        blocks = tf.reshape(z, [-1, 4, units])
        gamma = tf.reshape(weights["gates_gamma"], [4, units])
        beta = tf.reshape(weights["gates_beta"], [4, units])
        blocks = layer_norm(blocks, gamma, beta, self.norm_epsilon)
        z = tf.reshape(blocks, [-1, 4 * units])
        return tf.nn.bias_add(z, weights["bias"])

    def step(
        self,
        projected: tf.Tensor,
        state: LSTMStateTuple,
        weights: dict[str, tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, LSTMStateTuple]:
        """Runs the recurrent part of one layer-normalized LSTM step.

        Args:
            projected: `[batch, 4 * num_units]` from `project_inputs`.
            state: `LSTMStateTuple(c [batch, num_units], h [batch, h_depth])`.
            weights: from `recurrent_weights()`, or `None` to read them. An
                optional `h_dropout_mask` `[batch, h_depth]` entry multiplies
                the previous h before the recurrent product.

        Returns:
            `(m, LSTMStateTuple(c', m))` with m `[batch, h_depth]`.
        """
        if weights is None:
            weights = self.recurrent_weights()
        c_prev, h_prev = state
        h_input = h_prev
        if "h_dropout_mask" in weights:
            h_input = h_prev * weights["h_dropout_mask"]
        z = self.gate_preactivations(projected, h_input, weights)
        i, j, f, o = self.split_gates(as_dtype(z, c_prev.dtype))

        forget_input = f + self.forget_bias
        input_gate_input = i
        if self.use_peepholes:
            forget_input += weights["w_f_diag"] * c_prev
            input_gate_input += weights["w_i_diag"] * c_prev
        c = tf.sigmoid(forget_input) * c_prev + tf.sigmoid(
            input_gate_input
        ) * self.activation(j)
        if self.norm_cell:
            c = layer_norm(
                c,
                weights["cell_gamma"],
                weights["cell_beta"],
                self.norm_epsilon,
            )
        if self.cell_clip is not None:
            c = tf.clip_by_value(c, -self.cell_clip, self.cell_clip)
        return _lstm_output(self, c, o, weights, projected.dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            norm=self.norm,
            norm_cell=self.norm_cell,
            norm_epsilon=self.norm_epsilon,
        )
        return config


@keras.saving.register_keras_serializable(package="lstmkit")
class CIFGLSTMCell(LSTMCell):
    """An LSTM with coupled input and forget gates (CIFG).

    The input gate is `1 - forget gate`, so the cell has three weight blocks
    instead of four.

    Equations for one step follow. `W_x` are the first `input_depth` rows
    of `kernel` and `W_h` the rest, and `[...]` parts apply only with
    peepholes.

        z = x @ W_x + h @ W_h + bias             # [batch, 3 * num_units]
        j, f, o = split(z, 3)
        g = sigmoid(f + forget_bias [+ w_f_diag * c])
        c' = g * c + (1 - g) * activation(j)
        c' = clip(c', -cell_clip, cell_clip)     # if cell_clip is set
        m = sigmoid(o [+ w_o_diag * c']) * activation(c')
        m = clip(m @ projection_kernel, -proj_clip, proj_clip)  # if num_proj
        output = m, state = LSTMStateTuple(c', m)

    `forget_bias` is added at every step and never stored, as in
    `lstmkit.LSTMCell`.

    Variables, in `cell.weights` order:
        kernel: `[input_depth + h_depth, 3 * num_units]`, rows for x first,
            then rows for h; column blocks j, f, o.
        bias: `[3 * num_units]`, blocks j, f, o, starting at zero.
        w_f_diag, w_o_diag: `[num_units]` each, with peepholes. There is no
            input-gate peephole because there is no separate input gate.
        projection_kernel: `[num_units, num_proj]`, with `num_proj`.

    The default initialization is `lstmkit.LSTMCell`'s, with the kernel's
    Glorot limit computed over `3 * num_units` columns.

    Args:
        num_units, use_peepholes, cell_clip, initializer, num_proj,
            proj_clip, forget_bias, activation: as in `lstmkit.LSTMCell`.
        **kwargs: passed to `keras.layers.Layer` (`name`, `dtype`, ...).
    """

    def __init__(self, num_units: int, **kwargs):
        kwargs.setdefault("name", "cifg_lstm_cell")
        super().__init__(num_units, **kwargs)

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
            shape=(self.input_depth + self.output_size, 3 * units),
            initializer=self._weight_initializer(),
        )
        self.bias = self.add_weight(
            name="bias", shape=(3 * units,), initializer="zeros"
        )
        if self.use_peepholes:
            self.w_f_diag = self._add_peephole("w_f_diag")
            self.w_o_diag = self._add_peephole("w_o_diag")
        if self.num_proj is not None:
            self.projection_kernel = self.add_weight(
                name="projection_kernel",
                shape=(units, self.num_proj),
                initializer=self._weight_initializer(),
            )
        self.built = True

    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """Computes `x @ W_x + bias` for all rows at once.

        Args:
            inputs: `[..., input_depth]`.

        Returns:
            `[..., 3 * num_units]`, blocks j, f, o.
        """
        kernel_x = self.read_weight(self.kernel)[: self.input_depth]
        flat = tf.reshape(inputs, [-1, self.input_depth])
        bias = self.read_weight(self.bias)
        projected = tf.nn.bias_add(tf.matmul(flat, kernel_x), bias)
        leading = tf.shape(inputs)[:-1]
        return tf.reshape(
            projected, tf.concat([leading, [3 * self.num_units]], 0)
        )

    def recurrent_weights(self) -> dict[str, tf.Tensor]:
        """Reads the h rows of the kernel, the peepholes and the projection.

        Returns:
            `{"kernel_h": [h_depth, 3 * num_units]}`, plus `w_f_diag` and
            `w_o_diag` with peepholes and `projection_kernel` with
            `num_proj`.
        """
        weights = {
            "kernel_h": self.read_weight(self.kernel)[self.input_depth :]
        }
        if self.use_peepholes:
            weights["w_f_diag"] = self.read_gate_weight(self.w_f_diag)
            weights["w_o_diag"] = self.read_gate_weight(self.w_o_diag)
        if self.num_proj is not None:
            weights["projection_kernel"] = self.read_weight(
                self.projection_kernel
            )
        return weights

    def split_gates(self, z: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Splits `[batch, 3 * num_units]` into blocks j, f, o."""
        return tuple(tf.split(z, 3, axis=1))

    def step(
        self,
        projected: tf.Tensor,
        state: LSTMStateTuple,
        weights: dict[str, tf.Tensor] | None = None,
    ) -> tuple[tf.Tensor, LSTMStateTuple]:
        """Runs the recurrent part of one CIFG step.

        Args:
            projected: `[batch, 3 * num_units]` from `project_inputs`.
            state: `LSTMStateTuple(c [batch, num_units], h [batch, h_depth])`.
            weights: from `recurrent_weights()`, or `None` to read them. An
                optional `h_dropout_mask` `[batch, h_depth]` entry multiplies
                the previous h before the recurrent product.

        Returns:
            `(m, LSTMStateTuple(c', m))` with m `[batch, h_depth]`.
        """
        if weights is None:
            weights = self.recurrent_weights()
        c_prev, h_prev = state
        h_input = h_prev
        if "h_dropout_mask" in weights:
            h_input = h_prev * weights["h_dropout_mask"]
        z = projected + tf.matmul(h_input, weights["kernel_h"])
        # The gates and c are computed in c's dtype, as in LSTMCell.step.
        j, f, o = self.split_gates(as_dtype(z, c_prev.dtype))

        forget_input = f + self.forget_bias
        if self.use_peepholes:
            forget_input += weights["w_f_diag"] * c_prev
        forget_gate = tf.sigmoid(forget_input)
        c = forget_gate * c_prev + (1 - forget_gate) * self.activation(j)
        if self.cell_clip is not None:
            c = tf.clip_by_value(c, -self.cell_clip, self.cell_clip)
        return _lstm_output(self, c, o, weights, projected.dtype)


def _lstm_output(
    cell: LSTMCell,
    c: tf.Tensor,
    o: tf.Tensor,
    weights: dict[str, tf.Tensor],
    output_dtype: tf.DType,
) -> tuple[tf.Tensor, LSTMStateTuple]:
    """Computes the output gate, the output and its projection.

    Returns:
        `(m, LSTMStateTuple(c, m))` as `lstmkit.LSTMCell.step` does, with
        m in `output_dtype` (the compute dtype).
    """
    output_gate_input = o
    if cell.use_peepholes:
        output_gate_input += weights["w_o_diag"] * c
    m = tf.sigmoid(output_gate_input) * cell.activation(c)
    m = as_dtype(m, output_dtype)
    if cell.num_proj is not None:
        m = tf.matmul(m, weights["projection_kernel"])
        if cell.proj_clip is not None:
            m = tf.clip_by_value(m, -cell.proj_clip, cell.proj_clip)
    return m, LSTMStateTuple(c, m)
