"""Tests of the zoneout, DropConnect and variational dropout cells.

At inference the cells are compared with float64 NumPy references of the
equations in the docstrings of `lstmkit.regularization`. While training,
the random masks are checked by their effect: the fraction of units or
kernel entries that they hit, and the padding rules of the driver.
Variational dropout is also compared, mask for mask, with the NumPy
reference and with Keras' LSTM and GRU layers.
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
    VariationalDropoutCell,
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
    cell,
    x,
    lengths,
    state,
    kernel_h=None,
    zoneout_c=0.0,
    zoneout_h=0.0,
    input_mask=None,
    h_mask=None,
):
    """Runs the v1 LSTM in float64 with zoneout's inference update.

    Args:
        cell: a built cell; its weights and options are read.
        x: `[batch, time, depth]`.
        lengths: `[batch]`.
        state: `(c, h)` initial state.
        kernel_h: replaces the h rows of the kernel when given.
        zoneout_c, zoneout_h: the rates of the expectation update.
        input_mask: `[batch, depth]`, multiplies `x` at every step.
        h_mask: `[batch, h_depth]`, multiplies the previous h in
            `h @ kernel_h` at every step.

    Returns:
        `(outputs [batch, time, h_depth], (c, h))` with v1 padding.
    """
    values = dict(zip([w.name for w in cell.weights], cell.get_weights()))
    kernel = values["kernel"]
    kernel_x = kernel[:DEPTH]
    if kernel_h is None:
        kernel_h = kernel[DEPTH:]
    if input_mask is None:
        input_mask = np.ones((x.shape[0], DEPTH))
    if h_mask is None:
        h_mask = np.ones((x.shape[0], cell.output_size))
    c, h = (np.array(part) for part in state)
    outputs = np.zeros((x.shape[0], x.shape[1], cell.output_size))
    for t in range(x.shape[1]):
        x_t = x[:, t] * input_mask
        z = x_t @ kernel_x + (h * h_mask) @ kernel_h + values["bias"]
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


# Variational dropout.

INPUT_RATE, RECURRENT_RATE = 0.3, 0.4


def make_dropout_cell(inner_cls=lstmkit.LSTMCell, options=None, seed=0,
                      **rates):
    """Wraps a float64 cell with random weights in variational dropout."""
    inner = inner_cls(UNITS, dtype="float64", **(options or {}))
    rates = rates or {
        "dropout": INPUT_RATE,
        "recurrent_dropout": RECURRENT_RATE,
    }
    cell = VariationalDropoutCell(inner, **rates)
    cell.build((DEPTH,))
    rng = np.random.default_rng(seed)
    cell.set_weights([rng.uniform(-0.6, 0.6, w.shape) for w in cell.weights])
    return cell


def fixed_masks(batch, h_depth, seed=6):
    """Returns `{rate: mask}` with scaled Bernoulli masks for both rates."""
    rng = np.random.default_rng(seed)
    masks = {}
    for rate, width in ((INPUT_RATE, DEPTH), (RECURRENT_RATE, h_depth)):
        keep = rng.uniform(size=(batch, width)) >= rate
        masks[rate] = keep / (1 - rate)
    return masks


def use_masks(cell, masks):
    """Makes `cell` draw the given masks, looked up by rate."""

    def draw(shape, rate, dtype):
        assert list(np.asarray(shape)) == list(masks[rate].shape)
        return tf.constant(masks[rate], dtype)

    cell.draw_mask = draw


def record_masks(cell):
    """Records every mask that `cell` draws, by rate, as NumPy arrays."""
    drawn = {}
    original = cell.draw_mask

    def draw(shape, rate, dtype):
        mask = original(shape, rate, dtype)
        drawn.setdefault(rate, []).append(mask.numpy())
        return mask

    cell.draw_mask = draw
    return drawn


@pytest.mark.parametrize(
    "options", [case[1] for case in OPTION_CASES], ids=OPTION_IDS
)
def test_variational_dropout_matches_numpy(options):
    cell = make_dropout_cell(options=options)
    cell.training = True
    masks = fixed_masks(BATCH, cell.output_size)
    use_masks(cell, masks)
    x = make_inputs()
    state = initial_state(cell)

    expected = numpy_lstm(
        cell.cell,
        x,
        LENGTHS,
        state,
        input_mask=masks[INPUT_RATE],
        h_mask=masks[RECURRENT_RATE],
    )

    assert_run_close(run(cell, x, state=state), expected, FLOAT64_ATOL)


def test_variational_dropout_drawn_masks_match_numpy():
    # The run equals the NumPy reference with the two masks it drew, so
    # every step used those masks.
    tf.random.set_seed(7)
    cell = make_dropout_cell()
    cell.training = True
    drawn = record_masks(cell)
    x = make_inputs()
    state = initial_state(cell)

    actual = run(cell, x, state=state)

    assert len(drawn[INPUT_RATE]) == 1
    assert len(drawn[RECURRENT_RATE]) == 1
    input_mask = drawn[INPUT_RATE][0]
    h_mask = drawn[RECURRENT_RATE][0]
    assert np.any(input_mask == 0)
    assert np.any(h_mask == 0)
    expected = numpy_lstm(
        cell.cell, x, LENGTHS, state, input_mask=input_mask, h_mask=h_mask
    )
    assert_run_close(actual, expected, FLOAT64_ATOL)


class RecordingLSTMCell(lstmkit.LSTMCell):
    """Stores the weights that each call of `step` receives."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_weights = []

    def step(self, projected, state, weights=None):
        self.step_weights.append(weights)
        return super().step(projected, state, weights)


