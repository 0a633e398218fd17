"""Parity of lstmkit's GRU cells with `keras.layers.GRU` and the v1 GRU.

`GRUCell` is compared with Keras 3's `GRU` layer (masked right padding
against `sequence_length`), `V1GRUCell` with `tf.compat.v1.nn.dynamic_rnn`
and `bidirectional_dynamic_rnn` running the tf_keras copy of the v1
`GRUCell`. Both are also checked against float64 NumPy steps written from
the docstring equations.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    FLOAT32_ATOL,
    FLOAT32_GRAD_ATOL,
    FLOAT32_GRAD_RTOL,
    FLOAT64_ATOL,
    assert_close,
    make_padded_inputs,
    padding_mask,
    sigmoid,
)
from tf_keras.src.layers.rnn.legacy_cells import GRUCell as V1BuiltinGRUCell

import lstmkit
from lstmkit.gru import GRUCell, V1GRUCell

BATCH, TIME, DEPTH, UNITS = 5, 7, 3, 4
# A full row, a length-0 row, a length-1 row and two others.
LENGTHS = np.array([7, 3, 0, 1, 5], np.int32)


def random_values(rng, shape, dtype="float32"):
    """Returns values in +-[0.1, 0.8] with random signs, none near zero."""
    magnitude = rng.uniform(0.1, 0.8, size=shape)
    sign = rng.choice([-1.0, 1.0], size=shape)
    return (magnitude * sign).astype(dtype)


def randomize(layer, seed):
    """Assigns random nonzero values to every weight of a built layer."""
    rng = np.random.default_rng(seed)
    layer.set_weights([random_values(rng, w.shape) for w in layer.weights])


def make_v1_cell(dtype="float32"):
    """Creates the v1 built-in GRU cell and builds it with one step."""
    with warnings.catch_warnings():
        # The v1 cell warns on every construction that it is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        cell = V1BuiltinGRUCell(UNITS, dtype=dtype)
    cell(tf.zeros([1, DEPTH], dtype), tf.zeros([1, UNITS], dtype))
    return cell


def make_inputs(seed, dtype="float32"):
    rng = np.random.default_rng(seed)
    x = make_padded_inputs(rng, BATCH, TIME, DEPTH, LENGTHS, "junk")
    return x.astype(dtype)


def loss_weights(seed, valid):
    """Returns weights for outputs (zero at padded steps) and final state."""
    rng = np.random.default_rng(seed)
    output_weights = rng.normal(size=[BATCH, TIME, UNITS]) * valid[:, :, None]
    state_weights = rng.normal(size=[BATCH, UNITS])
    return output_weights.astype("float32"), state_weights.astype("float32")


def run_with_grads(forward, x, variables, weights):
    """Runs `forward(x) -> (outputs, state)` and differentiates a loss.

    Returns:
        `(outputs, state, [d x] + [d variable, ...])` as NumPy.
    """
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs, state = forward(x)
        loss = tf.reduce_sum(outputs * weights[0]) + tf.reduce_sum(
            state * weights[1]
        )
    grads = tape.gradient(loss, [x] + list(variables))
    return outputs.numpy(), state.numpy(), [g.numpy() for g in grads]


def assert_run_close(actual, expected, label, valid=None):
    outputs, state, grads = actual
    expected_outputs, expected_state, expected_grads = expected
    if valid is not None:
        outputs = outputs[valid]
        expected_outputs = expected_outputs[valid]
    assert_close(
        outputs,
        expected_outputs,
        f"{label} outputs",
        FLOAT32_ATOL,
        category=f"{label} values",
    )
    assert_close(
        state,
        expected_state,
        f"{label} state",
        FLOAT32_ATOL,
        category=f"{label} values",
    )
    assert len(grads) == len(expected_grads)
    for index, (grad, expected_grad) in enumerate(zip(grads, expected_grads)):
        assert_close(
            grad,
            expected_grad,
            f"{label} gradient {index}",
            FLOAT32_GRAD_ATOL,
            FLOAT32_GRAD_RTOL,
            category=f"{label} gradients",
        )


@pytest.mark.parametrize(
    "options",
    [
        {"reset_after": True},
        {"reset_after": False},
        {"reset_after": True, "use_bias": False},
    ],
    ids=["reset_after", "reset_before", "no_bias"],
)
def test_gru_cell_matches_keras_gru(options):
    keras_gru = keras.layers.GRU(
        UNITS, return_sequences=True, return_state=True, **options
    )
    keras_gru.build((None, None, DEPTH))
    randomize(keras_gru, seed=1)
    cell = GRUCell(UNITS, **options)
    cell.build((DEPTH,))
    cell.set_weights(keras_gru.get_weights())
    assert [w.shape for w in cell.weights] == [
        w.shape for w in keras_gru.weights
    ]

    x = make_inputs(seed=2)
    valid = ~padding_mask(LENGTHS, TIME)
    weights = loss_weights(seed=3, valid=valid)
    mask = tf.constant(valid)

    def keras_forward(x):
        outputs, state = keras_gru(x, mask=mask)
        return outputs, state

    def lstmkit_forward(x):
        return lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)

    expected = run_with_grads(keras_forward, x, keras_gru.weights, weights)
    actual = run_with_grads(lstmkit_forward, x, cell.weights, weights)
    assert_run_close(actual, expected, "GRUCell vs Keras", valid=valid)
    # lstmkit outputs zeros past each length, where Keras repeats the
    # last valid output.
    assert np.all(actual[0][~valid] == 0.0)


def test_v1_gru_cell_matches_v1_dynamic_rnn():
    v1_cell = make_v1_cell()
    randomize(v1_cell, seed=4)
    cell = V1GRUCell(UNITS)
    cell.build((DEPTH,))
    cell.set_weights(v1_cell.get_weights())

    x = make_inputs(seed=5)
    weights = loss_weights(seed=6, valid=~padding_mask(LENGTHS, TIME))

    def v1_forward(x):
        return tf.compat.v1.nn.dynamic_rnn(
            v1_cell, x, sequence_length=LENGTHS, dtype=tf.float32
        )

    def lstmkit_forward(x):
        return lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)

    expected = run_with_grads(v1_forward, x, v1_cell.weights, weights)
    actual = run_with_grads(lstmkit_forward, x, cell.weights, weights)
    assert_run_close(actual, expected, "V1GRUCell vs v1")


def test_v1_gru_cell_matches_v1_bidirectional():
    v1_cells = [make_v1_cell(), make_v1_cell()]
    cells = [V1GRUCell(UNITS), V1GRUCell(UNITS)]
    for seed, (v1_cell, cell) in enumerate(zip(v1_cells, cells)):
        randomize(v1_cell, seed=10 + seed)
        cell.build((DEPTH,))
        cell.set_weights(v1_cell.get_weights())

    x = tf.constant(make_inputs(seed=7))
    rng = np.random.default_rng(8)
    valid = ~padding_mask(LENGTHS, TIME)[:, :, None]
    output_weights = [
        (rng.normal(size=[BATCH, TIME, UNITS]) * valid).astype("float32")
        for _ in range(2)
    ]
    state_weights = [
        rng.normal(size=[BATCH, UNITS]).astype("float32") for _ in range(2)
    ]

    def run(function, cell_pair):
        variables = cell_pair[0].weights + cell_pair[1].weights
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs, states = function(
                cell_pair[0],
                cell_pair[1],
                x,
                sequence_length=LENGTHS,
                dtype=tf.float32,
            )
            loss = tf.add_n(
                [
                    tf.reduce_sum(tensor * weight)
                    for tensor, weight in zip(
                        list(outputs) + list(states),
                        output_weights + state_weights,
                    )
                ]
            )
        grads = tape.gradient(loss, [x] + variables)
        return outputs, states, grads

    expected = run(tf.compat.v1.nn.bidirectional_dynamic_rnn, v1_cells)
    actual = run(lstmkit.bidirectional_dynamic_rnn, cells)
    for direction in range(2):
        assert_close(
            actual[0][direction],
            expected[0][direction],
            f"bidirectional output {direction}",
            FLOAT32_ATOL,
            category="V1GRUCell bidirectional values",
        )
        assert_close(
            actual[1][direction],
            expected[1][direction],
            f"bidirectional state {direction}",
            FLOAT32_ATOL,
            category="V1GRUCell bidirectional values",
        )
    for index, (grad, expected_grad) in enumerate(zip(actual[2], expected[2])):
        assert_close(
            grad,
            expected_grad,
            f"bidirectional gradient {index}",
            FLOAT32_GRAD_ATOL,
            FLOAT32_GRAD_RTOL,
            category="V1GRUCell bidirectional gradients",
        )


def numpy_keras_gru_step(x, h, weights, reset_after, use_bias):
    """One `GRUCell` step in float64, from the class docstring."""
    units = h.shape[1]
    kernel, recurrent_kernel = weights[0], weights[1]
    bias = weights[2] if use_bias else None
    x_part = x @ kernel
    if use_bias:
        x_part = x_part + (bias[0] if reset_after else bias)
    x_z, x_r, x_h = np.split(x_part, 3, axis=1)
    if reset_after:
        h_part = h @ recurrent_kernel
        if use_bias:
            h_part = h_part + bias[1]
        h_z, h_r, h_h = np.split(h_part, 3, axis=1)
        z = sigmoid(x_z + h_z)
        r = sigmoid(x_r + h_r)
        candidate = np.tanh(x_h + r * h_h)
    else:
        h_z, h_r = np.split(h @ recurrent_kernel[:, : 2 * units], 2, axis=1)
        z = sigmoid(x_z + h_z)
        r = sigmoid(x_r + h_r)
        candidate = np.tanh(x_h + (r * h) @ recurrent_kernel[:, 2 * units :])
    return z * h + (1 - z) * candidate


def numpy_v1_gru_step(x, h, weights):
    """One `V1GRUCell` step in float64, from the class docstring."""
    gates_kernel, gates_bias, candidate_kernel, candidate_bias = weights
    gates = sigmoid(np.concatenate([x, h], 1) @ gates_kernel + gates_bias)
    r, u = np.split(gates, 2, axis=1)
    candidate = np.tanh(
        np.concatenate([x, r * h], 1) @ candidate_kernel + candidate_bias
    )
    return u * h + (1 - u) * candidate


def numpy_gru_rnn(step, x, lengths):
    """Runs `step(x_t, h) -> h` with v1 length semantics in float64."""
    h = np.zeros([x.shape[0], UNITS])
    outputs = np.zeros([x.shape[0], x.shape[1], UNITS])
    for t in range(x.shape[1]):
        live = (t < lengths)[:, None]
        new_h = step(x[:, t], h)
        h = np.where(live, new_h, h)
        outputs[:, t] = np.where(live, new_h, 0.0)
    return outputs, h


@pytest.mark.parametrize(
    "kind", ["reset_after", "reset_before", "no_bias", "v1"]
)
def test_gru_cells_match_numpy_float64(kind):
    if kind == "v1":
        cell = V1GRUCell(UNITS, dtype="float64")
    else:
        cell = GRUCell(
            UNITS,
            reset_after=kind != "reset_before",
            use_bias=kind != "no_bias",
            dtype="float64",
        )
    cell.build((DEPTH,))
    rng = np.random.default_rng(9)
    cell.set_weights(
        [random_values(rng, w.shape, "float64") for w in cell.weights]
    )
    weights = cell.get_weights()
    x = make_inputs(seed=11, dtype="float64")

    if kind == "v1":

        def step(x_t, h):
            return numpy_v1_gru_step(x_t, h, weights)

    else:

        def step(x_t, h):
            return numpy_keras_gru_step(
                x_t, h, weights, cell.reset_after, cell.use_bias
            )

    expected_outputs, expected_state = numpy_gru_rnn(step, x, LENGTHS)
    outputs, state = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    assert_close(
        outputs,
        expected_outputs,
        "float64 outputs",
        FLOAT64_ATOL,
        category="float64 vs NumPy",
    )
    assert_close(
        state,
        expected_state,
        "float64 state",
        FLOAT64_ATOL,
        category="float64 vs NumPy",
    )


@pytest.mark.parametrize(
    "make_cell",
    [
        lambda: GRUCell(UNITS, reset_after=False, activation="softsign"),
        lambda: V1GRUCell(UNITS, bias_initializer="zeros"),
    ],
    ids=["GRUCell", "V1GRUCell"],
)
def test_gru_config_round_trip(make_cell):
    cell = make_cell()
    config = cell.get_config()
    restored = type(cell).from_config(config)
    assert restored.get_config() == config

    serialized = keras.saving.serialize_keras_object(cell)
    deserialized = keras.saving.deserialize_keras_object(serialized)
    assert type(deserialized) is type(cell)

    x = make_inputs(seed=12)
    outputs, _ = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    deserialized.build((DEPTH,))
    deserialized.set_weights(cell.get_weights())
    restored_outputs, _ = lstmkit.dynamic_rnn(
        deserialized, x, sequence_length=LENGTHS
    )
    np.testing.assert_array_equal(restored_outputs, outputs)


def test_v1_gru_cell_default_initialization():
    cell = V1GRUCell(UNITS)
    cell.build((DEPTH,))
    names = [w.name for w in cell.weights]
    assert names == [
        "gates_kernel",
        "gates_bias",
        "candidate_kernel",
        "candidate_bias",
    ]
    np.testing.assert_array_equal(cell.gates_bias.numpy(), 1.0)
    np.testing.assert_array_equal(cell.candidate_bias.numpy(), 0.0)
    limit = np.sqrt(6.0 / (DEPTH + UNITS + 2 * UNITS))
    assert np.abs(cell.gates_kernel.numpy()).max() <= limit


@pytest.mark.parametrize("kind", ["reset_after", "reset_before", "v1"])
def test_gru_xla_matches_eager(kind):
    if kind == "v1":
        cell = V1GRUCell(UNITS)
    else:
        cell = GRUCell(UNITS, reset_after=kind == "reset_after")
    cell.build((DEPTH,))
    randomize(cell, seed=13)
    x = tf.constant(make_inputs(seed=14))
    lengths = tf.constant(LENGTHS)

    def forward(x, lengths):
        return lstmkit.bidirectional_dynamic_rnn(
            cell, cell, x, sequence_length=lengths
        )

    eager = forward(x, lengths)
    compiled = tf.function(forward, jit_compile=True)(x, lengths)
    for actual, expected in zip(
        tf.nest.flatten(compiled), tf.nest.flatten(eager)
    ):
        assert_close(
            actual, expected, f"XLA {kind}", FLOAT32_ATOL, category="XLA"
        )


def test_gru_initial_state_forms():
    cell = GRUCell(UNITS)
    x = make_inputs(seed=15)
    initial = np.random.default_rng(16).normal(size=[BATCH, UNITS])
    initial = tf.constant(initial, tf.float32)
    _, from_tensor = lstmkit.dynamic_rnn(cell, x, initial_state=initial)
    _, from_list = lstmkit.dynamic_rnn(cell, x, initial_state=[initial])
    np.testing.assert_array_equal(from_list, from_tensor)

    _, zero_length = lstmkit.dynamic_rnn(
        cell,
        x,
        sequence_length=np.zeros(BATCH, np.int32),
        initial_state=initial,
    )
    np.testing.assert_array_equal(zero_length, initial)

    with pytest.raises(ValueError, match="one tensor"):
        lstmkit.dynamic_rnn(cell, x, initial_state=[initial, initial])
    with pytest.raises(ValueError, match="expected"):
        lstmkit.dynamic_rnn(cell, x, initial_state=initial[:, :2])
    with pytest.raises(TypeError, match="cast"):
        lstmkit.dynamic_rnn(
            cell, x, initial_state=tf.cast(initial, tf.float64)
        )


def test_gru_single_step_call_matches_driver():
    cell = V1GRUCell(UNITS)
    x = make_inputs(seed=17)
    outputs, _ = lstmkit.dynamic_rnn(cell, x)
    output, state = cell(x[:, 0], tf.zeros([BATCH, UNITS]))
    assert_close(output, outputs[:, 0], "single step", FLOAT32_ATOL)
    np.testing.assert_array_equal(state, output)
