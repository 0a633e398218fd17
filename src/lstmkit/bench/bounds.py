"""Two arithmetic lower bounds for an LSTM of a given shape.

Neither model computes an LSTM. Both do the matrix products of one, so
their time bounds what any implementation on the same machine can reach:

* `BatchedMatmulBound`: all products of the layer as single large
  products. Forward is `concat([x, h]) @ w` for every step at once
  (`[batch * time, input_depth + units] @ [input_depth + units,
  4 * units]`), and the training step adds the two products of its
  gradient. Nothing is sequential, so this is the speed of the arithmetic
  alone.
* `MatmulChainBound`: the input product for all steps at once, then one
  recurrent product `h @ w_h` per step, where the next `h` is the first
  `units` columns of the result (no gate math). The hand-written gradient
  runs the transposed chain backwards, one product per step, and computes
  the input and kernel gradients as large products after the loop.
  Run under XLA, this is the cost of the sequential dependency.

Both ignore lengths and run every step of every row.
"""

import logging
from typing import Any

import numpy as np
import tensorflow as tf

from lstmkit.bench.cases import Case
from lstmkit.bench.models import BenchModel, concat_directions
from lstmkit.convert.layouts import V1Weights

logger = logging.getLogger(__name__)


class BatchedMatmulBound(BenchModel):
    """The products of the layer as one large product per direction.

    The `h` half of the operand is a fixed random array (not zeros, which
    TensorFlow's graph optimizer may fold away).
    """

    def __init__(self, case: Case, weights: list[V1Weights]):
        shape = case.shape
        rng = np.random.default_rng(0)
        self.hidden = tf.constant(
            rng.uniform(-1.0, 1.0, [shape.batch, shape.time, shape.units]),
            tf.float32,
        )
        self.kernels = [tf.Variable(w.kernel) for w in weights]
        self.variables = list(self.kernels)

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        del lengths  # Every step is computed.
        operand = tf.concat([inputs, self.hidden], axis=-1)
        rows = tf.reshape(operand, [-1, operand.shape[-1]])
        outputs = []
        for kernel in self.kernels:
            product = tf.matmul(rows, kernel)
            outputs.append(tf.reshape(product, [*inputs.shape[:2], -1]))
        return concat_directions(outputs)


class MatmulChainBound(BenchModel):
    """One recurrent product per step, without gate math, per direction."""

    def __init__(self, case: Case, weights: list[V1Weights]):
        depth = case.shape.input_depth
        self.input_kernels = [tf.Variable(w.kernel[:depth]) for w in weights]
        self.recurrent_kernels = [
            tf.Variable(w.kernel[depth:]) for w in weights
        ]
        self.variables = [
            variable
            for pair in zip(self.input_kernels, self.recurrent_kernels)
            for variable in pair
        ]

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        del lengths  # Every step is computed.
        time_major = tf.transpose(inputs, [1, 0, 2])
        outputs = []
        for direction, (input_kernel, recurrent_kernel) in enumerate(
            zip(self.input_kernels, self.recurrent_kernels)
        ):
            x = time_major if direction == 0 else tf.reverse(time_major, [0])
            h = matmul_chain(
                x,
                tf.convert_to_tensor(input_kernel),
                tf.convert_to_tensor(recurrent_kernel),
            )
            outputs.append(h if direction == 0 else tf.reverse(h, [0]))
        return tf.transpose(concat_directions(outputs), [1, 0, 2])


@tf.custom_gradient
def matmul_chain(
    x: tf.Tensor, input_kernel: tf.Tensor, recurrent_kernel: tf.Tensor
) -> Any:
    """Runs the chain of recurrent products, with a hand-written gradient.

    Step t computes `z = x[t] @ input_kernel + h @ recurrent_kernel` and
    the next `h = z[:, :units]`, starting from `h = 0`. The input products
    of all steps are one product before the loop.

    Args:
        x: `[time, batch, input_depth]` with static sizes.
        input_kernel: `[input_depth, 4 * units]`.
        recurrent_kernel: `[units, 4 * units]`.

    Returns:
        The states `h[1:]` `[time, batch, units]`, and the gradient
        function of the three arguments.
    """
    time, batch, depth = x.shape
    units = recurrent_kernel.shape[0]
    flat_x = tf.reshape(x, [time * batch, depth])
    projected = tf.reshape(
        tf.matmul(flat_x, input_kernel), [time, batch, 4 * units]
    )
    states = _forward_chain(projected, recurrent_kernel, units)

    def gradient(states_grad: tf.Tensor) -> tuple[tf.Tensor, ...]:
        product_grads = _backward_chain(states_grad, recurrent_kernel, units)
        flat_grads = tf.reshape(product_grads, [time * batch, 4 * units])

        previous = tf.concat([tf.zeros([1, batch, units]), states[:-1]], 0)
        flat_previous = tf.reshape(previous, [time * batch, units])
        recurrent_grad = tf.matmul(flat_previous, flat_grads, transpose_a=True)
        input_grad = tf.matmul(flat_x, flat_grads, transpose_a=True)
        x_grad = tf.matmul(flat_grads, input_kernel, transpose_b=True)
        return (
            tf.reshape(x_grad, [time, batch, depth]),
            input_grad,
            recurrent_grad,
        )

    return states, gradient


def _forward_chain(
    projected: tf.Tensor, recurrent_kernel: tf.Tensor, units: int
) -> tf.Tensor:
    time, batch, _ = projected.shape

    def body(t, h, states):
        z = projected[t] + tf.matmul(h, recurrent_kernel)
        h = z[:, :units]
        return t + 1, h, states.write(t, h)

    _, _, states = tf.while_loop(
        lambda t, h, states: t < time,
        body,
        (
            tf.constant(0),
            tf.zeros([batch, units], projected.dtype),
            tf.TensorArray(projected.dtype, size=time),
        ),
    )
    return states.stack()


def _backward_chain(
    states_grad: tf.Tensor, recurrent_kernel: tf.Tensor, units: int
) -> tf.Tensor:
    """Returns the gradients of every step's product, `[time, batch, 4u]`."""
    time, batch, _ = states_grad.shape
    padding = [[0, 0], [0, 3 * units]]

    def body(t, carry, product_grads):
        step = time - 1 - t
        h_grad = states_grad[step] + carry
        z_grad = tf.pad(h_grad, padding)
        carry = tf.matmul(z_grad, recurrent_kernel, transpose_b=True)
        return t + 1, carry, product_grads.write(step, z_grad)

    _, _, product_grads = tf.while_loop(
        lambda t, carry, product_grads: t < time,
        body,
        (
            tf.constant(0),
            tf.zeros([batch, units], states_grad.dtype),
            tf.TensorArray(states_grad.dtype, size=time),
        ),
    )
    return product_grads.stack()
