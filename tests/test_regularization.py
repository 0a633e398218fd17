"""Tests of the zoneout and DropConnect cells.

At inference both cells are compared with float64 NumPy references of the
equations in the docstrings of `lstmkit.regularization`. While training,
the random masks are checked by their effect: the fraction of units or
kernel entries that they hit, and the padding rules of the driver.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import lstmkit  # noqa: E402
from lstmkit.regularization import (  # noqa: E402
    DropConnectLSTMCell,
    ZoneoutLSTMCell,
)

BATCH, TIME, DEPTH, UNITS = 4, 5, 3, 4
LENGTHS = np.array([5, 0, 3, 1], np.int32)
FLOAT64_ATOL = 1e-12

# (id, LSTM options) for the reference comparisons.
OPTION_CASES = [
    ("plain", {}),
    (
        "peep_clip_proj",
        {"use_peepholes": True, "cell_clip": 0.5, "num_proj": 3},
    ),
]
OPTION_IDS = [case[0] for case in OPTION_CASES]


def make_cell(cls, options, seed=0, **rates):
    """Builds a float64 cell and sets every variable to random values."""
    cell = cls(UNITS, dtype="float64", **options, **rates)
    cell.build((DEPTH,))
    rng = np.random.default_rng(seed)
    cell.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in cell.weights])
    return cell


def make_inputs(batch=BATCH, time=TIME, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, time, DEPTH))


def initial_state(cell, batch=BATCH, seed=2):
    """Returns a random nonzero state, so that kept units are visible."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-0.5, 0.5, (batch, UNITS))
    h = rng.uniform(-0.5, 0.5, (batch, cell.output_size))
    return lstmkit.LSTMStateTuple(tf.constant(c), tf.constant(h))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm(
    cell, x, lengths, state, kernel_h=None, zoneout_c=0.0, zoneout_h=0.0
):
    """Runs the v1 LSTM in float64 with zoneout's inference update.

    Args:
        cell: a built cell; its weights and options are read.
        x: `[batch, time, depth]`.
        lengths: `[batch]`.
        state: `(c, h)` initial state.
        kernel_h: replaces the h rows of the kernel when given.
        zoneout_c, zoneout_h: the rates of the expectation update.

    Returns:
        `(outputs [batch, time, h_depth], (c, h))` with v1 padding.
    """
    values = dict(zip([w.name for w in cell.weights], cell.get_weights()))
    kernel = values["kernel"]
    kernel_x = kernel[:DEPTH]
    if kernel_h is None:
        kernel_h = kernel[DEPTH:]
    c, h = (np.array(part) for part in state)
    outputs = np.zeros((x.shape[0], x.shape[1], cell.output_size))
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel_x + h @ kernel_h + values["bias"]
        i, j, f, o = np.split(z, 4, axis=1)
        if cell.use_peepholes:
            f = f + values["w_f_diag"] * c
            i = i + values["w_i_diag"] * c
        c_new = sigmoid(f + cell.forget_bias) * c + sigmoid(i) * np.tanh(j)
        if cell.cell_clip is not None:
            c_new = np.clip(c_new, -cell.cell_clip, cell.cell_clip)
        if cell.use_peepholes:
            o = o + values["w_o_diag"] * c_new
        h_new = sigmoid(o) * np.tanh(c_new)
        if cell.num_proj is not None:
            h_new = h_new @ values["projection_kernel"]
        c_new = zoneout_c * c + (1 - zoneout_c) * c_new
        h_new = zoneout_h * h + (1 - zoneout_h) * h_new
        live = (t < lengths)[:, None]
        c = np.where(live, c_new, c)
        h = np.where(live, h_new, h)
        outputs[:, t] = np.where(live, h_new, 0.0)
    return outputs, (c, h)


def run(cell, x, lengths=LENGTHS, state=None):
    outputs, final = lstmkit.dynamic_rnn(
        cell, tf.constant(x), sequence_length=lengths, initial_state=state
    )
    return outputs.numpy(), (final.c.numpy(), final.h.numpy())


def assert_run_close(actual, expected, atol):
    outputs, (c, h) = actual
    ref_outputs, (ref_c, ref_h) = expected
    np.testing.assert_allclose(outputs, ref_outputs, rtol=0, atol=atol)
    np.testing.assert_allclose(c, ref_c, rtol=0, atol=atol)
    np.testing.assert_allclose(h, ref_h, rtol=0, atol=atol)


def assert_run_equal(actual, expected):
    assert_run_close(actual, expected, atol=0)


# Inference against the references.


