"""The Keras contract that every public layer configuration must keep.

Each configuration in `LAYER_CASES` goes through the same checks: config
and serialization round trips, a functional model saved to `.keras` and
exported to a SavedModel, XLA compilation, and one training step. Weights
are random and non-zero, and inputs are right-padded and masked by a
`Masking(0.0)` layer, so a lost weight or a dropped mask changes the
outputs.
"""

import dataclasses
from typing import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit
from helpers import FLOAT32_ATOL, assert_close

BATCH, TIME, DEPTH, UNITS = 4, 6, 3, 5
LENGTHS = np.array([6, 4, 2, 1])


@dataclasses.dataclass
class LayerCase:
    """One public layer configuration.

    Attributes:
        make: factory of a new, unbuilt layer.
        stateful: whether the layer carries state between calls. Every
            comparison then starts from zero state, and the model input
            has a fixed batch size.
    """

    make: Callable[[], keras.layers.Layer]
    stateful: bool = False


LSTM = lstmkit.layers.LSTM
RNN = lstmkit.layers.RNN
Bidirectional = lstmkit.layers.Bidirectional

LAYER_CASES = {
    "lstm_keras": LayerCase(lambda: LSTM(UNITS, return_sequences=True)),
    "lstm_keras_state_backwards": LayerCase(
        lambda: LSTM(
            UNITS,
            return_state=True,
            go_backwards=True,
            zero_output_for_mask=True,
            dropout=0.2,
            recurrent_dropout=0.2,
            seed=1,
        )
    ),
    "lstm_tf1": LayerCase(lambda: LSTM(UNITS, semantics="tf1")),
    "lstm_peepholes_proj": LayerCase(
        lambda: LSTM(
            UNITS,
            return_sequences=True,
            return_state=True,
            use_peepholes=True,
            cell_clip=0.5,
            num_proj=3,
            proj_clip=0.4,
            forget_bias=0.5,
        )
    ),
    "lstm_stateful": LayerCase(
        lambda: LSTM(UNITS, return_sequences=True, stateful=True),
        stateful=True,
    ),
    "bidirectional_concat": LayerCase(
        lambda: Bidirectional(LSTM(UNITS, return_sequences=True))
    ),
    "bidirectional_none_state": LayerCase(
        lambda: Bidirectional(
            LSTM(UNITS, return_state=True), merge_mode=None
        )
    ),
    "bidirectional_tf1_sum": LayerCase(
        lambda: Bidirectional(
            LSTM(UNITS, semantics="tf1", return_sequences=True),
            merge_mode="sum",
        )
    ),
    "rnn_gru": LayerCase(
        lambda: RNN(lstmkit.GRUCell(UNITS), return_sequences=True)
    ),
    "rnn_dropout_state_backwards": LayerCase(
        lambda: RNN(
            lstmkit.VariationalDropoutCell(
                lstmkit.LSTMCell(UNITS),
                dropout=0.2,
                recurrent_dropout=0.2,
                seed=1,
            ),
            return_state=True,
            go_backwards=True,
        )
    ),
    "rnn_stateful_gru": LayerCase(
        lambda: RNN(
            lstmkit.GRUCell(UNITS), return_sequences=True, stateful=True
        ),
        stateful=True,
    ),
    "bidirectional_rnn_gru_none_state": LayerCase(
        lambda: Bidirectional(
            RNN(lstmkit.V1GRUCell(UNITS), return_state=True),
            merge_mode=None,
        )
    ),
}
CASE_NAMES = list(LAYER_CASES)


def make_inputs(seed=0):
    """Returns random right-padded inputs, zero at the padded steps."""
    x = np.random.default_rng(seed).normal(size=[BATCH, TIME, DEPTH])
    valid = np.arange(TIME)[None, :] < LENGTHS[:, None]
    return tf.constant(x * valid[:, :, None], tf.float32)


