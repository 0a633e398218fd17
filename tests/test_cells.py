"""Tests of `lstmkit.LSTMCell` against the v1 `LSTMCell`: initialization,
variables, state sizes, one-step calls, configs and constructor errors."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import lstmkit
from helpers import (
    FLOAT32_ATOL,
    OPTION_CASES,
    V1LSTMStateTuple,
    assert_close,
    build_v1_cell,
    make_cell_pair,
    weight_names,
)

# Shapes of the initialization tests: large enough that sample statistics
# pin down the distribution (see uniform_variance_rtol).
INIT_DEPTH, INIT_UNITS, INIT_PROJ = 300, 200, 100
BATCH, DEPTH, UNITS = 5, 3, 4


def uniform_variance_rtol(sample_size: int) -> float:
    """Returns 6 standard errors of the sample variance of U(-L, L) / (L²/3).

    For X ~ U(-L, L), X² has mean L²/3 and variance 4L⁴/45, so the mean of
    n values of X², divided by L²/3, has standard error sqrt(0.8 / n).
    A correct initializer fails this bound with probability below 1e-8.
    """
    return 6.0 * math.sqrt(0.8 / sample_size)


def assert_glorot_uniform(values, limit, label):
    """Asserts that `values` look like independent draws of U(-limit, limit).

    Checks the bounds, that the extremes reach the limit, the variance, and
    a flat 10-bin histogram. A Glorot normal or truncated normal sample has
    the same variance but exceeds the limit, and a wrong limit fails the
    bounds or the extremes.
    """
    values = np.asarray(values, np.float64).ravel()
    n = values.size
    assert np.abs(values).max() <= limit, (
        f"{label}: max |value| {np.abs(values).max():.6g} exceeds the Glorot "
        f"uniform limit {limit:.6g}"
    )
    # The largest of n uniform draws falls short of the limit by about
    # limit / n, so a slack of 30 / n fails with probability about exp(-15).
    slack = max(30.0 / n, 1e-4)
    assert values.max() >= limit * (1 - slack), (
        f"{label}: max {values.max():.6g} is not close to the limit "
        f"{limit:.6g} ({n} samples)"
    )
    assert values.min() <= -limit * (1 - slack), (
        f"{label}: min {values.min():.6g} is not close to -{limit:.6g} "
        f"({n} samples)"
    )
    variance_ratio = np.mean(values**2) / (limit**2 / 3)
    rtol = uniform_variance_rtol(n)
    assert abs(variance_ratio - 1) <= rtol, (
        f"{label}: mean of squares / (L²/3) = {variance_ratio:.4f}, expected "
        f"1 within {rtol:.4f} for {n} samples"
    )
    if n >= 10_000:
        counts, _ = np.histogram(values, bins=10, range=(-limit, limit))
        # Each bin count is binomial with p = 0.1. The bound is 6 standard
        # errors.
        bound = 6.0 * math.sqrt(n * 0.1 * 0.9)
        assert np.all(np.abs(counts - n / 10) <= bound), (
            f"{label}: histogram {counts.tolist()} is not flat; each bin "
            f"should hold {n / 10:.0f} +- {bound:.0f}"
        )


@pytest.mark.parametrize("num_proj", [None, INIT_PROJ])
def test_lstm_cell_default_kernel_is_glorot_uniform(num_proj):
    cell = lstmkit.LSTMCell(INIT_UNITS, num_proj=num_proj)
    cell.build((INIT_DEPTH,))
    h_depth = num_proj or INIT_UNITS
    limit = math.sqrt(6 / (INIT_DEPTH + h_depth + 4 * INIT_UNITS))
    assert_glorot_uniform(cell.kernel.numpy(), limit, "lstmkit kernel")


@pytest.mark.parametrize("num_proj", [None, INIT_PROJ])
def test_lstm_cell_kernel_statistics_match_v1(num_proj):
    ours = lstmkit.LSTMCell(INIT_UNITS, num_proj=num_proj)
    ours.build((INIT_DEPTH,))
    v1 = build_v1_cell(INIT_DEPTH, INIT_UNITS, num_proj=num_proj)
    ours_kernel = ours.kernel.numpy()
    v1_kernel = v1.weights[0].numpy()
    h_depth = num_proj or INIT_UNITS
    limit = math.sqrt(6 / (INIT_DEPTH + h_depth + 4 * INIT_UNITS))

    assert ours_kernel.shape == v1_kernel.shape, (
        f"kernel shape {ours_kernel.shape} differs from v1 {v1_kernel.shape}"
    )
    assert_glorot_uniform(v1_kernel, limit, "v1 kernel")
    # Two independent samples: the difference of their variance ratios has
    # sqrt(2) times the standard error of one.
    rtol = math.sqrt(2) * uniform_variance_rtol(ours_kernel.size)
    ours_var, v1_var = ours_kernel.var(), v1_kernel.var()
    assert abs(ours_var / v1_var - 1) <= rtol, (
        f"kernel variance {ours_var:.6g} differs from v1's {v1_var:.6g} by "
        f"more than {rtol:.4f} relative"
    )
    ours_max, v1_max = np.abs(ours_kernel).max(), np.abs(v1_kernel).max()
    assert abs(ours_max - v1_max) <= 1e-3 * limit, (
        f"max |kernel| {ours_max:.6g} differs from v1's {v1_max:.6g}"
    )


def test_lstm_cell_default_peepholes_are_glorot_uniform():
    ours = lstmkit.LSTMCell(INIT_UNITS, use_peepholes=True)
    ours.build((DEPTH,))
    v1 = build_v1_cell(DEPTH, INIT_UNITS, use_peepholes=True)
    # Glorot uniform of a [u] vector: fan_in = fan_out = u.
    limit = math.sqrt(3 / INIT_UNITS)
    ours_pooled = np.concatenate(
        [ours.w_f_diag.numpy(), ours.w_i_diag.numpy(), ours.w_o_diag.numpy()]
    )
    v1_pooled = np.concatenate([w.numpy() for w in v1.weights[2:5]])
    assert_glorot_uniform(ours_pooled, limit, "lstmkit peepholes")
    assert_glorot_uniform(v1_pooled, limit, "v1 peepholes")


def test_lstm_cell_default_projection_is_glorot_uniform():
    ours = lstmkit.LSTMCell(INIT_UNITS, num_proj=INIT_PROJ)
    ours.build((DEPTH,))
    v1 = build_v1_cell(DEPTH, INIT_UNITS, num_proj=INIT_PROJ)
    limit = math.sqrt(6 / (INIT_UNITS + INIT_PROJ))
    assert_glorot_uniform(
        ours.projection_kernel.numpy(), limit, "lstmkit projection_kernel"
    )
    assert_glorot_uniform(v1.weights[2].numpy(), limit, "v1 projection")


def test_lstm_cell_unseeded_initializer_draws_per_variable():
    cell = lstmkit.LSTMCell(
        UNITS,
        use_peepholes=True,
        initializer=keras.initializers.RandomUniform(),
    )
    cell.build((DEPTH,))
    peepholes = [cell.w_f_diag, cell.w_i_diag, cell.w_o_diag]
    for index, first in enumerate(peepholes):
        for second in peepholes[index + 1:]:
            assert not np.array_equal(first.numpy(), second.numpy()), (
                f"{first.name} and {second.name} hold the same values"
            )


def test_lstm_cell_seeded_initializer_matches_v1():
    """A seeded initializer gives the v1 cell's values, repeats included."""
    options = {"use_peepholes": True, "num_proj": 3}
    ours = lstmkit.LSTMCell(
        UNITS, initializer=keras.initializers.RandomUniform(seed=3), **options
    )
    ours.build((DEPTH,))
    v1 = build_v1_cell(
        DEPTH,
        UNITS,
        initializer=tf_keras.initializers.RandomUniform(seed=3),
        **options,
    )
    for name, a, b in zip(weight_names(options), ours.get_weights(),
                          v1.get_weights()):
        assert np.array_equal(a, b), (
            f"{name} differs from the v1 cell's with the same seed"
        )


