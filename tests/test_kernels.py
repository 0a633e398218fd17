"""The compiled kernels against the autodiff loop, for every cell.

The autodiff kernel is the plain `tf.while_loop` that the parity suite
checks against the v1 built-ins. The fused and derived kernels must give
the same outputs, states and gradients for every cell they accept. The
cases cover lengths, holes, carried outputs, dropout masks and an empty
time axis.
"""

import logging

import numpy as np
import pytest
import tensorflow as tf

import lstmkit
from lstmkit import kernels, rnn

from test_conformance import CELLS, DEPTH, LENGTHS, make_cell, padded_inputs

FAST_KERNELS = ("fused_lstm", "derived")
ATOL = 1e-11


def accepted(kernel: str, cell) -> bool:
    weights = cell.recurrent_weights()
    try:
        kernels.choose(cell, cell.compute_dtype, weights, kernel)
    except ValueError:
        return False
    return True


def cases():
    for name in sorted(CELLS):
        cell = make_cell(name)
        for kernel in FAST_KERNELS:
            if accepted(kernel, cell):
                yield name, kernel


def random_state(cell, seed=3):
    rng = np.random.default_rng(seed)
    return tf.nest.map_structure(
        lambda size: tf.constant(rng.normal(size=(len(LENGTHS), size))),
        cell.state_size,
    )


def run_with_gradients(cell, implementation, bidirectional=False):
    """Runs a driver and returns outputs, states and all gradients."""
    x = tf.constant(padded_inputs(pad_value=0.0))
    state = random_state(cell)
    rng = np.random.default_rng(11)
    with tf.GradientTape() as tape:
        tape.watch([x, state])
        if bidirectional:
            (forward, backward), finals = lstmkit.bidirectional_dynamic_rnn(
                cell, cell, x, LENGTHS, state, state,
                implementation=implementation,
            )
            outputs = tf.concat([forward, backward], -1)
        else:
            outputs, finals = lstmkit.dynamic_rnn(
                cell, x, LENGTHS, state, implementation=implementation
            )
        loss = _weighted_sum([outputs, finals], rng)
    sources = [x, state, cell.trainable_variables]
    gradients = tape.gradient(loss, sources)
    return [outputs, finals, gradients]


def _weighted_sum(structure, rng):
    total = tf.constant(0.0, tf.float64)
    for part in tf.nest.flatten(structure):
        weights = tf.constant(rng.normal(size=part.shape), part.dtype)
        total += tf.reduce_sum(part * weights)
    return total


def assert_structures_close(actual, expected, label):
    actual, expected = tf.nest.flatten(actual), tf.nest.flatten(expected)
    assert len(actual) == len(expected), label
    for index, (got, want) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(
            got, want, atol=ATOL, rtol=1e-9, err_msg=f"{label} [{index}]"
        )


@pytest.mark.parametrize("name, kernel", list(cases()))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_kernel_equals_autodiff(name, kernel, bidirectional):
    cell = make_cell(name)

    fast = run_with_gradients(cell, kernel, bidirectional)
    assert kernels.explain(cell).kernel == kernel
    reference = run_with_gradients(cell, "autodiff", bidirectional)

    assert_structures_close(fast, reference, f"{name} on {kernel}")


def test_every_lstm_family_cell_gets_a_fast_kernel():
    for name in sorted(CELLS):
        cell = make_cell(name)
        choice = kernels.choose(cell, tf.float64, cell.recurrent_weights())
        assert choice.kernel in FAST_KERNELS, (name, choice.describe())


def test_standard_cells_get_the_fused_kernel():
    for name in ("lstm", "keras_lstm", "dropconnect"):
        cell = make_cell(name)
        choice = kernels.choose(cell, tf.float64, cell.recurrent_weights())
        assert choice.kernel == "fused_lstm", name


def run_masked_with_gradients(kernel, valid, carry_output, h_mask=False):
    cell = make_cell("keras_lstm" if carry_output else "lstm")
    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=(valid.shape[0], valid.shape[1], DEPTH)))
    state = random_state(cell)
    initial_output = tf.constant(rng.normal(size=(valid.shape[1], 5)))
    weights = cell.recurrent_weights()
    if h_mask:
        mask = rng.integers(0, 2, size=(valid.shape[1], 5)) * 2.0
        weights["h_dropout_mask"] = tf.constant(mask)
    with tf.GradientTape() as tape:
        tape.watch([x, state, initial_output])
        results = rnn.run_masked(
            cell, x, tf.constant(valid), state,
            carry_output=carry_output,
            initial_output=initial_output,
            weights=weights,
            implementation=kernel,
        )
        loss = _weighted_sum(results, np.random.default_rng(2))
    sources = [x, state, initial_output, cell.trainable_variables]
    gradients = tape.gradient(loss, sources)
    # A Keras 3 variable's dtype is a string, which TensorFlow's
    # unconnected_gradients=ZERO cannot read, so None is replaced here.
    gradients = [
        tf.zeros_like(source) if gradient is None else gradient
        for gradient, source in zip(tf.nest.flatten(gradients),
                                    tf.nest.flatten(sources))
    ]
    return [results, gradients]


