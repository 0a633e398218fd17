"""Conformance of every cell on the extension point with the driver's rules.

Each cell in `CELLS` must, under `lstmkit.dynamic_rnn`, equal a plain
Python loop of its own `step`, follow the padding rules, run backward as
each row reversed alone, stack, survive a serialization round trip and give
the same numbers under XLA. In `lstmkit.layers.RNN` and `Bidirectional`
inside a Keras model, it must give the numbers of the drivers, before and
after a `.keras` save and load. A new cell gets these checks by adding a
factory to `CELLS`. Cells with a training mode run in inference mode here.
"""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from janet_cell import JanetCell  # noqa: E402

BATCH, TIME, DEPTH, UNITS = 4, 6, 3, 5
LENGTHS = np.array([6, 3, 1, 0])
FLOAT64_ATOL = 1e-12

CELLS = {
    "lstm": lambda dtype: lstmkit.LSTMCell(UNITS, dtype=dtype),
    "lstm_all_options": lambda dtype: lstmkit.LSTMCell(
        UNITS,
        use_peepholes=True,
        cell_clip=0.4,
        num_proj=3,
        proj_clip=0.3,
        forget_bias=0.5,
        dtype=dtype,
    ),
    "keras_lstm": lambda dtype: lstmkit.KerasLSTMCell(UNITS, dtype=dtype),
    "janet": lambda dtype: JanetCell(UNITS, dtype=dtype),
    "gru_reset_after": lambda dtype: lstmkit.GRUCell(UNITS, dtype=dtype),
    "gru_reset_before": lambda dtype: lstmkit.GRUCell(
        UNITS, reset_after=False, dtype=dtype
    ),
    "v1_gru": lambda dtype: lstmkit.V1GRUCell(UNITS, dtype=dtype),
    "layer_norm_gates": lambda dtype: lstmkit.LayerNormLSTMCell(
        UNITS, dtype=dtype
    ),
    "layer_norm_separate": lambda dtype: lstmkit.LayerNormLSTMCell(
        UNITS, norm="separate", dtype=dtype
    ),
    "cifg": lambda dtype: lstmkit.CIFGLSTMCell(UNITS, dtype=dtype),
    "zoneout": lambda dtype: lstmkit.ZoneoutLSTMCell(
        UNITS, zoneout_c=0.2, zoneout_h=0.1, dtype=dtype
    ),
    "dropconnect": lambda dtype: lstmkit.DropConnectLSTMCell(
        UNITS, recurrent_dropconnect=0.3, dtype=dtype
    ),
    "dropout_lstm": lambda dtype: lstmkit.VariationalDropoutCell(
        lstmkit.LSTMCell(UNITS, dtype=dtype),
        dropout=0.3,
        recurrent_dropout=0.2,
    ),
    "dropout_gru": lambda dtype: lstmkit.VariationalDropoutCell(
        lstmkit.GRUCell(UNITS, dtype=dtype),
        dropout=0.3,
        recurrent_dropout=0.2,
    ),
}


def make_cell(name: str, dtype: str = "float64", seed: int = 0):
    cell = CELLS[name](dtype)
    cell.build((DEPTH,))
    rng = np.random.default_rng(seed)
    cell.set_weights(
        [rng.uniform(-0.7, 0.7, w.shape) for w in cell.get_weights()]
    )
    return cell


def padded_inputs(dtype=np.float64, pad_value=50.0) -> np.ndarray:
    x = np.random.default_rng(7).normal(size=(BATCH, TIME, DEPTH))
    x[np.arange(TIME)[None, :] >= LENGTHS[:, None]] = pad_value
    return x.astype(dtype)


def python_loop(cell, x, lengths):
    """Runs `cell.step` row by row in Python, stopping at each length."""
    outputs = np.zeros([BATCH, TIME, cell.output_size])
    finals = []
    for row in range(BATCH):
        state = cell.zero_state(1, tf.float64)
        for t in range(lengths[row]):
            projected = cell.project_inputs(x[row : row + 1, t])
            output, state = cell.step(projected, state)
            outputs[row, t] = np.asarray(output)[0]
        finals.append(state)
    final = tf.nest.map_structure(
        lambda *parts: np.concatenate([np.asarray(p) for p in parts]),
        *finals,
    )
    return outputs, final


def assert_states_close(actual, expected, atol, label):
    for got, want in zip(tf.nest.flatten(actual), tf.nest.flatten(expected)):
        np.testing.assert_allclose(got, want, atol=atol, err_msg=label)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_driver_equals_python_loop_of_step(name):
    cell = make_cell(name)
    x = padded_inputs()

    outputs, state = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)

    expected, final = python_loop(cell, x, LENGTHS)
    np.testing.assert_allclose(outputs, expected, atol=FLOAT64_ATOL)
    assert_states_close(state, final, FLOAT64_ATOL, name)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_padding_rules_hold(name):
    cell = make_cell(name)
    x = padded_inputs()
    initial = tf.nest.map_structure(
        lambda size: tf.fill([BATCH, size], tf.constant(0.3, tf.float64)),
        cell.state_size,
    )

    outputs, state = lstmkit.dynamic_rnn(
        cell, x, sequence_length=LENGTHS, initial_state=initial
    )
    other, _ = lstmkit.dynamic_rnn(
        cell,
        padded_inputs(pad_value=-9.0),
        sequence_length=LENGTHS,
        initial_state=initial,
    )

    padded = np.arange(TIME)[None, :] >= LENGTHS[:, None]
    assert np.all(np.asarray(outputs)[padded] == 0.0), "padded output"
    np.testing.assert_array_equal(outputs, other, err_msg="padding leaked")
    for part, start in zip(tf.nest.flatten(state), tf.nest.flatten(initial)):
        np.testing.assert_array_equal(
            np.asarray(part)[LENGTHS == 0], np.asarray(start)[LENGTHS == 0]
        )


