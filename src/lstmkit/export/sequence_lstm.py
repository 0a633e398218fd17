"""Export-friendly replacements for lstmkit's LSTM layers.

`replace_lstm_layers` clones a model and puts a new layer in place of each
`lstmkit.layers.RNN` (and so each `LSTM`) that runs the standard LSTM step.
It does the same for each `lstmkit.layers.Bidirectional` of two such
layers. The new layers run the whole sequence in one `tf.function` marked
as a composite Keras LSTM:

* The TFLite converter (TensorFlow 2.21, `PrepareCompositeFunctionsPass`)
  replaces such a function by one `UNIDIRECTIONAL_SEQUENCE_LSTM` op when
  its `api_implements` attribute starts with `"lstm_"` and it has a
  `time_major` attribute. The function must take six arguments
  `(inputs, init_h, init_c, kernel, recurrent_kernel, bias)` in Keras'
  layout (gates i, f, c, o). It must return five results, and only the
  first two (last output, all outputs) may be used. The weights and the
  initial states, and so the batch size, need static shapes.
* Other runtimes (tf2onnx, TensorFlow itself) run the function's body,
  a plain `tf.while_loop` of the same step.

The fused op has no sequence-length input, so the layers handle lengths
around it. Before the op, the backward direction reverses each row within
its length (`tf.reverse_sequence`). After the op, steps past a row's length
are set to what lstmkit outputs there: zeros, or the last valid output
under Keras' masking rule. A step `t < length` depends only on the steps
before it, so the op's outputs there are exact.
"""

import logging
import uuid
from typing import Any

import keras
import tensorflow as tf

from lstmkit import kernels
from lstmkit.layers import Bidirectional, RNN

logger = logging.getLogger(__name__)


def unfusable_reason(layer: Any) -> str | None:
    """Returns why `layer` cannot run as one sequence LSTM, or `None`.

    Args:
        layer: an `lstmkit.layers.RNN` or `lstmkit.layers.Bidirectional`.
    """
    if isinstance(layer, Bidirectional):
        if layer.return_state:
            return f"{layer.name}: return_state is set"
        for direction in (layer.forward_layer, layer.backward_layer):
            reason = unfusable_reason(direction)
            if reason is not None:
                return reason
        return None

    cell = layer.cell
    if not cell.built:
        return f"{layer.name}: the layer is not built"
    problem = kernels.fused_layout_problem(cell, cell.recurrent_weights())
    if problem is not None:
        return f"{layer.name}: {problem}"
    options = {
        "return_state": layer.return_state,
        "stateful": layer.stateful,
        "a compute dtype other than float32": layer.compute_dtype
        != "float32",
    }
    for option, used in options.items():
        if used:
            return f"{layer.name}: {option}"
    return None


def replace_lstm_layers(model: keras.Model) -> tuple[keras.Model, list[str]]:
    """Clones `model` with each fusable lstmkit layer replaced.

    The clone shares the weights of `model`; nothing is copied.

    Args:
        model: a Sequential or Functional Keras model.

    Returns:
        `(clone, reasons)`: the clone, and for each lstmkit layer left as
        it was, why it was not replaced.

    Raises:
        ValueError: the model is subclassed, which `keras.models.
            clone_model` cannot rebuild.
    """
    reasons = []

    def replace(layer: Any) -> Any:
        if not isinstance(layer, (RNN, Bidirectional)):
            return layer
        reason = unfusable_reason(layer)
        if reason is not None:
            reasons.append(reason)
            return layer
        if isinstance(layer, Bidirectional):
            return SequenceBidirectional(layer)
        return SequenceLSTM(layer)

    try:
        clone = keras.models.clone_model(
            model, clone_function=replace, recursive=True
        )
    except ValueError as error:
        raise ValueError(
            f"{model.name} cannot be rebuilt with export layers: {error}"
        ) from error
    return clone, reasons