HOLES = np.array(
    [
        [True, False, False, True],
        [False, True, False, True],
        [True, True, False, False],
        [False, True, False, True],
        [True, False, False, True],
    ]
)


@pytest.mark.parametrize("kernel", FAST_KERNELS)
@pytest.mark.parametrize("carry_output", [False, True])
def test_masks_with_holes_and_carried_outputs(kernel, carry_output):
    fast = run_masked_with_gradients(kernel, HOLES, carry_output)
    reference = run_masked_with_gradients("autodiff", HOLES, carry_output)

    assert_structures_close(fast, reference, kernel)


@pytest.mark.parametrize("kernel", FAST_KERNELS)
def test_recurrent_dropout_mask(kernel):
    fast = run_masked_with_gradients(kernel, HOLES, False, h_mask=True)
    reference = run_masked_with_gradients("autodiff", HOLES, False, True)

    assert_structures_close(fast, reference, kernel)


@pytest.mark.parametrize("name", ["lstm", "gru_reset_after"])
def test_unknown_time_axis_including_zero_steps(name):
    cell = make_cell(name)
    kernel = "fused_lstm" if name == "lstm" else "derived"
    spec = tf.TensorSpec([None, None, DEPTH], tf.float64)

    def gradients(implementation):
        @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
        def run(x, lengths):
            with tf.GradientTape() as tape:
                tape.watch(x)
                outputs, state = lstmkit.dynamic_rnn(
                    cell, x, lengths, implementation=implementation
                )
                loss = tf.reduce_sum(outputs**2) + sum(
                    tf.reduce_sum(part) for part in tf.nest.flatten(state)
                )
            return outputs, tape.gradient(loss, [x, cell.trainable_variables])

        return run

    fast, reference = gradients(kernel), gradients("autodiff")
    for time in (6, 0):
        x = padded_inputs(pad_value=0.0)[:, :time]
        lengths = np.minimum(LENGTHS, time).astype(np.int32)
        assert_structures_close(
            fast(x, lengths), reference(x, lengths), f"time={time}"
        )


