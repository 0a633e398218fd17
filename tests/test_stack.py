"""Stacked RNNs and the trainable initial state on the shared driver."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit
from lstmkit import stack

LENGTHS = np.array([6, 3, 1, 0])


def padded_inputs(depth=4, seed=0):
    x = np.random.default_rng(seed).normal(size=(4, 6, depth))
    x[np.arange(6)[None, :] >= LENGTHS[:, None]] = 0.0
    return x.astype(np.float32)


def test_stack_equals_layers_run_one_by_one():
    cells = [lstmkit.LSTMCell(5), lstmkit.GRUCell(5)]
    x = padded_inputs()

    outputs, states = stack.stacked_dynamic_rnn(
        cells, x, sequence_length=LENGTHS
    )

    hidden, first = lstmkit.dynamic_rnn(cells[0], x, sequence_length=LENGTHS)
    top, second = lstmkit.dynamic_rnn(
        cells[1], hidden, sequence_length=LENGTHS
    )
    np.testing.assert_array_equal(outputs, top)
    np.testing.assert_array_equal(states[0].h, first.h)
    np.testing.assert_array_equal(states[1], second)


def test_stack_residual_adds_layer_inputs():
    cells = [lstmkit.LSTMCell(4), lstmkit.LSTMCell(4)]
    x = padded_inputs()

    outputs, _ = stack.stacked_dynamic_rnn(
        cells, x, sequence_length=LENGTHS, residual=True
    )

    hidden, _ = lstmkit.dynamic_rnn(cells[0], x, sequence_length=LENGTHS)
    top, _ = lstmkit.dynamic_rnn(cells[1], hidden, sequence_length=LENGTHS)
    np.testing.assert_allclose(outputs, top + hidden, atol=1e-7)


def test_stack_residual_rejects_depth_change():
    cells = [lstmkit.LSTMCell(4), lstmkit.LSTMCell(6)]

    with pytest.raises(ValueError, match="reads 4 and outputs 6"):
        stack.stacked_dynamic_rnn(cells, padded_inputs(), residual=True)


def test_stack_dropout_only_while_training():
    cells = [lstmkit.LSTMCell(5), lstmkit.LSTMCell(5)]
    x = padded_inputs()
    seed = tf.constant([3, 4])

    plain, _ = stack.stacked_dynamic_rnn(cells, x, dropout=0.5, seed=seed)
    inference, _ = stack.stacked_dynamic_rnn(
        cells, x, dropout=0.0, training=True
    )
    trained, _ = stack.stacked_dynamic_rnn(
        cells, x, dropout=0.5, training=True, seed=seed
    )
    again, _ = stack.stacked_dynamic_rnn(
        cells, x, dropout=0.5, training=True, seed=seed
    )

    np.testing.assert_array_equal(plain, inference)
    assert np.abs(np.asarray(trained) - np.asarray(plain)).max() > 1e-3
    np.testing.assert_array_equal(trained, again)


def test_stacked_bidirectional_reads_both_directions():
    cells_fw = [lstmkit.LSTMCell(3), lstmkit.LSTMCell(3)]
    cells_bw = [lstmkit.LSTMCell(3), lstmkit.LSTMCell(3)]
    x = padded_inputs()

    outputs, states = stack.stacked_bidirectional_dynamic_rnn(
        cells_fw, cells_bw, x, sequence_length=LENGTHS
    )

    (fw, bw), _ = lstmkit.bidirectional_dynamic_rnn(
        cells_fw[0], cells_bw[0], x, sequence_length=LENGTHS
    )
    below = tf.concat([fw, bw], -1)
    (fw2, bw2), _ = lstmkit.bidirectional_dynamic_rnn(
        cells_fw[1], cells_bw[1], below, sequence_length=LENGTHS
    )
    assert cells_fw[1].input_depth == 6
    assert len(states) == 2
    np.testing.assert_array_equal(outputs, tf.concat([fw2, bw2], -1))


def test_stack_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="got 2 and 1"):
        stack.stacked_bidirectional_dynamic_rnn(
            [lstmkit.LSTMCell(3)] * 2, [lstmkit.LSTMCell(3)], padded_inputs()
        )
    with pytest.raises(ValueError, match="3 entries for 2 layers"):
        stack.stacked_dynamic_rnn(
            [lstmkit.LSTMCell(3), lstmkit.LSTMCell(3)],
            padded_inputs(),
            initial_states=[None, None, None],
        )


def test_trainable_initial_state_learns():
    cell = lstmkit.LSTMCell(4)
    initial = stack.TrainableInitialState(cell)
    x = padded_inputs()
    optimizer = keras.optimizers.Adam(0.05)
    target = tf.ones([4, 4])

    def loss():
        _, state = lstmkit.dynamic_rnn(
            cell,
            x,
            sequence_length=LENGTHS,
            initial_state=initial.initial_state(4),
        )
        # Row 3 has length 0, so its final state is the initial state.
        return tf.reduce_mean((state.h[3] - target[3]) ** 2)

    before = float(loss())
    for _ in range(20):
        with tf.GradientTape() as tape:
            value = loss()
        variables = initial.trainable_variables
        gradients = tape.gradient(value, variables)
        optimizer.apply_gradients(zip(gradients, variables))

    assert float(loss()) < before / 2
    assert [v.shape for v in initial.vectors] == [(4,), (4,)]