@pytest.mark.parametrize("name", sorted(CELLS))
def test_backward_equals_rows_reversed_alone(name):
    cell_fw, cell_bw = make_cell(name, seed=1), make_cell(name, seed=2)
    x = padded_inputs()

    (_, backward), (_, state_bw) = lstmkit.bidirectional_dynamic_rnn(
        cell_fw, cell_bw, x, sequence_length=LENGTHS
    )

    for row, length in enumerate(LENGTHS):
        if length == 0:
            continue
        alone = x[row : row + 1, :length][:, ::-1]
        expected, final = lstmkit.dynamic_rnn(cell_bw, alone)
        np.testing.assert_allclose(
            np.asarray(backward)[row, :length],
            np.asarray(expected)[0, ::-1],
            atol=FLOAT64_ATOL,
        )
        assert_states_close(
            tf.nest.map_structure(lambda s: s[row : row + 1], state_bw),
            final,
            FLOAT64_ATOL,
            f"{name} row {row}",
        )


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cells_stack(name):
    first = make_cell(name, seed=3)
    second = CELLS[name]("float64")
    x = padded_inputs()

    hidden, _ = lstmkit.dynamic_rnn(first, x, sequence_length=LENGTHS)
    outputs, _ = lstmkit.dynamic_rnn(second, hidden, sequence_length=LENGTHS)

    assert outputs.shape == (BATCH, TIME, second.output_size)
    assert second.input_depth == first.output_size


@pytest.mark.parametrize("name", sorted(CELLS))
def test_serialization_round_trip(name):
    cell = make_cell(name)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell)
    )
    if not restored.built:
        restored.build((DEPTH,))
    restored.set_weights(cell.get_weights())
    x = padded_inputs()

    expected, _ = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    actual, _ = lstmkit.dynamic_rnn(restored, x, sequence_length=LENGTHS)

    np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_xla_equals_eager(name):
    cell = make_cell(name, dtype="float32")
    x = tf.constant(padded_inputs(np.float32))

    def run(inputs):
        return lstmkit.dynamic_rnn(cell, inputs, sequence_length=LENGTHS)[0]

    compiled = tf.function(run, jit_compile=True)(x)

    np.testing.assert_allclose(compiled, run(x), atol=1e-6)


def masked_model(layer):
    """Returns a float64 model `Masking(PAD) -> layer` over [TIME, DEPTH]."""
    inputs = keras.Input((TIME, DEPTH), dtype="float64")
    masked = keras.layers.Masking(PAD, dtype="float64")(inputs)
    return keras.Model(inputs, layer(masked))


def as_arrays(result):
    if not isinstance(result, (list, tuple)):
        result = [result]
    return [np.asarray(part) for part in result]


def assert_all_close(actual, expected, label):
    assert len(actual) == len(expected), (
        f"{label}: {len(actual)} outputs, expected {len(expected)}"
    )
    for index, (got, want) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(
            got,
            want,
            rtol=0,
            atol=FLOAT64_ATOL,
            err_msg=f"{label}: output {index}",
        )


def save_and_load(model, path):
    model.save(path)
    return keras.models.load_model(path)


# Every padded step contains PAD in every feature, so Masking(PAD) rebuilds
# the lengths.
PAD = 50.0


@pytest.mark.parametrize("name", sorted(CELLS))
def test_keras_layer_round_trip(name, tmp_path):
    cell = make_cell(name)
    layer = lstmkit.layers.RNN(
        cell,
        return_sequences=True,
        return_state=True,
        zero_output_for_mask=True,
    )
    model = masked_model(layer)
    x = padded_inputs(pad_value=PAD)

    outputs, state = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    expected = as_arrays([outputs] + layer.state_to_list(state))

    assert_all_close(as_arrays(model(x)), expected, f"{name} in a model")
    loaded = save_and_load(model, tmp_path / "model.keras")
    assert_all_close(as_arrays(loaded(x)), expected, f"{name} after load")


@pytest.mark.parametrize("name", sorted(CELLS))
def test_keras_bidirectional_round_trip(name, tmp_path):
    # Without dtype the wrapper would compute in float32 and cast the
    # inputs, as keras.layers.Bidirectional does.
    layer = lstmkit.layers.Bidirectional(
        lstmkit.layers.RNN(
            CELLS[name]("float64"), return_sequences=True, return_state=True
        ),
        dtype="float64",
    )
    model = masked_model(layer)
    rng = np.random.default_rng(4)
    layer.set_weights(
        [rng.uniform(-0.7, 0.7, w.shape) for w in layer.get_weights()]
    )
    x = padded_inputs(pad_value=PAD)
    forward, backward = layer.forward_layer, layer.backward_layer

    (output_fw, output_bw), (state_fw, state_bw) = (
        lstmkit.bidirectional_dynamic_rnn(
            forward.cell, backward.cell, x, sequence_length=LENGTHS
        )
    )
    expected = as_arrays(
        [tf.concat([output_fw, output_bw], axis=-1)]
        + forward.state_to_list(state_fw)
        + backward.state_to_list(state_bw)
    )

    assert_all_close(as_arrays(model(x)), expected, f"{name} in a model")
    loaded = save_and_load(model, tmp_path / "model.keras")
    assert_all_close(as_arrays(loaded(x)), expected, f"{name} after load")
