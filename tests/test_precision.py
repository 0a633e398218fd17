"""Mixed precision: the layers, drivers and kernels under Keras policies.

Under `mixed_float16` and `mixed_bfloat16` the variables stay float32, the
matrix products and h are computed in the low dtype, and the LSTM cells
keep c, and compute their gates, in float32 (docs/precision.md).

Tolerances are in units of the low dtype's unit roundoff `u` (2**-11 for
float16, 2**-8 for bfloat16), against the float32 run of the same weights
on 6 rows of 12 steps with lengths 0 to 12. Gradient errors are relative
to the largest gradient entry. With these seeds (TensorFlow 2.21 on an x86
CPU) LSTM and GRU outputs and states were off by at most 1.5 u and their
gradients by 3.1 u. The layer-normalized LSTM reached 1.8 u and 4.7 u.
Other random initializations reached 1.2 u and 5.1 u for the LSTM and GRU,
and 12 u and 22 u for the layer-normalized LSTM, whose normalization
magnifies the rounding of a product with a large mean. The bounds below
leave room for other CPUs and XLA versions.
"""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit
from lstmkit import kernels
from lstmkit.data.digits import load_digits
from lstmkit.variants import LayerNormLSTMCell

POLICIES = ("mixed_float16", "mixed_bfloat16")
UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8}

# Bounds in units of the unit roundoff, see the module docstring.
OUTPUT_ULPS = 4
GRADIENT_ULPS = 10
LAYER_NORM_OUTPUT_ULPS = 10
LAYER_NORM_GRADIENT_ULPS = 30

BATCH, TIME, DEPTH, UNITS = 6, 12, 5, 8
LENGTHS = np.array([12, 7, 1, 0, 12, 3], np.int32)


def compute_dtype(policy: str) -> str:
    return keras.DTypePolicy(policy).compute_dtype


def tolerance(policy: str, ulps: float) -> float:
    return ulps * UNIT_ROUNDOFF[compute_dtype(policy)]


def inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((BATCH, TIME, DEPTH)).astype(np.float32)


def probe(width: int) -> np.ndarray:
    """Fixed weights of the loss, so that every output gets a gradient."""
    rng = np.random.default_rng(1)
    return rng.standard_normal((BATCH, TIME, width)).astype(np.float32)


def run_layer(layer, x):
    """Returns the layer's results and the gradients of a probe loss.

    Returns:
        `(results, gradients)`: lists of every returned tensor and of the
        gradient of every trainable weight, in order.
    """
    with tf.GradientTape() as tape:
        results = layer(x, sequence_length=LENGTHS)
        results = results if isinstance(results, list) else [results]
        sequence = tf.cast(results[0], tf.float32)
        loss = tf.reduce_sum(sequence * probe(sequence.shape[-1]))
    return results, tape.gradient(loss, layer.trainable_weights)


def as_float64(tensors):
    return [tf.cast(tensor, tf.float64).numpy() for tensor in tensors]


def paired_layers(make, policy):
    """Returns a float32 layer and a layer under `policy`, same weights."""
    keras.utils.set_random_seed(0)
    reference, mixed = make("float32"), make(policy)
    reference.build((None, TIME, DEPTH))
    mixed.build((None, TIME, DEPTH))
    mixed.set_weights(reference.get_weights())
    return reference, mixed


def assert_matches_float32(reference, mixed, policy, output_ulps, grad_ulps):
    """Compares results and gradients, then returns the mixed results."""
    x = inputs()
    # Every kernel gives the same float32 results (tests/test_kernels.py),
    # and the uncompiled one saves the reference an XLA compilation.
    with kernels.use("autodiff"):
        expected, expected_grads = map(as_float64, run_layer(reference, x))
    results, gradients = run_layer(mixed, x)
    actual, actual_grads = as_float64(results), as_float64(gradients)

    output_tolerance = tolerance(policy, output_ulps)
    for index, (got, want) in enumerate(zip(actual, expected)):
        error = np.abs(got - want).max()
        assert error <= output_tolerance, (
            f"result {index}: max error {error:.2e} > {output_tolerance:.2e}"
        )
    grad_tolerance = tolerance(policy, grad_ulps)
    for weight, got, want in zip(
        mixed.trainable_weights, actual_grads, expected_grads
    ):
        error = np.abs(got - want).max() / np.abs(want).max()
        assert error <= grad_tolerance, (
            f"gradient of {weight.path}: relative error {error:.2e} > "
            f"{grad_tolerance:.2e}"
        )
    return results


def assert_float32_variables(layer):
    dtypes = {variable.dtype for variable in layer.weights}
    assert dtypes == {"float32"}