def test_variational_dropout_same_mask_every_step():
    # The loop calls only project_inputs, recurrent_weights and step, as a
    # driver or a compiled kernel does.
    tf.random.set_seed(8)
    cell = make_dropout_cell(RecordingLSTMCell)
    cell.training = True
    drawn = record_masks(cell)
    x = tf.transpose(tf.constant(make_inputs()), [1, 0, 2])

    projected = cell.project_inputs(x)
    weights = cell.recurrent_weights()
    # A kernel may trace step again later, for example for its backward
    # pass, when training is already off again.
    cell.training = False
    state = cell.zero_state(BATCH, tf.float64)
    for t in range(TIME):
        _, state = cell.step(projected[t], state, weights)

    h_mask = drawn[RECURRENT_RATE][0]
    assert "h_dropout_mask" not in weights
    assert len(cell.cell.step_weights) == TIME
    for t, step_weights in enumerate(cell.cell.step_weights):
        np.testing.assert_array_equal(
            step_weights["h_dropout_mask"], h_mask, err_msg=f"step {t}"
        )
        assert set(step_weights) == set(weights) | {"h_dropout_mask"}
    assert len(drawn[INPUT_RATE]) == 1


def test_variational_dropout_drops_expected_fraction():
    # 20000 rows: 60000 input draws and 80000 recurrent draws. The dropped
    # fraction has standard deviation below 0.002, so 0.01 is 5 deviations.
    batch, tolerance = 20000, 0.01
    tf.random.set_seed(9)
    cell = make_dropout_cell()
    cell.training = True
    drawn = record_masks(cell)

    x = make_inputs(batch=batch, time=2).transpose(1, 0, 2)
    cell.project_inputs(tf.constant(x))

    for rate in (INPUT_RATE, RECURRENT_RATE):
        mask = drawn[rate][0]
        dropped = mask == 0
        assert abs(dropped.mean() - rate) < tolerance, rate
        np.testing.assert_allclose(mask[~dropped], 1 / (1 - rate))


@pytest.mark.parametrize(
    "inner_cls", [lstmkit.LSTMCell, lstmkit.GRUCell, lstmkit.V1GRUCell]
)
def test_variational_dropout_inference_equals_cell(inner_cls):
    cell = make_dropout_cell(inner_cls)
    x = tf.constant(make_inputs())

    first, _ = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    second, _ = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    plain, _ = lstmkit.dynamic_rnn(cell.cell, x, sequence_length=LENGTHS)

    # The driver may run the plain cell on another kernel, which rounds
    # differently.
    np.testing.assert_allclose(first, plain, rtol=0, atol=FLOAT64_ATOL)
    np.testing.assert_array_equal(second, first)
    cell.training = True
    training, _ = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    assert not np.allclose(training, plain), inner_cls.__name__


def test_variational_dropout_zero_rates_equal_cell():
    cell = make_dropout_cell(dropout=0.0, recurrent_dropout=0.0)
    cell.training = True
    x = make_inputs()
    state = initial_state(cell)

    assert_run_close(
        run(cell, x, state=state),
        run(cell.cell, x, state=state),
        FLOAT64_ATOL,
    )