def randomize_layer(layer, seed):
    """Sets every weight to a random value in +-[0.1, 0.8]."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in layer.get_weights():
        magnitude = rng.uniform(0.1, 0.8, size=weight.shape)
        sign = rng.choice([-1.0, 1.0], size=weight.shape)
        values.append((magnitude * sign).astype(weight.dtype))
    layer.set_weights(values)


def as_arrays(result):
    if isinstance(result, dict):
        result = list(result.values())
    if not isinstance(result, (list, tuple)):
        result = [result]
    return [np.asarray(part) for part in result]


def reset_states(layer_or_model):
    """Zeroes the carried state of every stateful lstmkit layer inside."""
    layers = getattr(layer_or_model, "layers", [layer_or_model])
    for layer in layers:
        for sublayer in (layer, *getattr(layer, "_layers", [])):
            if getattr(sublayer, "stateful", False):
                sublayer.reset_states()


def call_fresh(model, x):
    """Calls `model` on `x` from zero state and returns NumPy arrays."""
    reset_states(model)
    return as_arrays(model(x))


def build_model(case_name, seed=3):
    """Returns a functional model `Masking(0.0) -> layer` and the layer."""
    case = LAYER_CASES[case_name]
    batch_size = BATCH if case.stateful else None
    inputs = keras.Input((TIME, DEPTH), batch_size=batch_size)
    layer = case.make()
    outputs = layer(keras.layers.Masking(0.0)(inputs))
    model = keras.Model(inputs, outputs)
    randomize_layer(layer, seed)
    return model, layer


def build_layer(case_name, seed=3):
    """Creates and builds the layer of `case_name` with random weights."""
    layer = LAYER_CASES[case_name].make()
    layer.build((BATCH, TIME, DEPTH))
    randomize_layer(layer, seed)
    return layer


def assert_identical(actual, expected, label):
    assert len(actual) == len(expected), (
        f"{label}: {len(actual)} outputs, expected {len(expected)}"
    )
    for index, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_array_equal(
            a, e, err_msg=f"{label}: output {index} differs"
        )


def assert_within_float32(actual, expected, label):
    """Compares outputs of a compiled graph, which may round differently."""
    assert len(actual) == len(expected), (
        f"{label}: {len(actual)} outputs, expected {len(expected)}"
    )
    for index, (a, e) in enumerate(zip(actual, expected)):
        assert_close(
            a,
            e,
            f"{label}: output {index}",
            FLOAT32_ATOL,
            category="contract compiled outputs",
        )


@pytest.mark.parametrize("case_name", CASE_NAMES)
def test_contract_config_round_trip(case_name):
    layer = build_layer(case_name)
    x = make_inputs()
    mask = tf.constant(np.arange(TIME)[None, :] < LENGTHS[:, None])

    copy = type(layer).from_config(layer.get_config())
    copy.build((BATCH, TIME, DEPTH))
    copy.set_weights(layer.get_weights())
    reset_states(layer)

    assert copy.get_config() == layer.get_config(), (
        f"{case_name}: from_config(get_config()) changed the config"
    )
    assert_identical(
        as_arrays(copy(x, mask=mask)),
        as_arrays(layer(x, mask=mask)),
        f"{case_name} after get_config/from_config",
    )


@pytest.mark.parametrize("case_name", CASE_NAMES)
def test_contract_serialization_round_trip(case_name):
    layer = build_layer(case_name)
    x = make_inputs()

    serialized = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(serialized)
    if not restored.built:
        restored.build((BATCH, TIME, DEPTH))
    restored.set_weights(layer.get_weights())
    reset_states(layer)

    assert type(restored) is type(layer), (
        f"{case_name}: deserialized a {type(restored).__name__}"
    )
    assert restored.get_config() == layer.get_config(), (
        f"{case_name}: serialization changed the config"
    )
    assert_identical(
        as_arrays(restored(x)),
        as_arrays(layer(x)),
        f"{case_name} after serialize/deserialize_keras_object",
    )


@pytest.mark.parametrize("case_name", CASE_NAMES)
def test_contract_keras_file_round_trip(case_name, tmp_path):
    model, _ = build_model(case_name)
    x = make_inputs()
    expected = call_fresh(model, x)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    assert_identical(
        call_fresh(loaded, x), expected, f"{case_name} after .keras save/load"
    )


@pytest.mark.parametrize("case_name", CASE_NAMES)
def test_contract_saved_model_export(case_name, tmp_path):
    model, _ = build_model(case_name)
    x = make_inputs()
    expected = call_fresh(model, x)

    path = str(tmp_path / "exported")
    reset_states(model)
    model.export(path, verbose=False)
    # Keep the restored object alive: its variables die with it.
    restored = tf.saved_model.load(path)
    actual = as_arrays(restored.serve(x))

    assert_within_float32(
        actual, expected, f"{case_name} after export and tf.saved_model.load"
    )


@pytest.mark.parametrize("case_name", CASE_NAMES)
def test_contract_xla_matches_eager(case_name):
    model, _ = build_model(case_name)
    x = make_inputs()
    expected = call_fresh(model, x)
    compiled = tf.function(lambda inputs: model(inputs), jit_compile=True)

    reset_states(model)
    actual = as_arrays(compiled(x))

    assert_within_float32(
        actual, expected, f"{case_name} under tf.function(jit_compile=True)"
    )


def training_model(case_name):
    """Returns the case's model with a Dense head on all outputs.

    Sequences are averaged over their valid steps, which consumes the mask.
    """
    model, layer = build_model(case_name)
    features = []
    for output in model.outputs:
        if len(output.shape) == 3:
            output = keras.layers.GlobalAveragePooling1D()(output)
        features.append(output)
    if len(features) > 1:
        features = [keras.layers.Concatenate()(features)]
    head = keras.layers.Dense(1)(features[0])
    return keras.Model(model.inputs, head), layer


# Compiling a training step with XLA takes seconds per model, so the XLA
# fit runs on the cases that add distinct operations to the step: dropout
# in the layer and in a cell, the stateful assign, v1 options and a
# bidirectional list output.
# test_contract_xla_matches_eager compiles the forward pass of every case.
FIT_CASES = [(name, False) for name in CASE_NAMES] + [
    (name, True)
    for name in (
        "lstm_keras_state_backwards",
        "rnn_dropout_state_backwards",
        "lstm_peepholes_proj",
        "lstm_stateful",
        "bidirectional_none_state",
    )
]


@pytest.mark.parametrize("case_name, jit_compile", FIT_CASES)
def test_contract_fit_step_changes_weights(case_name, jit_compile):
    model, layer = training_model(case_name)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="mse",
        jit_compile=jit_compile,
    )
    before = [np.array(w) for w in layer.trainable_weights]
    targets = np.random.default_rng(4).normal(size=[BATCH, 1])

    history = model.fit(
        make_inputs(), targets, batch_size=BATCH, epochs=1, verbose=0
    )

    loss = history.history["loss"][0]
    assert np.isfinite(loss), f"{case_name}: training loss {loss}"
    for weight, old in zip(layer.trainable_weights, before):
        assert np.any(np.asarray(weight) != old), (
            f"{case_name}: one fit step left {weight.path} unchanged "
            f"(jit_compile={jit_compile})"
        )