def keras_layout_weights(cell: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Reads a standard LSTM cell's weights in Keras' layout.

    The v1 cell's gate blocks i, j, f, o are reordered to Keras' i, f, c,
    o, and its run-time `forget_bias` (also `KerasLSTMCell.forget_bias`)
    is added to the forget block of the bias.

    Returns:
        `(kernel [input_depth, 4 * units], recurrent_kernel [units,
        4 * units], bias [4 * units])` as tensors.
    """
    units = cell.num_units
    kernel = cell.read_weight(cell.kernel)[: cell.input_depth]
    recurrent = cell.recurrent_weights()["kernel_h"]
    bias = cell.read_weight(cell.bias)

    layout = kernels.gate_layout(cell)
    order = [layout.input, layout.forget, layout.candidate, layout.output]

    def reorder(matrix: tf.Tensor) -> tf.Tensor:
        blocks = [matrix[..., b * units : (b + 1) * units] for b in order]
        return tf.concat(blocks, axis=-1)

    kernel, recurrent, bias = reorder(kernel), reorder(recurrent), reorder(bias)
    if cell.forget_bias:
        shift = tf.concat(
            [
                tf.zeros([units], bias.dtype),
                tf.fill([units], tf.cast(cell.forget_bias, bias.dtype)),
                tf.zeros([2 * units], bias.dtype),
            ],
            axis=0,
        )
        bias = bias + shift
    return kernel, recurrent, bias


def make_sequence_lstm() -> Any:
    """Creates one composite-LSTM `tf.function` for one layer.

    Each layer gets its own function with a unique `api_implements` name,
    as Keras 2 did for its LSTM layers.
    """
    # NOTE: the converter builds the fused op with cell_clip=10.0
    # (ConvertKerasLSTMLayer in TensorFlow 2.21's lstm_utils.cc), so TFLite
    # clips the cell state to [-10, 10] where this body does not.
    attributes = {
        "api_implements": f"lstm_{uuid.uuid4()}",
        "api_preferred_device": "CPU",
        "time_major": False,
        "go_backwards": False,
    }

    @tf.function(experimental_attributes=attributes, autograph=False)
    def sequence_lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
        """Runs the Keras LSTM step over `inputs [batch, time, depth]`.

        Returns:
            `(last_output, outputs [batch, time, units], h, c, 0.0)`: the
            five results the converter expects of a Keras LSTM.
        """
        steps = tf.transpose(inputs, [1, 0, 2])
        projected = tf.einsum("tbd,dg->tbg", steps, kernel) + bias
        time = tf.shape(projected)[0]
        projected_steps = tf.TensorArray(
            projected.dtype, size=time, element_shape=projected.shape[1:]
        ).unstack(projected)
        outputs = tf.TensorArray(
            inputs.dtype, size=time, element_shape=init_h.shape
        )

        def body(t, h, c, outputs):
            z = projected_steps.read(t) + tf.matmul(h, recurrent_kernel)
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            return t + 1, h, c, outputs.write(t, h)

        _, h, c, outputs = tf.while_loop(
            lambda t, *_: t < time, body, (0, init_h, init_c, outputs)
        )
        outputs = tf.transpose(outputs.stack(), [1, 0, 2])
        return h, outputs, h, c, tf.constant(0.0)

    return sequence_lstm


@keras.saving.register_keras_serializable(package="lstmkit.export")
class SequenceLSTM(keras.layers.Layer):
    """Runs an lstmkit LSTM layer through one composite sequence function.

    It reads the weights of the wrapped layer, so it has none of its own.
    It is meant for export graphs only.

    Args:
        layer: a built `lstmkit.layers.RNN` with a standard LSTM cell,
            see `unfusable_reason`.
        zero_output_for_mask: whether masked steps output zeros. `None`
            takes the wrapped layer's rule.
    """

    def __init__(
        self,
        layer: RNN,
        zero_output_for_mask: bool | None = None,
        **kwargs,
    ):
        super().__init__(name=f"{layer.name}_sequence", **kwargs)
        self.layer = layer
        if zero_output_for_mask is None:
            zero_output_for_mask = not layer._carries_output()
        self.zero_output_for_mask = zero_output_for_mask
        self.supports_masking = True
        self._sequence_lstm = make_sequence_lstm()

    def build(self, input_shape: Any) -> None:
        """Marks the layer built, because the wrapped layer owns the weights."""
        self.built = True

    def call(
        self, inputs: Any, mask: Any = None, initial_state: Any = None
    ) -> tf.Tensor:
        if initial_state is not None:
            raise ValueError(
                f"{self.name}: export layers start from zero states; "
                "initial_state is not supported."
            )
        outputs, last = self.run_sequence(inputs, mask)
        if self.layer.return_sequences:
            return outputs
        if self.zero_output_for_mask and mask is not None:
            # As in the wrapped layer: a row whose last step in reading
            # order is masked returns zeros. Reading backwards, that step
            # is the first one, and `last` is already zeros there.
            if not self.layer.go_backwards:
                last_valid = tf.cast(mask, tf.bool)[:, -1:]
                last = tf.where(last_valid, last, tf.zeros_like(last))
        return last

    def run_sequence(
        self, inputs: tf.Tensor, mask: Any
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Runs the sequence with right-padded lengths taken from `mask`.

        Returns:
            `(outputs [batch, time, units], last [batch, units])`, the
            outputs in the wrapped layer's order (reading order for
            `go_backwards`) and the output of each row's last valid step.
        """
        inputs = tf.convert_to_tensor(inputs)
        time = tf.shape(inputs)[1]
        # NOTE: the lengths are the number of valid steps per row, which
        # is exact for right padding only. A mask with holes (Masking on
        # zero steps inside the data) gives other numbers than lstmkit.
        if mask is None:
            lengths = tf.fill([tf.shape(inputs)[0]], time)
        else:
            lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        valid = tf.sequence_mask(lengths, time)[:, :, None]

        if self.layer.go_backwards:
            inputs = tf.reverse_sequence(inputs, lengths, 1, 0)
        inputs = tf.where(valid, inputs, tf.zeros([], inputs.dtype))

        cell = self.layer.cell
        batch = inputs.shape[0]
        if batch is None:
            batch = tf.shape(inputs)[0]
        zeros = tf.zeros([batch, cell.num_units], inputs.dtype)
        _, outputs, _, _, _ = self._sequence_lstm(
            inputs, zeros, zeros, *keras_layout_weights(cell)
        )

        last_index = tf.maximum(lengths - 1, 0)
        last = tf.gather(outputs, last_index, axis=1, batch_dims=1)
        last = tf.where(lengths[:, None] > 0, last, tf.zeros_like(last))
        if self.layer.go_backwards:
            # Reading order of the wrapped layer: padding first, then the
            # row reversed. Both masking rules give zeros at the padding.
            outputs = tf.where(valid, outputs, tf.zeros_like(outputs))
            outputs = tf.reverse(
                tf.reverse_sequence(outputs, lengths, 1, 0), axis=[1]
            )
        elif self.zero_output_for_mask:
            outputs = tf.where(valid, outputs, tf.zeros_like(outputs))
        else:
            outputs = tf.where(valid, outputs, last[:, None, :])

        # Keep the static batch and time for the layers after this one,
        # because the converter needs static shapes for their loops' lists.
        units = cell.output_size
        outputs.set_shape(inputs.shape[:2].concatenate([units]))
        last.set_shape(inputs.shape[:1].concatenate([units]))
        return outputs, last

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return self.layer.compute_mask(inputs, mask)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        units = self.layer.cell.output_size
        if self.layer.return_sequences:
            return tuple(input_shape[:2]) + (units,)
        return (input_shape[0], units)


@keras.saving.register_keras_serializable(package="lstmkit.export")
class SequenceBidirectional(keras.layers.Layer):
    """Runs an lstmkit `Bidirectional` as two composite sequence functions.

    Args:
        layer: a built `lstmkit.layers.Bidirectional` whose two layers
            pass `unfusable_reason`.
    """

    def __init__(self, layer: Bidirectional, **kwargs):
        super().__init__(name=f"{layer.name}_sequence", **kwargs)
        self.layer = layer
        self.forward = SequenceLSTM(layer.forward_layer)
        self.backward = SequenceLSTM(layer.backward_layer)
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        """Marks the layer built, because the wrapped layer owns the weights."""
        self.built = True

    def call(self, inputs: Any, mask: Any = None) -> Any:
        forward, forward_last = self.forward.run_sequence(inputs, mask)
        backward, backward_last = self.backward.run_sequence(inputs, mask)
        if self.layer.return_sequences:
            # As in lstmkit's Bidirectional: flip the backward outputs
            # back so that both halves of step t belong to input step t.
            backward = tf.reverse(backward, axis=[1])
        else:
            forward, backward = forward_last, backward_last
        return self.layer._merge(forward, backward)

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return self.layer.compute_mask(inputs, mask)