def keras_dropout_pair(keras_layer, inner_cell):
    """Builds a Keras layer and a wrapped lstmkit cell with its weights."""
    keras_layer.build((None, None, DEPTH))
    rng = np.random.default_rng(10)
    keras_layer.set_weights(
        [rng.uniform(-0.6, 0.6, w.shape) for w in keras_layer.get_weights()]
    )
    cell = VariationalDropoutCell(
        inner_cell, dropout=INPUT_RATE, recurrent_dropout=RECURRENT_RATE
    )
    cell.build((DEPTH,))
    cell.set_weights(keras_layer.get_weights())
    return cell


def use_keras_masks(keras_cell, masks, gates):
    """Gives every gate of a Keras cell the same fixed masks."""
    input_mask = tf.constant(masks[INPUT_RATE], tf.float64)
    h_mask = tf.constant(masks[RECURRENT_RATE], tf.float64)
    keras_cell.get_dropout_mask = lambda step_input: [input_mask] * gates
    keras_cell.get_recurrent_dropout_mask = lambda h: [h_mask] * gates


KERAS_DROPOUT_CASES = {
    "lstm": (
        lambda: keras.layers.LSTM(
            UNITS,
            dropout=INPUT_RATE,
            recurrent_dropout=RECURRENT_RATE,
            return_sequences=True,
            return_state=True,
            dtype="float64",
        ),
        lambda: lstmkit.KerasLSTMCell(UNITS, dtype="float64"),
        4,
    ),
    "gru_reset_after": (
        lambda: keras.layers.GRU(
            UNITS,
            dropout=INPUT_RATE,
            recurrent_dropout=RECURRENT_RATE,
            return_sequences=True,
            return_state=True,
            dtype="float64",
        ),
        lambda: lstmkit.GRUCell(UNITS, dtype="float64"),
        3,
    ),
    "gru_reset_before": (
        lambda: keras.layers.GRU(
            UNITS,
            dropout=INPUT_RATE,
            recurrent_dropout=RECURRENT_RATE,
            reset_after=False,
            return_sequences=True,
            return_state=True,
            dtype="float64",
        ),
        lambda: lstmkit.GRUCell(UNITS, reset_after=False, dtype="float64"),
        3,
    ),
}


@pytest.mark.parametrize("case", list(KERAS_DROPOUT_CASES))
def test_variational_dropout_matches_keras(case):
    # Keras 3 draws one mask per gate. Giving every gate the same mask
    # makes its layer compute what the wrapper computes.
    make_keras, make_inner, gates = KERAS_DROPOUT_CASES[case]
    keras_layer = make_keras()
    cell = keras_dropout_pair(keras_layer, make_inner())
    masks = fixed_masks(BATCH, UNITS)
    use_keras_masks(keras_layer.cell, masks, gates)
    use_masks(cell, masks)
    cell.training = True
    x = tf.constant(make_inputs())

    expected_outputs, *expected_states = keras_layer(x, training=True)
    outputs, state = lstmkit.dynamic_rnn(cell, x)

    np.testing.assert_allclose(outputs, expected_outputs, atol=FLOAT64_ATOL)
    h = state.h if isinstance(state, lstmkit.LSTMStateTuple) else state
    np.testing.assert_allclose(h, expected_states[0], atol=FLOAT64_ATOL)
    if isinstance(state, lstmkit.LSTMStateTuple):
        np.testing.assert_allclose(
            state.c, expected_states[1], atol=FLOAT64_ATOL
        )


def test_variational_dropout_xla_training():
    cell = make_dropout_cell()
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


def test_variational_dropout_seed_repeats_masks():
    x = tf.constant(make_inputs())
    runs = []
    for _ in range(2):
        inner = lstmkit.LSTMCell(UNITS, dtype="float64")
        cell = VariationalDropoutCell(
            inner, dropout=INPUT_RATE, recurrent_dropout=RECURRENT_RATE,
            seed=11,
        )
        cell.build((DEPTH,))
        cell.set_weights([np.full(w.shape, 0.1) for w in cell.weights])
        cell.training = True
        runs.append(lstmkit.dynamic_rnn(cell, x)[0].numpy())

    np.testing.assert_array_equal(runs[0], runs[1])


def unbuilt_dropout_cell():
    return VariationalDropoutCell(
        lstmkit.LSTMCell(UNITS, dtype="float64"),
        dropout=INPUT_RATE,
        recurrent_dropout=RECURRENT_RATE,
    )


