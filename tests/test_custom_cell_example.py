"""The custom-cell guide's example runs on the driver and matches NumPy."""

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from janet_cell import JanetCell  # noqa: E402

LENGTHS = np.array([6, 3, 1, 0])


def numpy_janet(x, lengths, kernel_x, kernel_h, bias, beta):
    """Runs JANET in float64 from the equations, with v1 padding rules."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    batch, time, _ = x.shape
    units = kernel_h.shape[0]
    c = np.zeros([batch, units])
    outputs = np.zeros([batch, time, units])
    for t in range(time):
        z = x[:, t] @ kernel_x + bias + c @ kernel_h
        f, j = np.split(z, 2, axis=1)
        new = sigmoid(f) * c + (1 - sigmoid(f - beta)) * np.tanh(j)
        live = (t < lengths)[:, None]
        outputs[:, t] = np.where(live, new, 0.0)
        c = np.where(live, new, c)
    return outputs, c


def make_cell(dtype="float64", seed=0):
    cell = JanetCell(5, beta=0.7, dtype=dtype)
    cell.build((3,))
    rng = np.random.default_rng(seed)
    cell.set_weights(
        [rng.uniform(-0.6, 0.6, w.shape) for w in cell.get_weights()]
    )
    return cell


def padded_inputs(seed=1):
    x = np.random.default_rng(seed).normal(size=(4, 6, 3))
    x[np.arange(6)[None, :] >= LENGTHS[:, None]] = 123.0
    return x


def test_janet_matches_numpy_equations():
    cell = make_cell()
    x = padded_inputs()

    outputs, state = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)

    expected, final = numpy_janet(
        x, LENGTHS, *[w for w in cell.get_weights()], beta=0.7
    )
    np.testing.assert_allclose(outputs, expected, atol=1e-12)
    np.testing.assert_allclose(state, final, atol=1e-12)


def test_janet_bidirectional_matches_reversed_rows():
    cell_fw, cell_bw = make_cell(seed=0), make_cell(seed=2)
    x = padded_inputs()

    (_, backward), _ = lstmkit.bidirectional_dynamic_rnn(
        cell_fw, cell_bw, x, sequence_length=LENGTHS
    )

    for row, length in enumerate(LENGTHS):
        if length == 0:
            assert np.all(np.asarray(backward)[row] == 0.0)
            continue
        alone = x[row : row + 1, :length][:, ::-1]
        expected, _ = lstmkit.dynamic_rnn(cell_bw, alone)
        np.testing.assert_allclose(
            np.asarray(backward)[row, :length],
            np.asarray(expected)[0, ::-1],
            atol=1e-12,
        )


def test_janet_padding_reaches_no_gradient():
    cell = make_cell(dtype="float32")
    x = padded_inputs().astype(np.float32)
    junk = x.copy()
    junk[np.arange(6)[None, :] >= LENGTHS[:, None]] = np.nan

    def gradients(inputs):
        with tf.GradientTape() as tape:
            outputs, state = lstmkit.dynamic_rnn(
                cell, inputs, sequence_length=LENGTHS
            )
            loss = tf.reduce_sum(outputs) + tf.reduce_sum(state)
        return tape.gradient(loss, cell.trainable_variables)

    for clean, poisoned in zip(gradients(x), gradients(junk)):
        np.testing.assert_array_equal(clean, poisoned)


def test_janet_xla_equals_eager():
    cell = make_cell(dtype="float32")
    x = tf.constant(padded_inputs(), tf.float32)

    def run(inputs):
        return lstmkit.dynamic_rnn(cell, inputs, sequence_length=LENGTHS)[0]

    compiled = tf.function(run, jit_compile=True)(x)

    np.testing.assert_allclose(compiled, run(x), atol=1e-6)


def test_janet_config_round_trip():
    cell = make_cell()
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell)
    )
    # Deserializing a built layer builds it again from its build config.
    assert restored.built
    restored.set_weights(cell.get_weights())
    x = padded_inputs()

    expected, _ = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    actual, _ = lstmkit.dynamic_rnn(restored, x, sequence_length=LENGTHS)

    assert restored.beta == pytest.approx(0.7)
    np.testing.assert_array_equal(actual, expected)
