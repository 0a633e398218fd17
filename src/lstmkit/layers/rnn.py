"""`lstmkit.layers.RNN`: a Keras layer that runs any lstmkit cell."""

import contextlib
import copy
import logging
from typing import Any, Iterator

import keras
import tensorflow as tf
from keras.src.utils import tracking

from lstmkit import rnn, validation
from lstmkit.cells import LSTMStateTuple, takes_dtype_from_inputs
from lstmkit.layers import masks

logger = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="lstmkit")
class RNN(keras.layers.Layer):
    """Runs an lstmkit cell over sequences, with the arguments of Keras' RNN.

    The layer runs the cell with the driver of `lstmkit.dynamic_rnn`, so
    any `lstmkit.RecurrentCell` works: `LSTMCell`, `GRUCell`, the variants,
    `VariationalDropoutCell` and cells of your own. A mask or
    `sequence_length` marks the valid steps. At a masked step the state is
    copied through, and the output is the previous output (Keras' rule), or
    zeros with `zero_output_for_mask=True` (the rule of
    `lstmkit.dynamic_rnn`).

    States, returned with `return_state` and accepted as `initial_state`,
    are a list in Keras' order: `[h, c]` for a cell whose state is an
    `LSTMStateTuple`, otherwise `tf.nest.flatten(state)` (`[h]` for a GRU).
    Under a mixed-precision policy the outputs and h are in the compute
    dtype and an LSTM's c is float32 (docs/precision.md).

    A cell with a `training` attribute (zoneout, DropConnect, variational
    dropout) runs with `cell.training` set to the layer's `training` call
    argument (False when it is `None`). The attribute gets its old value
    back after the call.

    Args:
        cell: an lstmkit cell. The layer builds it, owns its weights and
            saves its config with `keras.saving.serialize_keras_object`.
        return_sequences: return all outputs `[batch, time, output_size]`
            instead of the last one.
        return_state: also return the final state, see above.
        go_backwards: read the time axis reversed (padding included) and
            return outputs in reading order, as Keras does.
        stateful: carry the final state of each batch into the next; needs
            a fixed batch size. `reset_states()` zeroes it.
        zero_output_for_mask: output zeros at masked steps instead of the
            previous output. Without `return_sequences`, the output is
            then zeros for a row whose last step is masked, as in Keras.
        **kwargs: passed to `keras.layers.Layer`. Without `dtype` the
            layer takes the cell's, unless the cell was created without
            one. Such a cell is built in the layer's dtype.

    Call arguments:
        inputs: `[batch, time, depth]`.
        mask: optional bool `[batch, time]`; right or left padding and
            holes all work.
        training: the training mode of the cell, see above.
        initial_state: optional list of state tensors, see above.
        sequence_length: optional int `[batch]` lengths; given with a mask,
            both must mark the same steps.

    Raises:
        TypeError: `cell` is not an lstmkit cell.

    Example:
        >>> import numpy as np, lstmkit
        >>> layer = lstmkit.layers.RNN(
        ...     lstmkit.GRUCell(4), return_sequences=True)
        >>> layer(np.zeros([2, 3, 5], "float32")).shape
        TensorShape([2, 3, 4])
    """

    def __init__(
        self,
        cell: Any,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs,
    ):
        validation.check_cell(cell)
        if kwargs.get("dtype") is None and not takes_dtype_from_inputs(cell):
            kwargs["dtype"] = cell.dtype_policy
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = stateful
        self.zero_output_for_mask = zero_output_for_mask
        self.supports_masking = True
        self.state_variables = None

    @property
    def state_count(self) -> int:
        """Number of state tensors per call (2 for an LSTM, 1 for a GRU)."""
        return len(tf.nest.flatten(self.cell.state_size))

    def build(self, input_shape: Any) -> None:
        """Builds the cell and, when stateful, the state variables."""
        input_shape = tf.TensorShape(input_shape)
        if not self.cell.built:
            if takes_dtype_from_inputs(self.cell):
                self.cell.dtype_policy = self.dtype_policy
            self.cell.build(input_shape[-1:])
        if self.stateful:
            self._build_state_variables(input_shape[0])
        self.built = True

    def _build_state_variables(self, batch: int | None) -> None:
        if batch is None:
            raise ValueError(
                f"{self.name}: stateful=True needs a fixed batch size, but "
                f"the input's batch size is {batch}. Give the input one, "
                "for example keras.Input(shape=..., batch_size=32)."
            )
        sizes = tf.nest.flatten(self.cell.state_size)
        names = _state_variable_names(self.cell.state_size)
        # As in keras.layers.RNN, the carried state is not a weight. It is
        # left out of `weights`, `get_weights()` and `.keras` files, so a
        # stateful layer takes the weights of a stateless one.
        with tracking.DotNotTrackScope():
            self.state_variables = [
                keras.Variable(
                    initializer="zeros",
                    shape=(batch, int(size)),
                    dtype=self.variable_dtype,
                    trainable=False,
                    # Read unrounded under mixed precision, for a float32 c.
                    autocast=False,
                    name=name,
                )
                for name, size in zip(names, sizes)
            ]

    @property
    def variables(self) -> list:
        """All variables, with the carried state of a stateful layer.

        The state is not a weight, but `model.export` saves the variables
        listed here, so an exported stateful model keeps carrying it.
        """
        variables = super().variables
        state = getattr(self, "state_variables", None)
        if state is not None:
            variables = variables + list(state)
        return variables

    def reset_states(self) -> None:
        """Sets the carried state of a stateful layer to zeros."""
        if self.state_variables is not None:
            for variable in self.state_variables:
                variable.assign(tf.zeros_like(variable))

    reset_state = reset_states

    def call(
        self,
        inputs: Any,
        mask: Any = None,
        training: bool | None = None,
        initial_state: Any = None,
        sequence_length: Any = None,
    ) -> Any:
        inputs = validation.as_inputs(inputs, time_major=False)
        validation.check_input_depth(self.cell, inputs)
        x = tf.transpose(inputs, [1, 0, 2])
        batch, time = tf.shape(inputs)[0], tf.shape(inputs)[1]
        valid = masks.step_mask(mask, sequence_length, batch, time)
        if valid is not None:
            valid = tf.transpose(valid)
        if self.go_backwards:
            x = tf.reverse(x, axis=[0])
            valid = None if valid is None else tf.reverse(valid, axis=[0])

        state = self._initial_state(initial_state, batch, inputs.dtype)
        with _cell_training_mode(self.cell, training):
            x, weights = self._dropout(x, batch, training)
            outputs, state, last_output = rnn.run_masked(
                self.cell,
                x,
                valid,
                state,
                carry_output=self._carries_output(),
                weights=weights,
            )
        if self.stateful:
            for variable, value in zip(
                self.state_variables, tf.nest.flatten(state)
            ):
                variable.assign(value)
        if self.zero_output_for_mask and valid is not None:
            # As in Keras, the last output is then zeros for a row whose
            # last step in reading order is masked. `valid[-1:]` keeps an
            # empty time axis valid: there the last output is zeros anyway.
            last_valid = tf.reduce_all(valid[-1:], axis=0)[:, None]
            last_output = tf.where(
                last_valid, last_output, tf.zeros([], last_output.dtype)
            )
        return self._format(outputs, state, last_output)

    def _dropout(self, x: tf.Tensor, batch: Any, training: Any) -> tuple:
        """Returns the inputs and weights for `run_masked`.

        `None` weights let the driver call `cell.recurrent_weights()`.
        Subclasses that add their own dropout override this.
        """
        return x, None

    def _carries_output(self) -> bool:
        return not self.zero_output_for_mask

    def _last_output(self, state: Any, last_output: tf.Tensor) -> tf.Tensor:
        """Returns the output without `return_sequences`."""
        return last_output

    def _initial_state(self, initial_state: Any, batch: Any, dtype: Any):
        if initial_state is not None:
            state = self.state_from_list(initial_state)
            return validation.check_state(
                self.cell, state, batch, dtype, "initial_state"
            )
        if self.stateful:
            # The variables are in the variable dtype (float32 under mixed
            # precision) and each part is read in the dtype the cell
            # keeps it in.
            dtypes = tf.nest.flatten(self.cell.state_dtypes(dtype))
            values = [
                tf.cast(variable.value, part_dtype)
                for variable, part_dtype in zip(self.state_variables, dtypes)
            ]
            return tf.nest.pack_sequence_as(self.cell.state_size, values)
        return self.cell.zero_state(batch, dtype)

    def state_from_list(self, tensors: Any) -> Any:
        """Converts a list of states in Keras' order to the cell's state.

        Args:
            tensors: `[h, c]` for a cell with an `LSTMStateTuple` state,
                otherwise the flattened state. A single tensor is accepted
                for a cell with one state tensor.

        Returns:
            The state in the structure of `cell.state_size`.

        Raises:
            ValueError: the list has the wrong length.
        """
        if tf.is_tensor(tensors) or not isinstance(tensors, (list, tuple)):
            tensors = [tensors]
        tensors = list(tensors)
        if len(tensors) != self.state_count:
            names = ", ".join(keras_state_names(self.cell.state_size))
            raise ValueError(
                f"{self.name}: initial_state must be [{names}]; got "
                f"{len(tensors)} tensors."
            )
        if isinstance(self.cell.state_size, LSTMStateTuple):
            h, c = tensors
            return LSTMStateTuple(c, h)
        return tf.nest.pack_sequence_as(self.cell.state_size, tensors)

    def state_to_list(self, state: Any) -> list:
        """Converts the cell's state to a list in Keras' order.

        Returns:
            `[h, c]` for an `LSTMStateTuple`, else `tf.nest.flatten(state)`.
        """
        if isinstance(state, LSTMStateTuple):
            return [state.h, state.c]
        return tf.nest.flatten(state)

    def _format(self, outputs: tf.Tensor, state: Any, last_output: Any):
        if self.return_sequences:
            output = tf.transpose(outputs, [1, 0, 2])
        else:
            output = self._last_output(state, last_output)
        if self.return_state:
            return [output] + self.state_to_list(state)
        return output

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * self.state_count
        return output_mask

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            cell=keras.saving.serialize_keras_object(self.cell),
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            zero_output_for_mask=self.zero_output_for_mask,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "RNN":
        config = copy.deepcopy(config)
        config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        return cls(**config)