@pytest.mark.parametrize(
    "options", [case[1] for case in OPTION_CASES], ids=OPTION_IDS
)
def test_zoneout_inference_matches_numpy(options):
    cell = make_cell(ZoneoutLSTMCell, options, zoneout_c=0.3, zoneout_h=0.6)
    x = make_inputs()
    state = initial_state(cell)

    expected = numpy_lstm(
        cell, x, LENGTHS, state, zoneout_c=0.3, zoneout_h=0.6
    )

    assert_run_close(run(cell, x, state=state), expected, FLOAT64_ATOL)


@pytest.mark.parametrize(
    "options", [case[1] for case in OPTION_CASES], ids=OPTION_IDS
)
def test_dropconnect_inference_matches_lstm(options):
    cell = make_cell(DropConnectLSTMCell, options, recurrent_dropconnect=0.5)
    plain = make_cell(lstmkit.LSTMCell, options)
    x = make_inputs()
    state = initial_state(cell)

    actual = run(cell, x, state=state)

    assert_run_equal(actual, run(plain, x, state=state))
    assert_run_close(actual, numpy_lstm(cell, x, LENGTHS, state), FLOAT64_ATOL)


@pytest.mark.parametrize("training", [False, True])
def test_zero_rates_equal_lstm_exactly(training):
    x = make_inputs()
    options = OPTION_CASES[1][1]
    plain = make_cell(lstmkit.LSTMCell, options)
    expected = run(plain, x, state=initial_state(plain))
    zoneout = make_cell(ZoneoutLSTMCell, options)
    dropconnect = make_cell(DropConnectLSTMCell, options)

    for cell in (zoneout, dropconnect):
        cell.training = training
        assert_run_equal(run(cell, x, state=initial_state(cell)), expected)


# Training.


def test_training_differs_from_inference():
    x = make_inputs()
    cells = [
        make_cell(ZoneoutLSTMCell, {}, zoneout_c=0.5, zoneout_h=0.5),
        make_cell(DropConnectLSTMCell, {}, recurrent_dropconnect=0.5),
    ]
    for cell in cells:
        inference, _ = run(cell, x, state=initial_state(cell))
        cell.training = True
        training, _ = run(cell, x, state=initial_state(cell))
        assert not np.allclose(training, inference), cell.name


def test_zoneout_keeps_expected_fraction():
    # 8000 rows of 4 units: 32000 Bernoulli draws per step and state part.
    # With rate p the kept fraction has standard deviation
    # sqrt(p * (1 - p) / 32000), below 0.003, so 0.015 is 5 deviations.
    rate_c, rate_h, batch, tolerance = 0.3, 0.6, 8000, 0.015
    tf.random.set_seed(3)
    cell = make_cell(ZoneoutLSTMCell, {}, zoneout_c=rate_c, zoneout_h=rate_h)
    plain = make_cell(lstmkit.LSTMCell, {})
    cell.training = True
    x = make_inputs(batch=batch, time=1)
    state = initial_state(cell, batch=batch)
    projected = cell.project_inputs(tf.constant(x[:, 0]))

    _, (c, h) = cell.step(projected, state)
    _, (c_new, h_new) = plain.step(projected, state)

    for rate, part, previous, new in (
        (rate_c, c, state.c, c_new),
        (rate_h, h, state.h, h_new),
    ):
        kept = part.numpy() == previous.numpy()
        updated = part.numpy() == new.numpy()
        assert abs(kept.mean() - rate) < tolerance
        # Every unit is either its previous value or the LSTM's new value.
        assert np.all(kept | updated)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_zoneout_new_mask_every_step(mode):
    # Units of h that equal their value of the step before mark the mask of
    # each step. The tolerance is as in the test above, for 8000 * 4 draws.
    rate, batch, tolerance = 0.5, 8000, 0.015
    tf.random.set_seed(4)
    cell = make_cell(ZoneoutLSTMCell, {}, zoneout_h=rate)
    cell.training = True
    x = tf.constant(make_inputs(batch=batch, time=3))

    def forward(x):
        return lstmkit.dynamic_rnn(cell, x)[0]

    if mode != "eager":
        forward = tf.function(forward, jit_compile=mode == "xla")
    outputs = forward(x).numpy()

    kept_1 = outputs[:, 1] == outputs[:, 0]
    kept_2 = outputs[:, 2] == outputs[:, 1]
    assert abs(kept_1.mean() - rate) < tolerance
    assert abs(kept_2.mean() - rate) < tolerance
    # Two independent masks with rate 0.5 agree on half of the units.
    assert abs((kept_1 == kept_2).mean() - 0.5) < tolerance


