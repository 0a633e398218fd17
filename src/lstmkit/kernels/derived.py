"""A backward pass derived from any cell's `step`, compiled by XLA.

The forward loop runs the cell's `step` and keeps the state before every
step. The backward loop runs in reverse: at step `t` it runs `step` again
from the saved state under a gradient tape and takes the vector-Jacobian
product with the gradients arriving at the step's output and new state.
Gradients of the input kernel and bias still come from automatic
differentiation of `project_inputs`, outside the loop, as single large
products.

This keeps the input projection hoisted and puts both loops under XLA
without automatic differentiation of the compiled loop, which is what makes
differentiated XLA loops slow. A new cell gets it without writing a
backward pass, provided that its `step` is deterministic (the same inputs
give the same results when run again) and reads its weights only from the
`weights` argument.

At a step where a row is invalid the state is copied through and the
cell's output for that row is discarded, so that row's gradient passes to
the previous state unchanged and the step's own gradients are zero.
"""

import weakref
from typing import Any

import tensorflow as tf

from lstmkit.kernels import steps


def run(
    cell: Any,
    projected: tf.Tensor,
    valid: tf.Tensor | None,
    state: Any,
    weights: Any,
    initial_output: tf.Tensor,
    carry_output: bool,
) -> tuple[tf.Tensor, Any, tf.Tensor]:
    """Runs `step` over all steps, differentiably.

    Args:
        cell: the cell; its `step(projected_t, state, weights)` returns
            `(output, new_state)`.
        projected: `[time, batch, depth]`, the cell's input projection.
        valid: bool `[time, batch]`, or `None` when every step is valid.
        state: initial state, a structure of `[batch, ...]` tensors.
        weights: a structure of tensors passed unchanged to every step.
        initial_output: `[batch, output_size]`, the last output before the
            first step.
        carry_output: at an invalid step, output the last valid output
            instead of zeros.

    Returns:
        `(outputs [time, batch, output_size], final_state, last_output)`.
    """
    state_flat = tf.nest.flatten(state)
    weights_flat = tf.nest.flatten(weights)
    n_state = len(state_flat)
    loops = _compiled_loops(cell, state, weights, carry_output)
    save = steps.gradients_may_be_taken()

    @tf.custom_gradient
    def recurrence(projected, initial_output, *flat):
        projected, initial_output, *flat = steps.stop_tape(
            projected, initial_output, *flat
        )
        state_in, weights_in = flat[:n_state], flat[n_state:]

        def forward(save):
            return steps.if_steps(
                projected,
                lambda: loops.forward(
                    projected,
                    valid,
                    state_in,
                    weights_in,
                    initial_output,
                    save,
                ),
                lambda: _empty_forward(projected, state_in, initial_output),
            )

        outputs, last, final, saved = forward(save)

        def grad(d_outputs, d_last, *d_final):
            # Without a tape at trace time the forward pass kept nothing,
            # so a gradient asked for later runs it again, keeping states.
            states = saved if save else forward(True)[3]
            d_outputs, d_last, d_final = _zeros_for_none(
                (d_outputs, d_last, d_final), (outputs, last, final)
            )
            d_projected, d_initial, d_state, d_weights = _backward(
                loops,
                (d_outputs, d_last, d_final),
                projected,
                valid,
                states,
                weights_in,
            )
            return (d_projected, d_initial, *d_state, *d_weights)

        return (outputs, last, *final), grad

    results = recurrence(projected, initial_output, *state_flat, *weights_flat)
    outputs, last, final = results[0], results[1], list(results[2:])
    return outputs, tf.nest.pack_sequence_as(state, final), last


_LOOPS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _compiled_loops(
    cell: Any, state: Any, weights: Any, carry_output: bool
) -> "_Loops":
    """Returns the compiled loops of `cell` for these structures.

    They are kept per cell, so that each is traced once per shape rather
    than once per call, and they hold the cell only weakly.
    """
    state_structure = tf.nest.map_structure(lambda _: None, state)
    weights_structure = tf.nest.map_structure(lambda _: None, weights)
    key = (repr(state_structure), repr(weights_structure), carry_output)
    per_cell = _LOOPS.setdefault(cell, {})
    if key not in per_cell:
        per_cell[key] = _Loops(
            weakref.ref(cell), state_structure, weights_structure, carry_output
        )
    return per_cell[key]