@pytest.mark.parametrize("initializer", [None, "ones"])
def test_lstm_cell_bias_is_zero(initializer):
    cell = lstmkit.LSTMCell(UNITS, use_peepholes=True, initializer=initializer)
    cell.build((DEPTH,))
    assert np.all(cell.bias.numpy() == 0.0), (
        f"bias with initializer={initializer!r} is not all zeros: "
        f"{cell.bias.numpy()}"
    )


@pytest.mark.parametrize(
    "initializer,v1_initializer,value",
    [
        (keras.initializers.Constant(0.5), tf_keras.initializers.Constant(0.5),
         0.5),
        ("ones", "ones", 1.0),
        ({"class_name": "Constant", "config": {"value": 0.25}},
         tf_keras.initializers.Constant(0.25), 0.25),
    ],
    ids=["object", "name", "config"],
)
def test_lstm_cell_initializer_applies_to_all_but_bias(
    initializer, v1_initializer, value
):
    options = {"use_peepholes": True, "num_proj": 3}
    ours = lstmkit.LSTMCell(UNITS, initializer=initializer, **options)
    ours.build((DEPTH,))
    v1 = build_v1_cell(DEPTH, UNITS, initializer=v1_initializer, **options)
    for name, variable in zip(weight_names(options), ours.get_weights()):
        expected = 0.0 if name == "bias" else value
        assert np.all(variable == expected), (
            f"{name} with initializer={initializer!r} is not all {expected}"
        )
    for name, a, b in zip(weight_names(options), ours.get_weights(),
                          v1.get_weights()):
        assert np.array_equal(a, b), (
            f"{name} differs from the v1 cell's with the same initializer"
        )


