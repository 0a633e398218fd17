"""Sequence drivers with the semantics of `tf.compat.v1.nn.dynamic_rnn`.

For a row with length `n`, steps `t >= n` output zeros and copy the state
through, so the final state is the state after step `n - 1`, and a row with
length 0 keeps its initial state. Unlike the v1 built-in, padded steps are
replaced by zeros before the cell reads them, so non-finite padding reaches
neither the outputs nor any gradient.
"""

import logging
from typing import Any

import tensorflow as tf

from lstmkit import kernels, validation
from lstmkit.kernels import derived, fused_lstm, steps

logger = logging.getLogger(__name__)

_warned_shared_cell = False


def dynamic_rnn(
    cell: Any,
    inputs: Any,
    sequence_length: Any = None,
    initial_state: Any = None,
    dtype: Any = None,
    time_major: bool = False,
    implementation: str | None = None,
) -> tuple[tf.Tensor, Any]:
    """Runs `cell` over a batch of sequences, as the v1 `dynamic_rnn` does.

    Args:
        cell: an `lstmkit.RecurrentCell`, such as `lstmkit.LSTMCell`. It is
            built on first use from the inputs' depth.
        inputs: `[batch, time, depth]`, or `[time, batch, depth]` when
            `time_major`.
        sequence_length: optional `[batch]` int32 or int64 lengths, each in
            `[0, time]`. Without it every step of every row is valid.
        initial_state: optional state in the cell's structure (for an LSTM,
            `LSTMStateTuple(c, h)` or a `(c, h)` pair); zeros by default.
        dtype: optional dtype of the zero state. Without it the dtype comes
            from the inputs (the v1 function raises instead).
        time_major: layout of `inputs` and of the returned outputs.
        implementation: the time-loop kernel: `"auto"` (the fastest that
            can run `cell`) or one of `lstmkit.kernels.KERNELS`; `None`
            for `lstmkit.kernels.default_implementation()`. Every kernel
            gives the same results; `lstmkit.kernels.explain(cell)` says
            which one ran.

    Returns:
        `(outputs, state)`: outputs `[batch, time, output_size]` (or
        time-major), zero at `t >= sequence_length`; state after each row's
        last valid step.

    Raises:
        TypeError, ValueError: invalid inputs, lengths or state, found
            eagerly or while tracing.
        tf.errors.InvalidArgumentError: invalid lengths found when a graph
            runs (not raised under XLA, see `lstmkit.validation`).
    """
    inputs = validation.as_inputs(inputs, time_major)
    x, batch, time = _to_time_major(inputs, time_major)
    dtype = _prepare_cell(cell, inputs, dtype)
    lengths = validation.as_lengths(sequence_length, batch, time)
    state = _initial_state(cell, initial_state, batch, dtype, "initial_state")

    outputs, state = _run_loop(cell, x, lengths, state, implementation)
    return _from_time_major(outputs, time_major), state


def bidirectional_dynamic_rnn(
    cell_fw: Any,
    cell_bw: Any,
    inputs: Any,
    sequence_length: Any = None,
    initial_state_fw: Any = None,
    initial_state_bw: Any = None,
    dtype: Any = None,
    time_major: bool = False,
    implementation: str | None = None,
) -> tuple[tuple[tf.Tensor, tf.Tensor], tuple[Any, Any]]:
    """Runs a forward and a backward cell, as the v1 function does.

    The backward cell reads each row reversed within its own length
    (`tf.reverse_sequence`), so padding stays at the end, and its outputs
    are reversed back the same way, so `output_bw[:, t]` belongs to input
    step `t`. Without `sequence_length` both reversals cover the whole time
    axis.

    Args:
        cell_fw: cell for the forward direction.
        cell_bw: cell for the backward direction. Passing the same cell as
            `cell_fw` shares weights between directions (logged once).
        inputs: `[batch, time, depth]`, or `[time, batch, depth]` when
            `time_major`.
        sequence_length: optional `[batch]` int32 or int64 lengths.
        initial_state_fw: optional initial state of the forward cell.
        initial_state_bw: optional initial state of the backward cell.
        dtype: optional dtype of the zero states; defaults to the inputs'.
        time_major: layout of `inputs` and of the outputs.
        implementation: the time-loop kernel of both directions, as in
            `dynamic_rnn`.

    Returns:
        `((output_fw, output_bw), (state_fw, state_bw))`. Outputs are not
        concatenated; both are aligned with the input time steps and zero
        past each row's length. `state_bw` is the backward state after
        reading step 0.

    Raises:
        TypeError, ValueError, tf.errors.InvalidArgumentError: as
            `dynamic_rnn`.
    """
    _warn_if_shared(cell_fw, cell_bw)
    inputs = validation.as_inputs(inputs, time_major)
    x, batch, time = _to_time_major(inputs, time_major)
    dtype = _prepare_cell(cell_fw, inputs, dtype)
    _prepare_cell(cell_bw, inputs, dtype)
    lengths = validation.as_lengths(sequence_length, batch, time)
    state_fw = _initial_state(
        cell_fw, initial_state_fw, batch, dtype, "initial_state_fw"
    )
    state_bw = _initial_state(
        cell_bw, initial_state_bw, batch, dtype, "initial_state_bw"
    )

    output_fw, state_fw = _run_loop(
        cell_fw, x, lengths, state_fw, implementation
    )

    x_reversed = reverse_time(x, lengths)
    reversed_bw, state_bw = _run_loop(
        cell_bw, x_reversed, lengths, state_bw, implementation
    )
    output_bw = reverse_time(reversed_bw, lengths)

    outputs = (
        _from_time_major(output_fw, time_major),
        _from_time_major(output_bw, time_major),
    )
    return outputs, (state_fw, state_bw)


