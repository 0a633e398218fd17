"""The fused LSTM kernels `tf.raw_ops.BlockLSTM` and `BlockLSTMV2`.

Both ops run all steps of one direction in a single kernel on time-major
inputs, with one weight matrix `w` `[input_depth + units, 4 * units]`
applied to `concat([x, h])`. They differ in layout:

* `BlockLSTM`: gate order i, j, f, o (as the v1 `LSTMCell`, so its weights
  copy over unchanged) and a run-time `forget_bias`. Its `cell_clip`
  defaults to 3.0, which clips the cell state, and a value of 0 or below
  turns clipping off (checked on TensorFlow 2.21).
* `BlockLSTMV2`: gate order i, f, c, o (as Keras), with the forget bias
  folded into `b`, and no clipping by default. In TensorFlow 2.21 its
  registered gradient calls the V1 gradient kernel, whose gate order
  differs, so its gradients are wrong. `block_lstm_v2` calls
  `tf.raw_ops.BlockLSTMGradV2` through `tf.custom_gradient` instead.

Both take one `seq_len_max` for the whole batch, not per-row lengths, so
they do not apply to variable lengths. Neither compiles with XLA.
"""

import logging
from typing import Any

import numpy as np
import tensorflow as tf

from lstmkit.bench.cases import Case
from lstmkit.bench.models import BenchModel, concat_directions
from lstmkit.convert.keras import v1_to_keras
from lstmkit.convert.layouts import (
    GATE_ORDER_KERAS,
    GATE_ORDER_TF1,
    V1Weights,
    reorder_gates,
)

logger = logging.getLogger(__name__)

# A cell_clip of 0 or below disables BlockLSTM's clipping.
NO_CELL_CLIP = -1.0


class BlockLSTMModel(BenchModel):
    """`tf.raw_ops.BlockLSTM` per direction, with the v1 weights as is.

    The backward direction reads the inputs reversed in time, which is
    correct only when every row has all steps.
    """

    def __init__(self, case: Case, weights: list[V1Weights]):
        self.forget_bias = weights[0].forget_bias
        self.kernels = [tf.Variable(w.kernel) for w in weights]
        self.biases = [tf.Variable(w.bias) for w in weights]
        self.variables = [
            variable
            for pair in zip(self.kernels, self.biases)
            for variable in pair
        ]

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        del lengths  # Not supported; the runner skips variable lengths.
        time_major = tf.transpose(inputs, [1, 0, 2])
        outputs = []
        for direction, (kernel, bias) in enumerate(
            zip(self.kernels, self.biases)
        ):
            x = time_major if direction == 0 else tf.reverse(time_major, [0])
            h = self._run(x, kernel, bias)
            outputs.append(h if direction == 0 else tf.reverse(h, [0]))
        return tf.transpose(concat_directions(outputs), [1, 0, 2])

    def _run(
        self, x: tf.Tensor, kernel: tf.Variable, bias: tf.Variable
    ) -> tf.Tensor:
        batch, units = tf.shape(x)[1], tf.shape(bias)[0] // 4
        zeros_state = tf.zeros([batch, units], x.dtype)
        zeros_peephole = tf.zeros([units], x.dtype)
        result = tf.raw_ops.BlockLSTM(
            seq_len_max=tf.cast(tf.shape(x)[0], tf.int64),
            x=x,
            cs_prev=zeros_state,
            h_prev=zeros_state,
            w=kernel,
            wci=zeros_peephole,
            wcf=zeros_peephole,
            wco=zeros_peephole,
            b=bias,
            forget_bias=self.forget_bias,
            cell_clip=NO_CELL_CLIP,
            use_peephole=False,
        )
        return result.h

    def v1_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        return list(gradients)


class BlockLSTMV2Model(BenchModel):
    """`tf.raw_ops.BlockLSTMV2` per direction, with a correct gradient.

    The weights are the Keras ones (`v1_to_keras`) with the input and
    recurrent rows stacked into one `w`.
    """

    def __init__(self, case: Case, weights: list[V1Weights]):
        self.kernels, self.biases = [], []
        for direction_weights in weights:
            kernel, recurrent_kernel, bias = v1_to_keras(direction_weights)
            stacked = np.concatenate([kernel, recurrent_kernel], axis=0)
            self.kernels.append(tf.Variable(stacked))
            self.biases.append(tf.Variable(bias))
        self.variables = [
            variable
            for pair in zip(self.kernels, self.biases)
            for variable in pair
        ]

    def __call__(self, inputs: tf.Tensor, lengths: tf.Tensor | None) -> Any:
        del lengths  # Not supported; the runner skips variable lengths.
        time_major = tf.transpose(inputs, [1, 0, 2])
        outputs = []
        for direction, (kernel, bias) in enumerate(
            zip(self.kernels, self.biases)
        ):
            x = time_major if direction == 0 else tf.reverse(time_major, [0])
            h = block_lstm_v2(
                x, tf.convert_to_tensor(kernel), tf.convert_to_tensor(bias)
            )
            outputs.append(h if direction == 0 else tf.reverse(h, [0]))
        return tf.transpose(concat_directions(outputs), [1, 0, 2])

    def v1_gradients(self, gradients: list[np.ndarray]) -> list[np.ndarray]:
        return [
            reorder_gates(gradient, GATE_ORDER_KERAS, GATE_ORDER_TF1)
            for gradient in gradients
        ]


@tf.custom_gradient
def block_lstm_v2(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> Any:
    """Runs `BlockLSTMV2` from zero state, with `BlockLSTMGradV2` as gradient.

    Args:
        x: `[time, batch, input_depth]`.
        kernel: `[input_depth + units, 4 * units]`, gate order i, f, c, o.
        bias: `[4 * units]`, same order, forget bias included.

    Returns:
        `h` `[time, batch, units]`, and the gradient function of `x`,
        `kernel` and `bias`.
    """
    batch, units = tf.shape(x)[1], tf.shape(bias)[0] // 4
    inputs = {
        "seq_len_max": tf.cast(tf.shape(x)[0], tf.int64),
        "x": x,
        "cs_prev": tf.zeros([batch, units], x.dtype),
        "h_prev": tf.zeros([batch, units], x.dtype),
        "w": kernel,
        "wci": tf.zeros([units], x.dtype),
        "wcf": tf.zeros([units], x.dtype),
        "wco": tf.zeros([units], x.dtype),
        "b": bias,
    }
    result = tf.raw_ops.BlockLSTMV2(
        **inputs, cell_clip=0.0, use_peephole=False
    )

    def gradient(h_grad: tf.Tensor) -> tuple[tf.Tensor, ...]:
        # The cell states are not outputs here, so their gradient is zero.
        grads = tf.raw_ops.BlockLSTMGradV2(
            **inputs,
            i=result.i,
            cs=result.cs,
            f=result.f,
            o=result.o,
            ci=result.ci,
            co=result.co,
            h=result.h,
            cs_grad=tf.zeros_like(result.cs),
            h_grad=h_grad,
            use_peephole=False,
        )
        return grads.x_grad, grads.w_grad, grads.b_grad

    return result.h, gradient