@pytest.mark.parametrize("policy", POLICIES)
def test_lstm_layer_matches_float32(policy):
    def make(dtype):
        return lstmkit.layers.LSTM(
            UNITS, return_sequences=True, return_state=True, dtype=dtype
        )

    reference, mixed = paired_layers(make, policy)
    sequence, h, c = assert_matches_float32(
        reference, mixed, policy, OUTPUT_ULPS, GRADIENT_ULPS
    )
    assert_float32_variables(mixed)
    assert sequence.dtype == compute_dtype(policy)
    assert h.dtype == compute_dtype(policy)
    assert c.dtype == "float32"
    assert kernels.explain(mixed.cell).kernel == "fused_lstm"


def test_bidirectional_matches_float32():
    policy = "mixed_bfloat16"

    def make(dtype):
        layer = lstmkit.layers.LSTM(
            UNITS, return_sequences=True, semantics="tf1", dtype=dtype
        )
        return lstmkit.layers.Bidirectional(layer, dtype=dtype)

    reference, mixed = paired_layers(make, policy)
    (output,) = assert_matches_float32(
        reference, mixed, policy, OUTPUT_ULPS, GRADIENT_ULPS
    )
    assert_float32_variables(mixed)
    assert output.dtype == compute_dtype(policy)


RNN_CELLS = {
    "gru": (lambda: lstmkit.GRUCell(UNITS), OUTPUT_ULPS, GRADIENT_ULPS),
    "layer_norm": (
        lambda: LayerNormLSTMCell(UNITS, norm="separate", norm_cell=True),
        LAYER_NORM_OUTPUT_ULPS,
        LAYER_NORM_GRADIENT_ULPS,
    ),
}


@pytest.mark.parametrize(
    "cell_name, policy",
    [("gru", "mixed_bfloat16"), ("layer_norm", "mixed_float16")],
)
def test_rnn_layer_matches_float32(cell_name, policy):
    make_cell, output_ulps, grad_ulps = RNN_CELLS[cell_name]

    def make(dtype):
        return lstmkit.layers.RNN(
            make_cell(), return_sequences=True, dtype=dtype
        )

    reference, mixed = paired_layers(make, policy)
    assert_matches_float32(reference, mixed, policy, output_ulps, grad_ulps)
    assert_float32_variables(mixed)
    assert mixed.cell.compute_dtype == compute_dtype(policy)
    assert kernels.explain(mixed.cell).kernel == "derived"