def test_fused_kernel_inside_an_outer_xla_function():
    cell = make_cell("lstm")
    x = tf.constant(padded_inputs(pad_value=0.0))

    @tf.function(jit_compile=True)
    def compiled(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs, _ = lstmkit.dynamic_rnn(
                cell, x, LENGTHS, implementation="fused_lstm"
            )
            loss = tf.reduce_sum(outputs**2)
        return outputs, tape.gradient(loss, x)

    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs, _ = lstmkit.dynamic_rnn(
            cell, x, LENGTHS, implementation="autodiff"
        )
        loss = tf.reduce_sum(outputs**2)
    expected = (outputs, tape.gradient(loss, x))

    assert_structures_close(compiled(x), expected, "outer XLA")


def test_float32_fused_kernel_matches_the_v1_builtin():
    from lstmkit import builtins

    cell = lstmkit.LSTMCell(16)
    x = tf.constant(
        np.random.default_rng(4).normal(size=(3, 9, DEPTH)), tf.float32
    )
    lengths = np.array([9, 4, 0])
    outputs, state = lstmkit.dynamic_rnn(cell, x, lengths)
    assert kernels.explain(cell).kernel == "fused_lstm"

    v1 = builtins.v1_lstm_cell(16)
    v1.build(tf.TensorShape([None, DEPTH]))
    v1.set_weights(cell.get_weights())
    expected, expected_state = builtins.v1_dynamic_rnn(
        v1, x, sequence_length=lengths, dtype=tf.float32
    )
    np.testing.assert_allclose(outputs, expected, atol=2e-6)
    np.testing.assert_allclose(state.c, expected_state.c, atol=2e-6)


def test_explain_names_the_kernel_and_the_reasons():
    plain = make_cell("lstm")
    peepholes = make_cell("lstm_all_options")
    lstmkit.dynamic_rnn(plain, padded_inputs(), LENGTHS)
    lstmkit.dynamic_rnn(peepholes, padded_inputs(), LENGTHS)

    assert kernels.explain(plain).kernel == "fused_lstm"
    choice = kernels.explain(peepholes)
    assert choice.kernel == "derived"
    assert choice.rejected == {"fused_lstm": "use_peepholes is set"}
    assert "use_peepholes is set" in choice.describe()


def test_random_steps_run_on_the_autodiff_kernel():
    cell = make_cell("zoneout")
    cell.training = True
    lstmkit.dynamic_rnn(cell, padded_inputs(), LENGTHS)

    choice = kernels.explain(cell)
    assert choice.kernel == "autodiff"
    assert "random" in choice.rejected["derived"]
    with pytest.raises(ValueError, match="random numbers at every step"):
        lstmkit.dynamic_rnn(
            cell, padded_inputs(), LENGTHS, implementation="derived"
        )


def test_half_precision_runs_on_the_fused_kernel():
    cell = lstmkit.LSTMCell(4, dtype="float16")
    x = tf.zeros([2, 3, DEPTH], tf.float16)
    lstmkit.dynamic_rnn(cell, x)

    choice = kernels.explain(cell)
    assert choice.kernel == "fused_lstm"
    assert choice.rejected == {}


def test_forced_kernel_rejects_other_cells():
    cell = make_cell("gru_reset_after")
    with pytest.raises(ValueError, match="GRUCell has its own step"):
        lstmkit.dynamic_rnn(
            cell, padded_inputs(), LENGTHS, implementation="fused_lstm"
        )


def test_unknown_implementation_is_refused():
    with pytest.raises(ValueError, match="'cudnn'"):
        lstmkit.dynamic_rnn(
            make_cell("lstm"), padded_inputs(), implementation="cudnn"
        )


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv(kernels.ENVIRONMENT_VARIABLE, "autodiff")
    cell = make_cell("lstm")
    lstmkit.dynamic_rnn(cell, padded_inputs(), LENGTHS)
    assert kernels.explain(cell).kernel == "autodiff"

    monkeypatch.setenv(kernels.ENVIRONMENT_VARIABLE, "fastest")
    with pytest.raises(ValueError, match="LSTMKIT_KERNEL must be one of"):
        lstmkit.dynamic_rnn(cell, padded_inputs(), LENGTHS)


def test_use_restores_the_previous_default():
    cell = make_cell("lstm")
    with kernels.use("derived"):
        lstmkit.dynamic_rnn(cell, padded_inputs(), LENGTHS)
        assert kernels.explain(cell).kernel == "derived"
    lstmkit.dynamic_rnn(cell, padded_inputs(), LENGTHS)
    assert kernels.explain(cell).kernel == "fused_lstm"


def test_choice_is_logged_once_per_cell(caplog):
    cell = make_cell("lstm")
    with caplog.at_level(logging.INFO, logger="lstmkit.kernels"):
        for _ in range(3):
            lstmkit.dynamic_rnn(cell, padded_inputs(), LENGTHS)
    messages = [record.getMessage() for record in caplog.records]
    lines = [message for message in messages if cell.name in message]
    assert len(lines) == 1
    assert "kernel fused_lstm" in lines[0]


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.gpu
@pytest.mark.skipif(not has_gpu(), reason="no GPU visible to TensorFlow")
@pytest.mark.parametrize("name", ["lstm", "keras_lstm", "layer_norm_gates"])
def test_gpu_kernels_equal_cpu_autodiff(name):
    cell = make_cell(name)
    with tf.device("/GPU:0"):
        fast = run_with_gradients(cell, "auto", bidirectional=True)
    assert kernels.explain(cell).kernel in FAST_KERNELS
    with tf.device("/CPU:0"):
        reference = run_with_gradients(cell, "autodiff", bidirectional=True)

    assert_structures_close(fast, reference, f"{name} on GPU")


@pytest.mark.parametrize("kernel", FAST_KERNELS)
def test_gradient_of_a_function_traced_without_a_tape(kernel):
    # Traced with no tape active, the forward pass keeps no states; a
    # gradient asked for afterwards must run it again and still be exact.
    cell = make_cell("lstm")
    x = tf.constant(padded_inputs(pad_value=0.0))
    traced = tf.function(
        lambda x: lstmkit.dynamic_rnn(
            cell, x, LENGTHS, implementation=kernel
        )[0]
    )
    forward_only = traced(x)

    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(traced(x) ** 2)
    gradients = tape.gradient(loss, [x, cell.trainable_variables])
    with tf.GradientTape() as tape:
        tape.watch(x)
        expected = lstmkit.dynamic_rnn(
            cell, x, LENGTHS, implementation="autodiff"
        )[0]
        loss = tf.reduce_sum(expected**2)
    expected_gradients = tape.gradient(loss, [x, cell.trainable_variables])

    assert_structures_close(forward_only, expected, "forward")
    assert_structures_close(gradients, expected_gradients, "gradients")