class _Loops:
    """The forward and backward loops of one cell, compiled by XLA."""

    def __init__(self, cell_ref, state, weights, carry_output: bool):
        self.cell_ref = cell_ref
        self.state = state
        self.weights = weights
        self.carry_output = carry_output
        self.forward = tf.function(
            self._forward, jit_compile=True, autograph=False
        )
        self.backward = tf.function(
            self._backward, jit_compile=True, autograph=False
        )

    def call(self, projected_t, state_flat, weights_flat):
        """Runs the cell's step on flat lists of state and weights."""
        state = tf.nest.pack_sequence_as(self.state, list(state_flat))
        weights = tf.nest.pack_sequence_as(self.weights, list(weights_flat))
        output, new_state = self.cell_ref().step(projected_t, state, weights)
        return output, tf.nest.flatten(new_state)

    def _forward(self, projected, valid, state, weights, last, save):
        """Runs the forward loop.

        Returns:
            `(outputs, last_output, final_state, saved)`. For each state
            part, `saved` contains `[time, batch, ...]`: the state before
            every step, or zero steps without `save`.
        """
        time = tf.shape(projected)[0]
        saved = [
            tf.TensorArray(part.dtype, size=time if save else 0)
            for part in state
        ]
        outputs = tf.TensorArray(projected.dtype, size=time)

        def body(t, state, last, outputs, saved):
            if save:
                saved = [
                    array.write(t, part) for array, part in zip(saved, state)
                ]
            output, new_state = self.call(projected[t], state, weights)
            emitted = output
            if valid is not None:
                live = valid[t]
                new_state = [
                    _where_rows(live, new, old)
                    for new, old in zip(new_state, state)
                ]
                masked = last if self.carry_output else tf.zeros_like(last)
                emitted = _where_rows(live, output, masked)
                output = _where_rows(live, output, last)
            new_state = [
                tf.ensure_shape(new, old.shape)
                for new, old in zip(new_state, state)
            ]
            output = tf.ensure_shape(output, last.shape)
            return t + 1, new_state, output, outputs.write(t, emitted), saved

        _, final, last, outputs, saved = tf.while_loop(
            lambda t, *_: t < time,
            body,
            (tf.constant(0), list(state), last, outputs, saved),
            maximum_iterations=time,
        )
        if not save:
            stacked = [tf.zeros([0], part.dtype) for part in state]
        else:
            stacked = [array.stack() for array in saved]
        return outputs.stack(), last, final, stacked

    def _backward(
        self, d_outputs, d_last, d_final, projected, valid, saved, weights
    ):
        time = tf.shape(projected)[0]
        d_projected = tf.TensorArray(projected.dtype, size=time)
        d_weights = [tf.zeros_like(w) for w in weights]
        carry = self.carry_output

        def body(t, d_state, d_last, d_weights, d_projected):
            state = [array[t] for array in saved]
            projected_t = projected[t]
            d_emitted = d_outputs[t]
            if valid is None:
                d_output, d_new = d_emitted + d_last, d_state
                d_last_prev = tf.zeros_like(d_last)
            else:
                live = valid[t]
                zero = tf.zeros_like(d_last)
                d_output = _where_rows(live, d_emitted + d_last, zero)
                d_new = [
                    _where_rows(live, d, tf.zeros_like(d)) for d in d_state
                ]
                passed = d_last + d_emitted if carry else d_last
                d_last_prev = _where_rows(live, zero, passed)
            with tf.GradientTape() as tape:
                tape.watch([projected_t, state, weights])
                output, new_state = self.call(projected_t, state, weights)
            d_p, d_prev, d_w = tape.gradient(
                [output, new_state],
                [projected_t, state, weights],
                output_gradients=[d_output, d_new],
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            if valid is not None:
                d_prev = [
                    prev + _where_rows(live, tf.zeros_like(d), d)
                    for prev, d in zip(d_prev, d_state)
                ]
            d_prev = [
                tf.ensure_shape(d, s.shape) for d, s in zip(d_prev, d_state)
            ]
            d_weights = [total + d for total, d in zip(d_weights, d_w)]
            return (
                t - 1,
                d_prev,
                d_last_prev,
                d_weights,
                d_projected.write(t, d_p),
            )

        _, d_state, d_initial, d_weights, d_projected = tf.while_loop(
            lambda t, *_: t >= 0,
            body,
            (time - 1, list(d_final), d_last, d_weights, d_projected),
            maximum_iterations=time,
        )
        return d_projected.stack(), d_initial, d_state, d_weights


def _empty_forward(projected, state, initial_output):
    """Returns the forward results for zero steps."""
    outputs = tf.zeros(
        tf.concat([[0], tf.shape(initial_output)], 0), initial_output.dtype
    )
    saved = [
        tf.zeros(tf.concat([[0], tf.shape(part)], 0), part.dtype)
        for part in state
    ]
    return outputs, initial_output, list(state), saved


def _backward(loops, upstream, projected, valid, saved, weights):
    """Gradients w.r.t. projected, the initial output and state, weights.

    Returns:
        `(d_projected, d_initial_output, d_state (list), d_weights (list))`.
    """
    d_outputs, d_last, d_final = upstream
    return steps.if_steps(
        projected,
        lambda: loops.backward(
            d_outputs,
            d_last,
            d_final,
            projected,
            valid,
            saved,
            weights,
        ),
        lambda: (
            tf.zeros_like(projected),
            d_last,
            list(d_final),
            [tf.zeros_like(w) for w in weights],
        ),
    )


def _where_rows(live: tf.Tensor, yes: tf.Tensor, no: tf.Tensor) -> tf.Tensor:
    """Selects rows by the bool `[batch]` `live`, for any rank of values."""
    shape = tf.concat(
        [tf.shape(live), tf.ones([tf.rank(yes) - 1], tf.int32)], axis=0
    )
    return tf.where(tf.reshape(live, shape), yes, no)


def _zeros_for_none(upstream, results):
    """Replaces gradients of unused results, which arrive as `None`."""
    d_outputs, d_last, d_final = upstream
    outputs, last, final = results

    def fill(d, value):
        return tf.zeros_like(value) if d is None else d

    d_final = [fill(d, part) for d, part in zip(d_final, final)]
    return fill(d_outputs, outputs), fill(d_last, last), d_final