def test_dropconnect_drops_expected_fraction():
    # 64 h rows by 256 columns: 16384 draws. With rate 0.4 the dropped
    # fraction has standard deviation sqrt(0.24 / 16384) < 0.004, so 0.02
    # is 5 deviations.
    rate, tolerance = 0.4, 0.02
    tf.random.set_seed(5)
    cell = DropConnectLSTMCell(64, recurrent_dropconnect=rate)
    cell.build((DEPTH,))
    cell.training = True
    kernel_h = cell.kernel.numpy()[DEPTH:]

    dropped = cell.recurrent_weights()["kernel_h"].numpy()

    zero = dropped == 0
    assert abs(zero.mean() - rate) < tolerance
    np.testing.assert_allclose(
        dropped[~zero], kernel_h[~zero] / (1 - rate), rtol=1e-6
    )
    cell.training = False
    np.testing.assert_array_equal(
        cell.recurrent_weights()["kernel_h"].numpy(), kernel_h
    )


class CapturingDropConnectCell(DropConnectLSTMCell):
    """Stores the weights that each run uses, to rebuild the run in NumPy."""

    captured = []

    def recurrent_weights(self):
        weights = super().recurrent_weights()
        self.captured.append(weights)
        return weights


def test_dropconnect_same_mask_every_step():
    # The NumPy reference with the captured kernel matches all steps, so
    # every step used the one mask. It also checks the padding rules.
    cell = make_cell(CapturingDropConnectCell, {}, recurrent_dropconnect=0.5)
    cell.training = True
    x = make_inputs()
    state = initial_state(cell)

    actual = run(cell, x, state=state)

    assert len(cell.captured) == 1
    kernel_h = cell.captured[0]["kernel_h"].numpy()
    assert np.any(kernel_h == 0)
    expected = numpy_lstm(cell, x, LENGTHS, state, kernel_h=kernel_h)
    assert_run_close(actual, expected, FLOAT64_ATOL)


def test_zoneout_training_padding():
    cell = make_cell(ZoneoutLSTMCell, {}, zoneout_c=0.5, zoneout_h=0.5)
    cell.training = True
    x = make_inputs()
    state = initial_state(cell)

    outputs, (c, h) = run(cell, x, state=state)

    for row, length in enumerate(LENGTHS):
        assert np.all(outputs[row, length:] == 0), row
        if length > 0:
            np.testing.assert_array_equal(h[row], outputs[row, length - 1])
    # The row of length 0 keeps its initial state.
    np.testing.assert_array_equal(c[1], state.c.numpy()[1])
    np.testing.assert_array_equal(h[1], state.h.numpy()[1])


@pytest.mark.parametrize(
    "cls, rates",
    [
        (ZoneoutLSTMCell, {"zoneout_c": 0.5, "zoneout_h": 0.5}),
        (DropConnectLSTMCell, {"recurrent_dropconnect": 0.5}),
    ],
    ids=["zoneout", "dropconnect"],
)
def test_xla_training(cls, rates):
    cell = make_cell(cls, {}, **rates)
    x = tf.constant(make_inputs())
    lengths = tf.constant(LENGTHS)
    inference, _ = run(cell, x.numpy())
    cell.training = True

    @tf.function(jit_compile=True)
    def forward(x, lengths):
        outputs, state = lstmkit.dynamic_rnn(cell, x, sequence_length=lengths)
        return outputs, state.h

    outputs, h = (value.numpy() for value in forward(x, lengths))

    assert np.all(np.isfinite(outputs))
    assert not np.allclose(outputs, inference)
    for row, length in enumerate(LENGTHS):
        assert np.all(outputs[row, length:] == 0), row
    np.testing.assert_array_equal(h[1], 0)


# Configuration.


@pytest.mark.parametrize(
    "cell",
    [
        ZoneoutLSTMCell(
            UNITS, zoneout_c=0.2, zoneout_h=0.1, num_proj=3, cell_clip=1.0
        ),
        DropConnectLSTMCell(UNITS, recurrent_dropconnect=0.3, forget_bias=0.5),
    ],
    ids=["zoneout", "dropconnect"],
)
def test_config_round_trip(cell):
    cell.training = True
    config = cell.get_config()

    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell)
    )

    assert type(restored) is type(cell)
    assert restored.get_config() == config
    assert restored.training is False


@pytest.mark.parametrize(
    "cls, name",
    [
        (ZoneoutLSTMCell, "zoneout_c"),
        (ZoneoutLSTMCell, "zoneout_h"),
        (DropConnectLSTMCell, "recurrent_dropconnect"),
    ],
)
def test_invalid_rate_raises(cls, name):
    for rate in (-0.1, 1.0, None):
        with pytest.raises(ValueError, match=name):
            cls(UNITS, **{name: rate})
    with pytest.raises(TypeError, match=name):
        cls(UNITS, **{name: "0.5"})