@pytest.mark.parametrize("option", list(OPTION_CASES))
def test_lstm_cell_variables_match_v1(option):
    options = OPTION_CASES[option]
    v1, ours = make_cell_pair(DEPTH, UNITS, seed=1, **options)
    names = [w.name for w in ours.weights]
    assert names == weight_names(options), (
        f"variable names {names}, expected {weight_names(options)}"
    )
    paths = [w.path for w in ours.weights]
    assert paths == [f"lstm_cell/{name}" for name in names], (
        f"variable paths {paths}"
    )
    v1_short_names = [
        w.name.split("/", 1)[1].split(":")[0].replace("/", "_")
        for w in v1.weights
    ]
    assert names == v1_short_names, (
        f"variable order {names} differs from v1's {v1_short_names}"
    )
    shapes = [tuple(w.shape) for w in ours.weights]
    v1_shapes = [tuple(w.shape) for w in v1.weights]
    assert shapes == v1_shapes, f"shapes {shapes} differ from v1 {v1_shapes}"


@pytest.mark.parametrize("option", list(OPTION_CASES))
def test_lstm_cell_set_weights_from_v1(option):
    v1, ours = make_cell_pair(DEPTH, UNITS, seed=2, **OPTION_CASES[option])
    for name, a, b in zip(weight_names(OPTION_CASES[option]),
                          ours.get_weights(), v1.get_weights()):
        assert np.array_equal(a, b), f"{name} differs after set_weights"


@pytest.mark.parametrize("option", list(OPTION_CASES))
def test_lstm_cell_sizes_match_v1(option):
    options = OPTION_CASES[option]
    v1, ours = make_cell_pair(DEPTH, UNITS, seed=3, **options)
    assert tuple(ours.state_size) == tuple(v1.state_size), (
        f"state_size {ours.state_size} differs from v1 {v1.state_size}"
    )
    assert isinstance(ours.state_size, lstmkit.LSTMStateTuple), (
        f"state_size is a {type(ours.state_size).__name__}"
    )
    assert ours.output_size == v1.output_size, (
        f"output_size {ours.output_size} differs from v1 {v1.output_size}"
    )


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("option", ["default", "num_proj"])
def test_lstm_cell_zero_state_matches_v1(option, dtype):
    v1, ours = make_cell_pair(DEPTH, UNITS, seed=4, **OPTION_CASES[option])
    state = ours.zero_state(BATCH, dtype)
    v1_state = v1.zero_state(BATCH, dtype)
    assert isinstance(state, lstmkit.LSTMStateTuple), (
        f"zero_state returned a {type(state).__name__}"
    )
    for field in ("c", "h"):
        part, v1_part = getattr(state, field), getattr(v1_state, field)
        assert part.shape == v1_part.shape, (
            f"zero_state.{field} shape {part.shape} differs from v1 "
            f"{v1_part.shape}"
        )
        assert part.dtype == v1_part.dtype, (
            f"zero_state.{field} dtype {part.dtype} differs from v1 "
            f"{v1_part.dtype}"
        )
        assert np.all(part.numpy() == 0.0), f"zero_state.{field} is not 0"