def keras_state_names(state_size: Any) -> list[str]:
    """Names of the states in Keras' order, for messages."""
    if isinstance(state_size, LSTMStateTuple):
        return ["h", "c"]
    sizes = tf.nest.flatten(state_size)
    if len(sizes) == 1:
        return ["h"]
    return [f"state_{index}" for index in range(len(sizes))]


def _state_variable_names(state_size: Any) -> list[str]:
    """Variable names in `tf.nest.flatten(state_size)` order."""
    fields = getattr(state_size, "_fields", None)
    if fields is not None:
        return [f"state_{field}" for field in fields]
    sizes = tf.nest.flatten(state_size)
    if len(sizes) == 1:
        return ["state_h"]
    return [f"state_{index}" for index in range(len(sizes))]


@contextlib.contextmanager
def _cell_training_mode(cell: Any, training: Any) -> Iterator[None]:
    """Sets `cell.training` for one call, when the cell has the attribute.

    The cells read the attribute while the call is traced, so it has to be
    a Python bool by then.
    """
    if not hasattr(cell, "training"):
        yield
        return
    mode = training
    if tf.is_tensor(training):
        mode = tf.get_static_value(training)
        if mode is None:
            raise ValueError(
                f"{type(cell).__name__} reads its training mode while the "
                "layer is traced, but training is a tensor without a "
                "constant value. Pass training=True or False."
            )
    previous = cell.training
    cell.training = bool(mode)
    try:
        yield
    finally:
        cell.training = previous
