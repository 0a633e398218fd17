"""`lstmkit.layers.Bidirectional`: wraps a recurrent layer as Keras does."""

import copy
import logging
from typing import Any

import keras
import tensorflow as tf

from keras.src.utils import tracking

from lstmkit.layers import masks
from lstmkit.layers.rnn import RNN, keras_state_names

logger = logging.getLogger(__name__)

MERGE_MODES = ("concat", "sum", "ave", "mul", None)


@keras.saving.register_keras_serializable(package="lstmkit")
class Bidirectional(keras.layers.Layer):
    """Runs a forward and a backward copy of a recurrent layer, then merges.

    As in `keras.layers.Bidirectional`, the backward copy reads the time axis
    reversed (`go_backwards`) and its output sequence is flipped back, so
    `output[:, t]` of both halves belongs to input step `t`. Masked steps are
    skipped in both directions, so right padding, left padding and holes
    all give the same numbers as `bidirectional_dynamic_rnn` with lengths.
    With `return_sequences`, masked outputs are zeros in both halves.

    Without a mask or `sequence_length`, every step counts as valid, padding
    included. When a row then ends in an all-zero step, the layer warns
    once, naming the fix (not under XLA, see
    `lstmkit.layers.masks.warn_if_unmasked_padding`).

    Args:
        layer: an `lstmkit.layers.LSTM` or `lstmkit.layers.RNN`; copied
            from its config, so neither copy shares weights with it.
        merge_mode: `"concat"` (default, `[forward | backward]`), `"sum"`,
            `"ave"`, `"mul"` or `None` (a list of both outputs).
        backward_layer: optional `lstmkit.layers.LSTM` or
            `lstmkit.layers.RNN` for the backward direction; its
            `go_backwards` must differ from `layer`'s.
        **kwargs: passed to `keras.layers.Layer`.

    Call arguments:
        inputs: `[batch, time, depth]`.
        mask: optional bool `[batch, time]`.
        training: passed to both copies (dropout, the cells' training
            mode).
        initial_state: optional list of the forward states, then the
            backward states, each in Keras' order: `[h_fw, c_fw, h_bw,
            c_bw]` for an LSTM, `[h_fw, h_bw]` for a GRU.
        sequence_length: optional int `[batch]` lengths.

    Example:
        >>> import numpy as np, lstmkit
        >>> layer = lstmkit.layers.Bidirectional(
        ...     lstmkit.layers.LSTM(4, return_sequences=True))
        >>> layer(np.ones([2, 3, 5], "float32")).shape
        TensorShape([2, 3, 8])
    """

    def __init__(
        self,
        layer: RNN,
        merge_mode: str | None = "concat",
        backward_layer: RNN | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_layer("layer", layer)
        if backward_layer is not None:
            _check_layer("backward_layer", backward_layer)
        if merge_mode not in MERGE_MODES:
            raise ValueError(
                f"merge_mode must be one of {MERGE_MODES}; got "
                f"{merge_mode!r}."
            )
        self.merge_mode = merge_mode
        # As Keras does, drop a "forward_" prefix before adding one, so
        # that get_config/from_config round trips keep the names.
        base_name = layer.name.removeprefix("forward_")
        self.forward_layer = _copy_layer(layer, "forward_" + base_name)
        if backward_layer is None:
            config = layer.get_config()
            config["go_backwards"] = not layer.go_backwards
            backward_layer = type(layer).from_config(config)
            backward_layer.name = "backward_" + base_name
        elif backward_layer.go_backwards == layer.go_backwards:
            raise ValueError(
                "backward_layer.go_backwards must differ from "
                "layer.go_backwards so that one copy reads backward, but "
                f"both are {layer.go_backwards}."
            )
        self.backward_layer = backward_layer
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        # As in Keras, both copies output zeros at masked steps exactly
        # when they return sequences. With sequences, the flipped-back
        # backward sequence would otherwise carry outputs into the padding
        # from the wrong side. Without, each copy returns its last valid
        # output rather than zeros for a row that ends in padding.
        self.forward_layer.zero_output_for_mask = self.return_sequences
        self.backward_layer.zero_output_for_mask = self.return_sequences
        self.supports_masking = True
        # Records the unmasked-padding warning inside compiled functions.
        # It is not a weight, so get_weights() stays Keras' list.
        with tracking.DotNotTrackScope():
            self._warned = tf.Variable(
                False, trainable=False, name="unmasked_padding_warned"
            )

    def build(self, input_shape: Any) -> None:
        """Builds both copies for inputs of `input_shape`."""
        # A copy restored by `from_config` may arrive built already, and
        # building it again would add its variables a second time.
        for layer in (self.forward_layer, self.backward_layer):
            if not layer.built:
                layer.build(input_shape)
        self.built = True

    def call(
        self,
        inputs: Any,
        mask: Any = None,
        training: bool | None = None,
        initial_state: Any = None,
        sequence_length: Any = None,
    ) -> Any:
        if mask is None and sequence_length is None:
            masks.warn_if_unmasked_padding(
                tf.convert_to_tensor(inputs), self.name, self._warned
            )
        states_fw, states_bw = self._split_states(initial_state)
        arguments = dict(
            mask=mask, training=training, sequence_length=sequence_length
        )
        forward = self.forward_layer(
            inputs, initial_state=states_fw, **arguments
        )
        backward = self.backward_layer(
            inputs, initial_state=states_bw, **arguments
        )
        if self.return_state:
            forward, *forward_states = forward
            backward, *backward_states = backward
        if self.return_sequences:
            backward = tf.reverse(backward, axis=[1])

        output = self._merge(forward, backward)
        if not self.return_state:
            return output
        output = output if isinstance(output, list) else [output]
        return output + forward_states + backward_states

    def _split_states(self, initial_state: Any) -> tuple[Any, Any]:
        if initial_state is None:
            return None, None
        count = self.forward_layer.state_count
        if len(initial_state) != 2 * count:
            raise ValueError(
                f"initial_state of {self.name} must be "
                f"[{_state_names(self.forward_layer)}]; got "
                f"{len(initial_state)} tensors."
            )
        return list(initial_state[:count]), list(initial_state[count:])

    def _merge(self, forward: tf.Tensor, backward: tf.Tensor) -> Any:
        if self.merge_mode == "concat":
            return tf.concat([forward, backward], axis=-1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "ave":
            return (forward + backward) / 2
        if self.merge_mode == "mul":
            return forward * backward
        return [forward, backward]

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        output_mask = mask if self.return_sequences else None
        if self.merge_mode is None:
            output_mask = [output_mask, output_mask]
        else:
            output_mask = [output_mask]
        if self.return_state:
            output_mask += [None] * (2 * self.forward_layer.state_count)
        return output_mask if len(output_mask) > 1 else output_mask[0]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            layer=keras.saving.serialize_keras_object(self.forward_layer),
            merge_mode=self.merge_mode,
            backward_layer=keras.saving.serialize_keras_object(
                self.backward_layer
            ),
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Bidirectional":
        config = copy.deepcopy(config)
        config["layer"] = keras.saving.deserialize_keras_object(
            config["layer"]
        )
        config["backward_layer"] = keras.saving.deserialize_keras_object(
            config["backward_layer"]
        )
        return cls(**config)


def _check_layer(name: str, layer: Any) -> None:
    if not isinstance(layer, RNN):
        raise TypeError(
            f"{name} must be an lstmkit.layers.LSTM or lstmkit.layers.RNN; "
            f"got {type(layer).__name__}."
        )


def _copy_layer(layer: RNN, name: str) -> RNN:
    config = layer.get_config()
    config["name"] = name
    return type(layer).from_config(config)


def _state_names(layer: RNN) -> str:
    """Names the states of both directions, such as "h_fw, c_fw, h_bw, c_bw"."""
    names = keras_state_names(layer.cell.state_size)
    return ", ".join(
        f"{name}_{direction}" for direction in ("fw", "bw") for name in names
    )
