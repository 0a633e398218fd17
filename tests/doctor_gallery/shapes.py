"""The hand-written LSTM in the three shapes of user code.

* `function_adapter`: `lstm(inputs, lengths, weights)` over a dict of
  weight tensors, with `init(input_depth, units)`;
* `keras_adapter`: a `keras.layers.Layer` subclass called with a mask that
  returns `[outputs, h, c]` as `keras.layers.LSTM` does;
* `module_adapter`: a `tf.Module` that owns named `tf.Variable`s.
"""

import keras
import tensorflow as tf

from lstmkit import doctor
from .handwritten import (
    Spec,
    bilstm,
    init_weights,
    lstm,
    ordered_state,
)


def function_adapter(
    spec: Spec, bidirectional: bool = False, **kwargs
) -> doctor.FunctionAdapter:
    """Wraps the spec as a function over explicit weight tensors."""

    def init(depth: int, units: int):
        if bidirectional:
            return (
                init_weights(spec, depth, units),
                init_weights(spec, depth, units),
            )
        return init_weights(spec, depth, units)

    def run(inputs, lengths, weights):
        if bidirectional:
            outputs, states = bilstm(spec, inputs, lengths, *weights)
        else:
            outputs, states = lstm(spec, inputs, lengths, weights)
        return outputs, ordered_state(spec, states, keras_order=False)

    return doctor.FunctionAdapter(
        run, init=init, bidirectional=bidirectional, **kwargs
    )


class GalleryLayer(keras.layers.Layer):
    """The hand-written LSTM as a Keras layer with its own weights."""

    def __init__(self, spec: Spec, units: int, bidirectional: bool, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.units = units
        self.bidirectional = bidirectional
        self.supports_masking = True

    def build(self, input_shape):
        depth = input_shape[-1]
        prefixes = ["fw_", "bw_"] if self.bidirectional else [""]
        self.directions = []
        for prefix in prefixes:
            created = init_weights(self.spec, depth, self.units)
            self.directions.append({
                name: self.add_weight(
                    name=prefix + name,
                    shape=value.shape,
                    initializer=keras.initializers.Constant(value),
                )
                for name, value in created.items()
            })

    def call(self, inputs, mask=None):
        if mask is None:
            mask = tf.ones(tf.shape(inputs)[:2], bool)
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        weights = [
            {name: tf.convert_to_tensor(v) for name, v in direction.items()}
            for direction in self.directions
        ]
        if self.bidirectional:
            outputs, states = bilstm(self.spec, inputs, lengths, *weights)
        else:
            outputs, states = lstm(self.spec, inputs, lengths, weights[0])
        return [outputs, *ordered_state(self.spec, states, keras_order=True)]


def keras_adapter(
    spec: Spec, bidirectional: bool = False, **kwargs
) -> doctor.KerasLayerAdapter:
    """Wraps the spec as a Keras layer called with a mask."""

    def factory(depth: int, units: int) -> GalleryLayer:
        return GalleryLayer(spec, units, bidirectional)

    return doctor.KerasLayerAdapter(
        factory, bidirectional=bidirectional, **kwargs
    )


class GalleryModule(tf.Module):
    """The hand-written LSTM as a `tf.Module` with named variables."""

    def __init__(self, spec: Spec, depth: int, units: int, bidirectional: bool):
        super().__init__()
        self.spec = spec
        self.bidirectional = bidirectional
        prefixes = ["fw_", "bw_"] if bidirectional else [""]
        self.directions = [
            {
                name: tf.Variable(value, name=prefix + name)
                for name, value in init_weights(spec, depth, units).items()
            }
            for prefix in prefixes
        ]

    def __call__(self, inputs, lengths):
        if self.bidirectional:
            outputs, states = bilstm(
                self.spec, inputs, lengths, *self.directions
            )
        else:
            outputs, states = lstm(
                self.spec, inputs, lengths, self.directions[0]
            )
        return outputs, ordered_state(self.spec, states, keras_order=False)


def module_adapter(
    spec: Spec, bidirectional: bool = False, **kwargs
) -> doctor.ModuleAdapter:
    """Wraps the spec as a `tf.Module`."""

    def factory(depth: int, units: int) -> GalleryModule:
        return GalleryModule(spec, depth, units, bidirectional)

    return doctor.ModuleAdapter(
        factory, bidirectional=bidirectional, **kwargs
    )


SHAPES = {
    "function": function_adapter,
    "keras": keras_adapter,
    "module": module_adapter,
}