@pytest.mark.parametrize("state_kind", ["lstmkit", "v1", "tuple"])
@pytest.mark.parametrize("option", list(OPTION_CASES))
def test_lstm_cell_one_step_matches_v1(option, state_kind):
    v1, ours = make_cell_pair(DEPTH, UNITS, seed=5, **OPTION_CASES[option])
    rng = np.random.default_rng(6)
    x = tf.constant(rng.normal(size=[BATCH, DEPTH]), tf.float32)
    c = tf.constant(rng.normal(size=[BATCH, UNITS]), tf.float32)
    h = tf.constant(rng.normal(size=[BATCH, ours.output_size]), tf.float32)
    state = {
        "lstmkit": lstmkit.LSTMStateTuple(c, h),
        "v1": V1LSTMStateTuple(c, h),
        "tuple": (c, h),
    }[state_kind]

    output, new_state = ours(x, state)
    v1_output, v1_state = v1(x, V1LSTMStateTuple(c, h))
    assert isinstance(new_state, lstmkit.LSTMStateTuple), (
        f"new state is a {type(new_state).__name__}"
    )
    assert_close(output, v1_output, "one-step output", FLOAT32_ATOL,
                 category="outputs")
    assert_close(new_state.c, v1_state.c, "one-step c", FLOAT32_ATOL,
                 category="states")
    assert_close(new_state.h, v1_state.h, "one-step h", FLOAT32_ATOL,
                 category="states")


CONFIG_CASES = {
    "default": {},
    "all_options": dict(OPTION_CASES["all"]),
    "objects": {
        "initializer": keras.initializers.Constant(0.5),
        "activation": keras.activations.softsign,
        "num_proj": 2,
    },
    "float64": {"dtype": "float64", "use_peepholes": True},
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_lstm_cell_config_round_trip(case):
    cell = lstmkit.LSTMCell(UNITS, name="encoder_cell", **CONFIG_CASES[case])
    config = cell.get_config()
    restored = lstmkit.LSTMCell.from_config(config)
    assert restored.get_config() == config, (
        f"from_config(get_config()) changed the config: "
        f"{restored.get_config()} vs {config}"
    )
    for attribute in ("num_units", "use_peepholes", "cell_clip", "num_proj",
                      "proj_clip", "forget_bias", "name", "dtype"):
        assert getattr(restored, attribute) == getattr(cell, attribute), (
            f"{attribute} changed by the round trip"
        )


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_lstm_cell_restored_cell_computes_the_same(case):
    cell = lstmkit.LSTMCell(UNITS, **CONFIG_CASES[case])
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell)
    )
    assert type(restored) is lstmkit.LSTMCell, (
        f"deserialized a {type(restored).__name__}"
    )
    assert restored.get_config() == cell.get_config(), (
        "serialize/deserialize changed the config"
    )
    cell.build((DEPTH,))
    restored.build((DEPTH,))
    rng = np.random.default_rng(7)
    restored.set_weights(
        [rng.normal(size=w.shape) * 0.5 for w in cell.get_weights()]
    )
    cell.set_weights(restored.get_weights())
    dtype = cell.compute_dtype
    x = tf.constant(rng.normal(size=[BATCH, DEPTH]), dtype)
    # A non-zero c, so that the forget gate and forget_bias matter.
    state = lstmkit.LSTMStateTuple(
        tf.constant(rng.normal(size=[BATCH, UNITS]), dtype),
        tf.constant(rng.normal(size=[BATCH, cell.output_size]), dtype),
    )
    output, _ = cell(x, state)
    restored_output, _ = restored(x, state)
    assert np.array_equal(output.numpy(), restored_output.numpy()), (
        "the deserialized cell computes different outputs"
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_units": 0}, r"num_units must be a positive integer; got 0\b"),
        ({"num_units": -3}, r"num_units .*got -3\b"),
        ({"num_units": 2.5}, r"num_units .*got 2\.5\b"),
        ({"num_units": True}, r"num_units .*got True\b"),
        ({"num_units": 4, "num_proj": 0}, r"num_proj .*got 0\b"),
        ({"num_units": 4, "proj_clip": 0.5}, r"proj_clip=0\.5 needs num_proj"),
    ],
    ids=["zero", "negative", "float", "bool", "num_proj_zero",
         "proj_clip_without_num_proj"],
)
def test_lstm_cell_constructor_rejects_invalid(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lstmkit.LSTMCell(**kwargs)


def test_cell_from_config_keeps_dtype_from_inputs():
    restored = lstmkit.LSTMCell.from_config(lstmkit.LSTMCell(3).get_config())

    outputs, _ = lstmkit.dynamic_rnn(restored, tf.zeros([1, 2, 4], tf.float64))

    assert outputs.dtype == tf.float64
    assert restored.kernel.dtype == "float64"