def test_variational_dropout_stacked_drivers():
    x = tf.constant(make_inputs())
    uni = [make_dropout_cell(seed=1), unbuilt_dropout_cell()]
    forward = [make_dropout_cell(seed=2), unbuilt_dropout_cell()]
    backward = [make_dropout_cell(seed=3), unbuilt_dropout_cell()]

    def stacks(uni, forward, backward):
        uni_outputs, _ = lstmkit.stacked_dynamic_rnn(
            uni, x, sequence_length=LENGTHS
        )
        bi_outputs, _ = lstmkit.stacked_bidirectional_dynamic_rnn(
            forward, backward, x, sequence_length=LENGTHS
        )
        return uni_outputs.numpy(), bi_outputs.numpy()

    def inner(cells):
        return [cell.cell for cell in cells]

    # The first run builds the upper layers, whose wrapped cells then
    # share their weights.
    inference = stacks(uni, forward, backward)
    plain = stacks(inner(uni), inner(forward), inner(backward))
    for cell in uni + forward + backward:
        cell.training = True
    training = stacks(uni, forward, backward)

    padded = np.arange(TIME)[None, :] >= LENGTHS[:, None]
    for label, got, want, dropped in zip(
        ("stacked", "stacked bidirectional"), inference, plain, training
    ):
        np.testing.assert_allclose(
            got, want, rtol=0, atol=FLOAT64_ATOL, err_msg=label
        )
        assert not np.allclose(dropped, want), label
        assert np.all(dropped[padded] == 0), label


def test_variational_dropout_training_reaches_cell():
    inner = ZoneoutLSTMCell(UNITS, zoneout_h=0.5)
    cell = VariationalDropoutCell(inner, dropout=0.5)

    cell.training = True
    assert inner.training is True
    cell.training = False
    assert inner.training is False


def test_variational_dropout_config_round_trip():
    cell = VariationalDropoutCell(
        lstmkit.GRUCell(UNITS, reset_after=False),
        dropout=0.25,
        recurrent_dropout=0.5,
        seed=3,
    )
    cell.training = True
    config = cell.get_config()

    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell)
    )

    assert type(restored) is VariationalDropoutCell
    assert type(restored.cell) is lstmkit.GRUCell
    assert restored.cell is not cell.cell
    assert restored.get_config() == config
    assert restored.training is False


@pytest.mark.parametrize("name", ["dropout", "recurrent_dropout"])
def test_variational_dropout_invalid_rate_raises(name):
    for rate in (-0.1, 1.0, None):
        with pytest.raises(ValueError, match=rf"{name} must .*got {rate}"):
            VariationalDropoutCell(lstmkit.LSTMCell(UNITS), **{name: rate})
    with pytest.raises(TypeError, match=rf"{name} must .*'0.5'"):
        VariationalDropoutCell(lstmkit.LSTMCell(UNITS), **{name: "0.5"})


class MaskFreeGRUCell(lstmkit.GRUCell):
    """A cell whose step is declared not to apply `h_dropout_mask`."""

    supports_recurrent_dropout = False


def test_variational_dropout_unsupported_cell_raises():
    with pytest.raises(ValueError, match="MaskFreeGRUCell does not"):
        VariationalDropoutCell(MaskFreeGRUCell(UNITS), recurrent_dropout=0.2)
    with pytest.raises(TypeError, match="must be an lstmkit cell"):
        VariationalDropoutCell(keras.layers.LSTMCell(UNITS), dropout=0.2)

    # Input dropout needs nothing from the cell.
    cell = VariationalDropoutCell(MaskFreeGRUCell(UNITS), dropout=0.2)
    cell.training = True
    outputs, _ = lstmkit.dynamic_rnn(cell, tf.ones([2, 3, DEPTH]))
    assert outputs.shape == (2, 3, UNITS)


@pytest.mark.parametrize("inner_cls", [lstmkit.LSTMCell, lstmkit.GRUCell])
def test_variational_dropout_kernels_agree(inner_cls):
    # The derived kernel traces step again for its backward pass after the
    # driver has returned, so step must not depend on cell.training.
    cell = make_dropout_cell(inner_cls)
    cell.training = True
    use_masks(cell, fixed_masks(BATCH, cell.output_size))
    x = tf.constant(make_inputs())
    results = {}

    for implementation in ("autodiff", "derived"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs, _ = lstmkit.dynamic_rnn(
                cell, x, LENGTHS, implementation=implementation
            )
            loss = tf.reduce_sum(outputs * outputs)
        gradients = tape.gradient(loss, [x] + cell.trainable_weights)
        results[implementation] = [outputs] + gradients

    for index, (derived, autodiff) in enumerate(
        zip(results["derived"], results["autodiff"])
    ):
        np.testing.assert_allclose(
            derived, autodiff, rtol=0, atol=1e-11, err_msg=f"result {index}"
        )
