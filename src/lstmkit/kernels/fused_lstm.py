"""The standard LSTM step with a hand-written backward pass, compiled by XLA.

Automatic differentiation of a time loop keeps one small matrix product per
step for every weight gradient and, under XLA, runs slowly. This kernel
saves the gate activations and states in the forward loop and, in the
backward loop, does only the one product per step that the recurrence
needs (`dz @ W_h^T`). The gradient of `W_h` is then one large product over
all steps, and the gradients of the input kernel and bias come from
automatic differentiation of the cell's `project_inputs`, outside the loop,
as single large products too.

Both loops run inside `tf.function(jit_compile=True)`. The kernel serves
any cell whose step is `LSTMCell.step` with tanh, no peepholes, no cell
clip and no projection (the v1 cell, the Keras-layout cell and cells that
change only `recurrent_weights`, such as DropConnect).

Forward, one step, with `v` the validity of the step for each row:

    z = p_t + (h_{t-1} * mask_h) @ W_h          # [batch, 4 * units]
    i, f, o = sigmoid(z_i), sigmoid(z_f + forget_bias), sigmoid(z_o)
    g = tanh(z_g)
    c_t = v ? f * c_{t-1} + i * g : c_{t-1}
    h_t = v ? o * tanh(c_t) : h_{t-1}

Backward, one step, with `dh`, `dc` the gradients reaching `h_t`, `c_t`:

    dc~ = v ? dc + dh * o * (1 - tanh(c_t)^2) : 0
    dz_o = v ? dh * tanh(c_t) * o * (1 - o) : 0
    dz_i = dc~ * g * i * (1 - i)
    dz_g = dc~ * i * (1 - g^2)
    dz_f = dc~ * c_{t-1} * f * (1 - f)
    dh_{t-1} = (dz @ W_h^T) * mask_h + (v ? 0 : dh)
    dc_{t-1} = dc~ * f + (v ? 0 : dc)

Precision: the matrix products, h and the saved pre-activations are in the
dtype of `projected` (the compute dtype). The gates, c and the gradients
carried between steps are in the dtype of `c0`. The two differ only under
a mixed-precision policy, where c is float32 and the rest float16 or
bfloat16, as in `lstmkit.LSTMCell.step`.
"""

from typing import Any, NamedTuple

import tensorflow as tf

from lstmkit.kernels import steps


class GateLayout(NamedTuple):
    """Positions of the four gate blocks in the `4 * units` columns.

    Attributes:
        input: block of the input gate `i`.
        candidate: block of the candidate `g` (v1 calls it `j`).
        forget: block of the forget gate `f`.
        output: block of the output gate `o`.
    """

    input: int
    candidate: int
    forget: int
    output: int


TF1_LAYOUT = GateLayout(input=0, candidate=1, forget=2, output=3)
KERAS_LAYOUT = GateLayout(input=0, candidate=2, forget=1, output=3)