def reverse_time(x: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
    """Reverses each row of a time-major tensor within its length.

    Args:
        x: `[time, batch, ...]`.
        lengths: `[batch]` int32, or `None` to reverse the whole time axis.

    Returns:
        `[time, batch, ...]` with `x[:n]` of each row reversed and the
        padding left in place.
    """
    if lengths is None:
        return tf.reverse(x, axis=[0])
    return tf.reverse_sequence(x, lengths, seq_axis=0, batch_axis=1)


def _run_loop(
    cell: Any,
    x: tf.Tensor,
    lengths: tf.Tensor | None,
    state: Any,
    implementation: str | None,
) -> tuple[tf.Tensor, Any]:
    """Runs the time loop on time-major `x` `[time, batch, depth]`.

    Returns:
        `(outputs [time, batch, output_size], final_state)`.
    """
    valid = None
    if lengths is not None:
        valid = tf.transpose(tf.sequence_mask(lengths, tf.shape(x)[0]))
    outputs, state, _ = run_masked(
        cell, x, valid, state, implementation=implementation
    )
    return outputs, state


def run_masked(
    cell: Any,
    x: tf.Tensor,
    valid: tf.Tensor | None,
    state: Any,
    carry_output: bool = False,
    initial_output: tf.Tensor | None = None,
    weights: Any = None,
    implementation: str | None = None,
) -> tuple[tf.Tensor, Any, tf.Tensor]:
    """Runs the time loop on time-major `x` with a per-step validity mask.

    At a step where `valid` is False the state is copied through and the
    output is zero (v1 semantics) or, with `carry_output`, the previous
    step's output (Keras semantics). Masked steps are zeroed before the cell
    reads them, so non-finite values there reach no gradient.

    Args:
        cell: a built `RecurrentCell`.
        x: `[time, batch, depth]`.
        valid: bool `[time, batch]`, or `None` when every step is valid.
            Any pattern works: right or left padding, or holes.
        state: initial state in the cell's structure.
        carry_output: repeat the previous output at masked steps.
        initial_output: `[batch, output_size]`, the output carried into
            masked steps before the first valid one; zeros by default.
        weights: the cell's recurrent weights; `cell.recurrent_weights()`
            when `None`. Layers pass their own to add dropout masks.
        implementation: `"auto"` or a kernel name from
            `lstmkit.kernels.KERNELS`; `None` for
            `lstmkit.kernels.default_implementation()`.

    Returns:
        `(outputs [time, batch, output_size], final_state, last_output)`,
        where `last_output` is the output of each row's last valid step
        (the initial output for a row without one).
    """
    if valid is not None:
        # Zero masked steps before the projection so that NaN or Inf there
        # cannot reach a gradient through the projection's matmul.
        x = tf.where(valid[:, :, None], x, tf.zeros([], x.dtype))
    projected = cell.project_inputs(x)
    if initial_output is None:
        initial_output = tf.zeros(
            tf.stack([tf.shape(x)[1], cell.output_size]), x.dtype
        )
    if weights is None:
        weights = cell.recurrent_weights()
    choice = kernels.choose(
        cell,
        projected.dtype,
        weights,
        implementation or kernels.default_implementation(),
    )

    run = _KERNEL_RUNNERS[choice.kernel]
    outputs, state, last_output = run(
        cell, projected, valid, state, weights, carry_output, initial_output
    )
    # A loop's stacked outputs lose the static number of steps. Setting it
    # back lets Keras infer output shapes.
    outputs.set_shape(x.shape[:2].concatenate([cell.output_size]))
    return outputs, state, last_output


def _run_fused(
    cell, projected, valid, state, weights, carry_output, initial_output
):
    """Runs the fused LSTM kernel; its outputs are the h states."""
    c0, h0 = state
    h_steps, c_final, h_final = fused_lstm.run(
        projected,
        valid,
        c0,
        h0,
        weights["kernel_h"],
        weights.get("h_dropout_mask"),
        kernels.gate_layout(cell),
        cell.forget_bias,
    )
    state = type(state)(c_final, h_final)
    if valid is None:
        started = tf.shape(projected)[0] > 0
        return h_steps, state, tf.where(started, h_final, initial_output)

    # h is copied through invalid steps, so after a row's first valid step
    # h_steps already contains the last valid output.
    seen = tf.cumsum(tf.cast(valid, tf.int32), axis=0) > 0
    if carry_output:
        outputs = tf.where(seen[:, :, None], h_steps, initial_output[None])
    else:
        outputs = tf.where(valid[:, :, None], h_steps, tf.zeros([], h0.dtype))
    any_valid = tf.reduce_any(valid, axis=0)[:, None]
    return outputs, state, tf.where(any_valid, h_final, initial_output)


def _run_derived(
    cell, projected, valid, state, weights, carry_output, initial_output
):
    """Runs the kernel whose backward pass comes from `cell.step`."""
    return derived.run(
        cell,
        projected,
        valid,
        state,
        weights,
        initial_output,
        carry_output,
    )


def _run_autodiff(
    cell, projected, valid, state, weights, carry_output, initial_output
):
    """Runs a `tf.while_loop` that TensorFlow differentiates."""
    time = tf.shape(projected)[0]
    dtype = initial_output.dtype
    projected_steps = tf.TensorArray(
        projected.dtype, size=time, element_shape=projected.shape[1:]
    ).unstack(projected)
    output_shape = tf.TensorShape([projected.shape[1], cell.output_size])
    outputs = tf.TensorArray(dtype, size=time, element_shape=output_shape)
    if valid is not None:
        valid = valid[:, :, None]

    def body(t, state, last_output, outputs):
        output, new_state = cell.step(projected_steps.read(t), state, weights)
        if valid is not None:
            live = valid[t]
            new_state = tf.nest.map_structure(
                lambda new, old: tf.where(live, new, old), new_state, state
            )
            last_output = tf.where(live, output, last_output)
            masked = last_output if carry_output else tf.zeros([], dtype)
            output = tf.where(live, output, masked)
        else:
            last_output = output
        return t + 1, new_state, last_output, outputs.write(t, output)

    _, state, last_output, outputs = tf.while_loop(
        lambda t, *_: t < time,
        body,
        (tf.constant(0), state, initial_output, outputs),
        maximum_iterations=time,
    )
    # A TensorArray cannot stack zero elements of partly unknown shape.
    stacked = steps.if_steps(
        projected,
        outputs.stack,
        lambda: tf.zeros(
            tf.stack([0, tf.shape(projected)[1], cell.output_size]), dtype
        ),
    )
    return stacked, state, last_output


_KERNEL_RUNNERS = {
    "fused_lstm": _run_fused,
    "derived": _run_derived,
    "autodiff": _run_autodiff,
}


def _to_time_major(
    inputs: tf.Tensor, time_major: bool
) -> tuple[tf.Tensor, Any, Any]:
    x = inputs if time_major else tf.transpose(inputs, [1, 0, 2])
    time = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
    batch = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    return x, batch, time


def _from_time_major(outputs: tf.Tensor, time_major: bool) -> tf.Tensor:
    return outputs if time_major else tf.transpose(outputs, [1, 0, 2])


def _prepare_cell(cell: Any, inputs: tf.Tensor, dtype: Any) -> tf.DType:
    """Builds `cell` for `inputs` if needed and checks depth and dtype."""
    validation.check_cell(cell)
    validation.check_input_depth(cell, inputs)
    if not cell.built:
        _adopt_input_dtype(cell, inputs.dtype)
        cell.build(inputs.shape[-1:])
    return validation.check_dtype(cell, inputs, dtype)


def _adopt_input_dtype(cell: Any, dtype: tf.DType) -> None:
    """Builds a cell created without `dtype=` in the inputs' dtype.

    The v1 cells take their variables' dtype from the first inputs; a Keras
    layer otherwise uses the global policy (float32).
    """
    import keras

    policy = cell.dtype_policy
    unset = getattr(cell, "_dtype_from_inputs", False)
    mixed = policy.compute_dtype != policy.variable_dtype
    if unset and not mixed and policy.compute_dtype != dtype.name:
        cell.dtype_policy = keras.DTypePolicy(dtype.name)


def _initial_state(
    cell: Any, state: Any, batch: Any, dtype: tf.DType, name: str
) -> Any:
    if state is None:
        return cell.zero_state(batch, dtype)
    return validation.check_state(cell, state, batch, dtype, name)


def _warn_if_shared(cell_fw: Any, cell_bw: Any) -> None:
    global _warned_shared_cell
    if cell_fw is cell_bw and not _warned_shared_cell:
        _warned_shared_cell = True
        logger.warning(
            "cell_fw and cell_bw are the same cell %r, so both directions "
            "share one set of weights; pass two cells for separate weights.",
            getattr(cell_fw, "name", cell_fw),
        )
