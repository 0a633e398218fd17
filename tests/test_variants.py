"""Tests of the LSTM variants against float64 NumPy references.

The references follow the equations in the docstrings of
`lstmkit.variants`. TF Addons is not installed in this environment, so the
"separate" placement with `norm_cell=True` is not compared with TF Addons'
`LayerNormLSTMCell` itself.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import lstmkit  # noqa: E402
from lstmkit.variants import CIFGLSTMCell, LayerNormLSTMCell  # noqa: E402

BATCH, TIME, DEPTH, UNITS = 4, 5, 3, 4
LENGTHS = np.array([5, 0, 3, 1], np.int32)
EPSILON = 1e-3

# (id, class, keyword arguments): every norm placement, with and without
# the cell norm, plus peepholes, clipping and projection.
CASES = [
    ("gates_cell", LayerNormLSTMCell, dict(norm="gates")),
    ("gates", LayerNormLSTMCell, dict(norm="gates", norm_cell=False)),
    ("separate_cell", LayerNormLSTMCell, dict(norm="separate")),
    (
        "separate",
        LayerNormLSTMCell,
        dict(norm="separate", norm_cell=False),
    ),
    ("cell_only", LayerNormLSTMCell, dict(norm=None)),
    (
        "gates_peep_proj",
        LayerNormLSTMCell,
        dict(use_peepholes=True, num_proj=3, cell_clip=0.8, proj_clip=0.5),
    ),
    ("cifg", CIFGLSTMCell, dict()),
    (
        "cifg_peep_proj",
        CIFGLSTMCell,
        dict(use_peepholes=True, num_proj=3, cell_clip=0.8),
    ),
]
CASE_IDS = [case[0] for case in CASES]
# A smaller set for the training check, the slowest one.
MAIN_CASES = [CASES[0], CASES[2], CASES[4], CASES[6]]
MAIN_IDS = [case[0] for case in MAIN_CASES]


def make_cell(cls, kwargs, dtype="float64", seed=0):
    """Builds a cell and sets every variable to random values."""
    cell = cls(UNITS, dtype=dtype, **kwargs)
    cell.build((DEPTH,))
    rng = np.random.default_rng(seed)
    values = []
    for weight in cell.weights:
        value = rng.uniform(-0.6, 0.6, weight.shape)
        if "gamma" in weight.name:
            value = 1.0 + value
        values.append(value)
    cell.set_weights(values)
    return cell


def make_inputs(dtype="float64", seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, TIME, DEPTH)).astype(dtype)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_layer_norm(x, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    variance = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + EPSILON) * gamma + beta


def reference_step(cell, w, x, c, h):
    """Runs one step of the docstring equations in float64 NumPy."""
    units = cell.num_units
    kernel_x, kernel_h = w["kernel"][:DEPTH], w["kernel"][DEPTH:]
    cifg = isinstance(cell, CIFGLSTMCell)
    norm = None if cifg else cell.norm
    if norm == "gates":
        a = x @ kernel_x + h @ kernel_h
        blocks = [
            np_layer_norm(
                a[:, k * units : (k + 1) * units],
                w["gates_gamma"][k * units : (k + 1) * units],
                w["gates_beta"][k * units : (k + 1) * units],
            )
            for k in range(4)
        ]
        z = np.concatenate(blocks, axis=1) + w["bias"]
    elif norm == "separate":
        z = (
            np_layer_norm(x @ kernel_x, w["input_gamma"], w["input_beta"])
            + np_layer_norm(
                h @ kernel_h, w["recurrent_gamma"], w["recurrent_beta"]
            )
            + w["bias"]
        )
    else:
        z = x @ kernel_x + h @ kernel_h + w["bias"]

    peep = cell.use_peepholes
    forget_input = z[:, -2 * units : -units] + cell.forget_bias
    if peep:
        forget_input = forget_input + w["w_f_diag"] * c
    forget_gate = sigmoid(forget_input)
    j = z[:, -3 * units : -2 * units]
    if cifg:
        input_gate = 1.0 - forget_gate
    else:
        i = z[:, :units] + (w["w_i_diag"] * c if peep else 0.0)
        input_gate = sigmoid(i)
    new_c = forget_gate * c + input_gate * np.tanh(j)
    if not cifg and cell.norm_cell:
        new_c = np_layer_norm(new_c, w["cell_gamma"], w["cell_beta"])
    if cell.cell_clip is not None:
        new_c = np.clip(new_c, -cell.cell_clip, cell.cell_clip)
    o = z[:, -units:] + (w["w_o_diag"] * new_c if peep else 0.0)
    m = sigmoid(o) * np.tanh(new_c)
    if cell.num_proj is not None:
        m = m @ w["projection_kernel"]
        if cell.proj_clip is not None:
            m = np.clip(m, -cell.proj_clip, cell.proj_clip)
    return m, new_c


def reference_rnn(cell, x, lengths):
    """Runs the reference over `[batch, time, depth]` with v1 semantics."""
    w = {v.name: np.asarray(v.numpy(), np.float64) for v in cell.weights}
    x = np.asarray(x, np.float64)
    c = np.zeros((BATCH, cell.num_units))
    h = np.zeros((BATCH, cell.output_size))
    outputs = np.zeros((BATCH, TIME, cell.output_size))
    for t in range(TIME):
        m, new_c = reference_step(cell, w, x[:, t], c, h)
        live = (t < lengths)[:, None]
        c = np.where(live, new_c, c)
        h = np.where(live, m, h)
        outputs[:, t] = np.where(live, m, 0.0)
    return outputs, c, h


# Layer norm divides by the standard deviation, which amplifies float32
# rounding: the max float32 difference measured on a 2-core Xeon was
# 8.7e-7 (separate_cell). The bound is 4e-6 so that other CPUs, which may
# round matmuls differently, do not fail on rounding alone.
@pytest.mark.parametrize(
    "dtype, atol", [("float64", 1e-12), ("float32", 4e-6)]
)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_dynamic_rnn_matches_reference(case, dtype, atol):
    _, cls, kwargs = case
    cell = make_cell(cls, kwargs, dtype)
    x = make_inputs(dtype)
    outputs, state = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)
    want_outputs, want_c, want_h = reference_rnn(cell, x, LENGTHS)

    np.testing.assert_allclose(
        outputs.numpy(), want_outputs, rtol=0, atol=atol
    )
    np.testing.assert_allclose(state.c.numpy(), want_c, rtol=0, atol=atol)
    np.testing.assert_allclose(state.h.numpy(), want_h, rtol=0, atol=atol)
    assert outputs.dtype == dtype


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradients_ignore_padding(case):
    _, cls, kwargs = case
    cell = make_cell(cls, kwargs)
    clean = make_inputs()
    junk = clean.copy()
    for row, length in enumerate(LENGTHS):
        clean[row, length:] = 0.0
        junk[row, length:] = np.nan
    junk[2, 4] = 1e30
    gradients = []
    for x in (clean, junk):
        with tf.GradientTape() as tape:
            outputs, state = lstmkit.dynamic_rnn(
                cell, x, sequence_length=LENGTHS
            )
            loss = tf.reduce_sum(outputs**2) + tf.reduce_sum(state.c)
        gradients.append(tape.gradient(loss, cell.trainable_weights))

    for weight, clean_grad, junk_grad in zip(cell.weights, *gradients):
        assert clean_grad is not None, weight.name
        assert np.all(np.isfinite(clean_grad.numpy())), weight.name
        np.testing.assert_array_equal(
            junk_grad.numpy(), clean_grad.numpy(), err_msg=weight.name
        )


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bidirectional_backward_matches_reversed_rows(case):
    _, cls, kwargs = case
    cell_fw = make_cell(cls, kwargs, seed=0)
    cell_bw = make_cell(cls, kwargs, seed=2)
    x = make_inputs()
    (out_fw, out_bw), (state_fw, state_bw) = (
        lstmkit.bidirectional_dynamic_rnn(
            cell_fw, cell_bw, x, sequence_length=LENGTHS
        )
    )
    want_fw, _ = lstmkit.dynamic_rnn(cell_fw, x, sequence_length=LENGTHS)
    np.testing.assert_allclose(out_fw.numpy(), want_fw.numpy(), atol=1e-12)

    for row, length in enumerate(LENGTHS):
        reversed_row = x[row : row + 1, :length][:, ::-1]
        if length == 0:
            np.testing.assert_array_equal(out_bw.numpy()[row], 0.0)
            np.testing.assert_array_equal(state_bw.c.numpy()[row], 0.0)
            continue
        alone, alone_state = lstmkit.dynamic_rnn(cell_bw, reversed_row)
        np.testing.assert_allclose(
            out_bw.numpy()[row, :length],
            alone.numpy()[0, ::-1],
            rtol=0,
            atol=1e-12,
        )
        np.testing.assert_array_equal(out_bw.numpy()[row, length:], 0.0)
        np.testing.assert_allclose(
            state_bw.c.numpy()[row], alone_state.c.numpy()[0], atol=1e-12
        )
        np.testing.assert_allclose(
            state_bw.h.numpy()[row], alone_state.h.numpy()[0], atol=1e-12
        )


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_config_round_trips(case):
    _, cls, kwargs = case
    cell = make_cell(cls, kwargs)
    x = make_inputs()
    want, _ = lstmkit.dynamic_rnn(cell, x, sequence_length=LENGTHS)

    restored = [
        cls.from_config(cell.get_config()),
        keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(cell)
        ),
    ]
    for copy in restored:
        assert type(copy) is cls
        assert copy.get_config() == cell.get_config()
        if not copy.built:
            copy.build((DEPTH,))
        copy.set_weights(cell.get_weights())
        got, _ = lstmkit.dynamic_rnn(copy, x, sequence_length=LENGTHS)
        np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_xla_matches_eager(case):
    _, cls, kwargs = case
    cell = make_cell(cls, kwargs)
    x = tf.constant(make_inputs())
    lengths = tf.constant(LENGTHS)

    def run(x, lengths):
        outputs, state = lstmkit.dynamic_rnn(cell, x, sequence_length=lengths)
        return outputs, state.c, state.h

    eager = run(x, lengths)
    compiled = tf.function(run, jit_compile=True)(x, lengths)
    for got, want in zip(compiled, eager):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-12)


@pytest.mark.parametrize("case", MAIN_CASES, ids=MAIN_IDS)
def test_adam_reduces_loss(case):
    _, cls, kwargs = case
    keras.utils.set_random_seed(0)
    cell = cls(UNITS, dtype="float32", **kwargs)
    head = keras.layers.Dense(1, dtype="float32")
    x = make_inputs("float32", seed=3)
    # Target: running sum of the first input feature, read at the last step.
    target = np.cumsum(x[:, :, :1], axis=1)[:, -1]
    optimizer = keras.optimizers.Adam(0.05)

    def loss_fn():
        outputs, state = lstmkit.dynamic_rnn(cell, x)
        return tf.reduce_mean((head(state.h) - target) ** 2)

    loss_fn()
    variables = cell.trainable_weights + head.trainable_weights

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    first = float(loss_fn())
    for _ in range(30):
        train_step()
    last = float(loss_fn())
    assert last < 0.5 * first, (first, last)


def test_separate_norm_is_hoisted():
    cell = make_cell(LayerNormLSTMCell, dict(norm="separate"))
    x = make_inputs()
    projected = cell.project_inputs(x).numpy()
    w = {v.name: v.numpy() for v in cell.weights}
    normalized = np_layer_norm(
        x @ w["kernel"][:DEPTH], w["input_gamma"], w["input_beta"]
    )
    want = normalized + w["bias"]
    np.testing.assert_allclose(projected, want, rtol=0, atol=1e-12)


def test_no_norm_equals_lstm_cell():
    cell = make_cell(LayerNormLSTMCell, dict(norm=None, norm_cell=False))
    plain = lstmkit.LSTMCell(UNITS, dtype="float64")
    plain.build((DEPTH,))
    plain.set_weights(cell.get_weights())
    x = make_inputs()
    # One kernel for both, so that the comparison is of the cells' math.
    got, _ = lstmkit.dynamic_rnn(
        cell, x, sequence_length=LENGTHS, implementation="autodiff"
    )
    want, _ = lstmkit.dynamic_rnn(
        plain, x, sequence_length=LENGTHS, implementation="autodiff"
    )
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_initial_norm_weights():
    cell = LayerNormLSTMCell(UNITS, norm="separate")
    cell.build((DEPTH,))
    for weight in cell.weights:
        if "gamma" in weight.name:
            np.testing.assert_array_equal(weight.numpy(), 1.0)
        if "beta" in weight.name:
            np.testing.assert_array_equal(weight.numpy(), 0.0)
    assert cell.norm_epsilon == 1e-3


def test_cifg_weight_shapes():
    cell = CIFGLSTMCell(UNITS, use_peepholes=True, num_proj=2)
    cell.build((DEPTH,))
    shapes = {w.name: tuple(w.shape) for w in cell.weights}
    assert shapes == {
        "kernel": (DEPTH + 2, 3 * UNITS),
        "bias": (3 * UNITS,),
        "w_f_diag": (UNITS,),
        "w_o_diag": (UNITS,),
        "projection_kernel": (UNITS, 2),
    }


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(norm="cell"), ValueError, "norm_cell=True"),
        (dict(norm="layer"), ValueError, "norm must be"),
        (dict(norm_cell=1), TypeError, "norm_cell must be a bool"),
        (dict(norm_epsilon=0.0), ValueError, "norm_epsilon"),
        (dict(norm_epsilon="small"), TypeError, "norm_epsilon"),
    ],
)
def test_layer_norm_rejects_invalid_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        LayerNormLSTMCell(UNITS, **kwargs)