def run(
    projected: tf.Tensor,
    valid: tf.Tensor | None,
    c0: tf.Tensor,
    h0: tf.Tensor,
    kernel_h: tf.Tensor,
    h_mask: tf.Tensor | None,
    layout: GateLayout,
    forget_bias: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Runs the LSTM recurrence over all steps, differentiably.

    Args:
        projected: `[time, batch, 4 * units]`, the input part of every step
            (bias included).
        valid: bool `[time, batch]`, or `None` when every step is valid.
        c0: `[batch, units]` initial cell state, in the dtype of the gate
            arithmetic.
        h0: `[batch, units]` initial output state, in the dtype of
            `projected`.
        kernel_h: `[units, 4 * units]` recurrent kernel.
        h_mask: optional `[batch, units]` recurrent dropout mask, applied to
            the h that feeds the recurrent product. It gets no gradient.
        layout: where each gate sits in the column blocks.
        forget_bias: added to the forget gate's pre-activation.

    Returns:
        `(h_steps [time, batch, units], c_final, h_final)`: the state h
        after every step (copied through at invalid steps) and the final
        states.
    """
    gate_bias = _gate_bias(layout, forget_bias, c0.dtype)
    save = steps.gradients_may_be_taken()

    @tf.custom_gradient
    def recurrence(projected, c0, h0, kernel_h):
        projected, c0, h0, kernel_h = steps.stop_tape(
            projected, c0, h0, kernel_h
        )

        def forward(save):
            return steps.if_steps(
                projected,
                lambda: _forward(
                    projected,
                    valid,
                    c0,
                    h0,
                    kernel_h,
                    h_mask,
                    gate_bias,
                    layout,
                    save,
                ),
                lambda: _empty_forward(projected, c0, h0),
            )

        results = forward(save)

        def grad(d_h_steps, d_c_final, d_h_final):
            # Without a tape at trace time the forward pass kept nothing,
            # so a gradient asked for later runs it again, keeping states.
            h_steps, c_steps, z_steps = (results if save else forward(True))[:3]
            return _backward(
                (d_h_steps, d_c_final, d_h_final),
                (h_steps, c_steps, z_steps),
                (c0, h0),
                valid,
                kernel_h,
                h_mask,
                gate_bias,
                layout,
            )

        return (results[0], results[3], results[4]), grad

    return recurrence(projected, c0, h0, kernel_h)


def _gate_bias(
    layout: GateLayout, forget_bias: float, dtype: tf.DType
) -> tf.Tensor:
    """Returns `[4]`: the forget bias in the forget slot, zeros elsewhere."""
    values = [0.0] * 4
    values[layout.forget] = forget_bias
    return tf.constant(values, dtype)


def _as_dtype(tensor: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Casts `tensor` to `dtype`, adding no op when it already has it."""
    return tensor if tensor.dtype == dtype else tf.cast(tensor, dtype)


def _gates(z: tf.Tensor, gate_bias: tf.Tensor, layout: GateLayout):
    """Returns `(i, g, f, o)` in the gate dtype from `[batch, 4, units]` z.

    `z` is in the compute dtype, without the forget bias.
    """
    z = _as_dtype(z, gate_bias.dtype) + gate_bias[:, None]
    return _activate(z, layout)


@tf.function(jit_compile=True, autograph=False)
def _forward(
    projected, valid, c0, h0, kernel_h, h_mask, gate_bias, layout, save
):
    """Runs the forward loop and returns states and pre-activations.

    Returns:
        `(h_steps, c_steps, z_steps, c_final, h_final)` with z_steps
        `[time, batch, 4, units]`, every block's pre-activation (without
        the forget bias). Without `save`, c_steps and z_steps are empty.
    """
    time = tf.shape(projected)[0]
    batch = tf.shape(projected)[1]
    units = tf.shape(kernel_h)[0]
    dtype = projected.dtype
    h_steps = tf.TensorArray(dtype, size=time)
    c_steps = tf.TensorArray(c0.dtype, size=time if save else 0)
    z_steps = tf.TensorArray(dtype, size=time if save else 0)

    def body(t, c, h, h_steps, c_steps, z_steps):
        h_in = h if h_mask is None else h * h_mask
        z = projected[t] + tf.matmul(h_in, kernel_h)
        z = tf.reshape(z, [batch, 4, units])
        i, g, f, o = _gates(z, gate_bias, layout)
        c_new = f * c + i * g
        h_new = _as_dtype(o * tf.tanh(c_new), dtype)
        if valid is not None:
            live = valid[t][:, None]
            c_new = tf.where(live, c_new, c)
            h_new = tf.where(live, h_new, h)
        c_new.set_shape(c.shape)
        h_new.set_shape(h.shape)
        return (
            t + 1,
            c_new,
            h_new,
            h_steps.write(t, h_new),
            c_steps.write(t, c_new) if save else c_steps,
            z_steps.write(t, z) if save else z_steps,
        )

    _, c_final, h_final, h_steps, c_steps, z_steps = tf.while_loop(
        lambda t, *_: t < time,
        body,
        (tf.constant(0), c0, h0, h_steps, c_steps, z_steps),
        maximum_iterations=time,
    )
    if not save:
        unsaved_c, unsaved_z = tf.zeros([0], c0.dtype), tf.zeros([0], dtype)
        return h_steps.stack(), unsaved_c, unsaved_z, c_final, h_final
    return h_steps.stack(), c_steps.stack(), z_steps.stack(), c_final, h_final


def _activate(z: tf.Tensor, layout: GateLayout) -> tuple[tf.Tensor, ...]:
    """Returns `(i, g, f, o)` from `[batch, 4, units]` pre-activations."""
    return (
        tf.sigmoid(z[:, layout.input]),
        tf.tanh(z[:, layout.candidate]),
        tf.sigmoid(z[:, layout.forget]),
        tf.sigmoid(z[:, layout.output]),
    )


def _empty_forward(projected, c0, h0):
    """Returns the forward results for zero steps."""
    batch, units = tf.shape(h0)[0], tf.shape(h0)[1]
    no_h = tf.zeros(tf.stack([0, batch, units]), h0.dtype)
    no_c = tf.zeros(tf.stack([0, batch, units]), c0.dtype)
    blocks = tf.zeros(tf.stack([0, batch, 4, units]), h0.dtype)
    return no_h, no_c, blocks, c0, h0


def _backward(
    upstream, saved, initial, valid, kernel_h, h_mask, gate_bias, layout
):
    """Gradients of the recurrence w.r.t. projected, c0, h0 and kernel_h."""
    d_h_steps, d_c_final, d_h_final = _zeros_for_none(upstream, saved, initial)
    h_steps, c_steps, gates = saved
    c0, h0 = initial
    return steps.if_steps(
        h_steps,
        lambda: _backward_loop(
            d_h_steps,
            d_c_final,
            d_h_final,
            h_steps,
            c_steps,
            gates,
            c0,
            h0,
            valid,
            kernel_h,
            h_mask,
            gate_bias,
            layout,
        ),
        lambda: (
            tf.zeros(tf.stack([0, tf.shape(h0)[0], 4 * tf.shape(h0)[1]]),
                     h0.dtype),
            d_c_final,
            d_h_final,
            tf.zeros_like(kernel_h),
        ),
    )


def _zeros_for_none(upstream, saved, initial):
    """Replaces gradients of unused outputs, which arrive as `None`."""
    d_h_steps, d_c_final, d_h_final = upstream
    h_steps = saved[0]
    c0, h0 = initial
    if d_h_steps is None:
        d_h_steps = tf.zeros_like(h_steps)
    if d_c_final is None:
        d_c_final = tf.zeros_like(c0)
    if d_h_final is None:
        d_h_final = tf.zeros_like(h0)
    return d_h_steps, d_c_final, d_h_final


@tf.function(jit_compile=True, autograph=False)
def _backward_loop(
    d_h_steps,
    d_c_final,
    d_h_final,
    h_steps,
    c_steps,
    gates,
    c0,
    h0,
    valid,
    kernel_h,
    h_mask,
    gate_bias,
    layout,
):
    """Backward loop; returns `(d_projected, d_c0, d_h0, d_kernel_h)`.

    dh and dc are carried in the gate dtype; dz is cast to the compute
    dtype for the product with `W_h^T` and for `d_projected`.
    """
    time = tf.shape(h_steps)[0]
    batch = tf.shape(h_steps)[1]
    units = tf.shape(kernel_h)[0]
    dtype, gate_dtype = h_steps.dtype, c0.dtype
    h_prev = tf.concat([h0[None], h_steps[:-1]], axis=0)
    kernel_t = tf.transpose(kernel_h)
    d_z = tf.TensorArray(dtype, size=time)
    if h_mask is not None:
        h_mask_gates = _as_dtype(h_mask, gate_dtype)

    def body(t, dc, dh, d_z):
        dh = dh + _as_dtype(d_h_steps[t], gate_dtype)
        i, g, f, o = _gates(gates[t], gate_bias, layout)
        c_prev = tf.where(t > 0, c_steps[tf.maximum(t - 1, 0)], c0)
        tanh_c = tf.tanh(c_steps[t])
        dh_live, dc_live = dh, dc
        if valid is not None:
            live = valid[t][:, None]
            dh_live = tf.where(live, dh, tf.zeros_like(dh))
            dc_live = tf.where(live, dc, tf.zeros_like(dc))
        dc_total = dc_live + dh_live * o * (1.0 - tanh_c * tanh_c)
        blocks = [None] * 4
        blocks[layout.input] = dc_total * g * i * (1.0 - i)
        blocks[layout.candidate] = dc_total * i * (1.0 - g * g)
        blocks[layout.forget] = dc_total * c_prev * f * (1.0 - f)
        blocks[layout.output] = dh_live * tanh_c * o * (1.0 - o)
        dz = tf.reshape(tf.stack(blocks, axis=1), [batch, 4 * units])
        dz = _as_dtype(dz, dtype)
        dh_prev = _as_dtype(tf.matmul(dz, kernel_t), gate_dtype)
        if h_mask is not None:
            dh_prev = dh_prev * h_mask_gates
        dc_prev = dc_total * f
        if valid is not None:
            dh_prev += tf.where(live, tf.zeros_like(dh), dh)
            dc_prev += tf.where(live, tf.zeros_like(dc), dc)
        dh_prev.set_shape(dh.shape)
        dc_prev.set_shape(dc.shape)
        return t - 1, dc_prev, dh_prev, d_z.write(t, dz)

    _, d_c0, d_h0, d_z = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        (time - 1, d_c_final, _as_dtype(d_h_final, gate_dtype), d_z),
        maximum_iterations=time,
    )
    d_projected = d_z.stack()
    d_kernel_h = _kernel_gradient(h_prev, d_projected, h_mask)
    return d_projected, d_c0, _as_dtype(d_h0, dtype), d_kernel_h


def _kernel_gradient(h_prev, d_projected, h_mask):
    """`sum_t (h_{t-1} * mask_h)^T @ dz_t` as one product over all steps."""
    if h_mask is not None:
        h_prev = h_prev * h_mask
    units = tf.shape(h_prev)[-1]
    gates = tf.shape(d_projected)[-1]
    flat_h = tf.reshape(h_prev, [-1, units])
    flat_dz = tf.reshape(d_projected, [-1, gates])
    return tf.matmul(flat_h, flat_dz, transpose_a=True)