def driver_gradients(cell, x, implementation):
    """Returns float64 outputs, c, and gradients w.r.t. x and weights."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs, state = lstmkit.dynamic_rnn(
            cell, x, LENGTHS, implementation=implementation
        )
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * probe(UNITS))
        loss += tf.reduce_sum(tf.cast(state.c, tf.float32))
    gradients = tape.gradient(loss, [x] + cell.trainable_weights)
    outputs, c = as_float64([outputs, state.c])
    return outputs, c, as_float64(gradients)


@pytest.mark.parametrize("policy", POLICIES)
def test_step_kernels_match_float32(policy):
    # The fused kernel is compared in test_lstm_layer_matches_float32.
    keras.utils.set_random_seed(0)
    reference = lstmkit.LSTMCell(UNITS)
    expected = driver_gradients(reference, tf.constant(inputs()), "autodiff")
    x = tf.cast(inputs(), compute_dtype(policy))

    for implementation in ("derived", "autodiff"):
        cell = lstmkit.LSTMCell(UNITS, dtype=policy)
        cell.build([DEPTH])
        cell.set_weights(reference.get_weights())
        outputs, c, gradients = driver_gradients(cell, x, implementation)

        output_tolerance = tolerance(policy, OUTPUT_ULPS)
        assert np.abs(outputs - expected[0]).max() <= output_tolerance
        assert np.abs(c - expected[1]).max() <= output_tolerance
        grad_tolerance = tolerance(policy, GRADIENT_ULPS)
        for got, want in zip(gradients, expected[2]):
            error = np.abs(got - want).max() / np.abs(want).max()
            assert error <= grad_tolerance, f"{implementation}: {error:.2e}"


def test_auto_choice_is_fused_and_logged(caplog):
    cell = lstmkit.LSTMCell(UNITS, dtype="mixed_float16")
    x = tf.cast(inputs(), tf.float16)
    with caplog.at_level(logging.INFO, logger="lstmkit.kernels"):
        lstmkit.dynamic_rnn(cell, x, LENGTHS)

    choice = kernels.explain(cell)
    assert choice.kernel == "fused_lstm"
    messages = [record.getMessage() for record in caplog.records]
    assert any("kernel fused_lstm" in message for message in messages)


def test_bidirectional_driver_takes_half_inputs():
    cell_fw = lstmkit.LSTMCell(UNITS, dtype="mixed_float16")
    cell_bw = lstmkit.LSTMCell(UNITS, dtype="mixed_float16")
    x = tf.cast(inputs(), tf.float16)

    (out_fw, out_bw), (_, state_bw) = (
        lstmkit.bidirectional_dynamic_rnn(cell_fw, cell_bw, x, LENGTHS)
    )
    assert out_fw.dtype == tf.float16
    assert out_bw.dtype == tf.float16
    assert state_bw.c.dtype == tf.float32
    assert state_bw.h.dtype == tf.float16
    padded = out_bw.numpy()[1, LENGTHS[1]:].astype(np.float32)
    assert not padded.any()


def loop_matmul_dtypes(policy, implementation):
    """Traces a forward and backward pass and returns every MatMul's dtype.

    The graph and every function it calls (the while-loop bodies, the
    XLA-compiled kernels and their gradients) are searched.
    """
    cell = lstmkit.LSTMCell(UNITS, dtype=policy)
    dtype = compute_dtype(policy)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs, _ = lstmkit.dynamic_rnn(
                cell, x, LENGTHS, implementation=implementation
            )
            loss = tf.reduce_sum(tf.cast(outputs, tf.float32))
        return tape.gradient(loss, [x] + cell.trainable_weights)

    spec = tf.TensorSpec([BATCH, TIME, DEPTH], dtype)
    graph = forward_backward.get_concrete_function(spec).graph
    graph_def = graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return [
        tf.as_dtype(node.attr["T"].type).name
        for node in nodes
        if node.op in ("MatMul", "BatchMatMulV2")
    ]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("implementation", kernels.KERNELS)
def test_loop_matmuls_stay_low_precision(policy, implementation):
    dtypes = loop_matmul_dtypes(policy, implementation)
    # At least the input projection, the recurrent product and their
    # gradients.
    assert len(dtypes) >= 4
    assert set(dtypes) == {compute_dtype(policy)}


@pytest.mark.parametrize(
    "dtype, c_dtype, h_dtype",
    [
        ("mixed_float16", "float32", "float16"),
        ("mixed_bfloat16", "float32", "bfloat16"),
        ("float16", "float16", "float16"),
        ("float32", "float32", "float32"),
    ],
)
def test_cell_state_dtypes(dtype, c_dtype, h_dtype):
    cell = lstmkit.LSTMCell(UNITS, dtype=dtype)
    x = tf.cast(inputs(), cell.compute_dtype)
    _, state = lstmkit.dynamic_rnn(
        cell, x, LENGTHS, implementation="autodiff"
    )

    assert state.c.dtype == c_dtype
    assert state.h.dtype == h_dtype
    assert {v.dtype for v in cell.weights} == {cell.variable_dtype}


def test_initial_c_in_compute_dtype_is_widened():
    cell = lstmkit.LSTMCell(UNITS, dtype="mixed_float16")
    x = tf.cast(inputs(), tf.float16)
    c = tf.fill([BATCH, UNITS], tf.constant(0.5, tf.float16))
    h = tf.zeros([BATCH, UNITS], tf.float16)

    _, state = lstmkit.dynamic_rnn(
        cell, x, LENGTHS, initial_state=(c, h), implementation="autodiff"
    )
    assert state.c.dtype == tf.float32
    # A row of length 0 keeps its initial state.
    np.testing.assert_array_equal(state.c.numpy()[3], 0.5)


def test_initial_c_of_other_dtype_is_rejected():
    cell = lstmkit.LSTMCell(UNITS, dtype="mixed_float16")
    x = tf.cast(inputs(), tf.float16)
    c = tf.zeros([BATCH, UNITS], tf.float64)
    h = tf.zeros([BATCH, UNITS], tf.float16)

    with pytest.raises(TypeError, match="keeps it in float32"):
        lstmkit.dynamic_rnn(cell, x, initial_state=(c, h))


def test_stateful_layer_carries_float32_c():
    layer = lstmkit.layers.LSTM(
        UNITS, stateful=True, return_state=True, dtype="mixed_float16"
    )
    x = inputs()
    _, _, c = layer(x)
    carried = layer.state_variables[0]

    assert c.dtype == "float32"
    assert carried.dtype == "float32"
    # Not rounded to float16 on the way into the variable.
    np.testing.assert_array_equal(carried.numpy(), c.numpy())
    rounded = c.numpy().astype(np.float16).astype(np.float32)
    assert (rounded != c.numpy()).any()


@pytest.fixture
def global_mixed_float16():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def test_fit_with_loss_scaling_lowers_loss(global_mixed_float16):
    data = load_digits(seed=0)
    x, y = data.x_train[:384], data.y_train[:384]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8)),
            lstmkit.layers.LSTM(16),
            # Logits and loss in float32, as Keras recommends.
            keras.layers.Dense(data.num_classes, dtype="float32"),
        ]
    )
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(0.01)
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, batch_size=64, epochs=3, verbose=0)

    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] < 0.95 * losses[0]
    assert model.layers[0].compute_dtype == "float16"
    assert_float32_variables(model)
    assert float(optimizer.dynamic_scale) > 1.0
