"""Parity of `lstmkit.layers.LSTM` and `Bidirectional` with Keras and v1.

With "keras" semantics the layers take Keras' weights through
`set_weights(keras_layer.get_weights())` and must reproduce
`keras.layers.LSTM`, `keras.layers.Bidirectional` and
`keras.layers.RNN(keras.layers.LSTMCell)`: outputs, states and the
gradients of a loss over all outputs with respect to the inputs, the
initial states and every weight. With "tf1" semantics they take the v1
cell's weights and must reproduce `tf.compat.v1.nn.dynamic_rnn` and
`bidirectional_dynamic_rnn`. Weights and inputs are random and non-zero.
"""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit
from helpers import (
    FLOAT32_ATOL,
    FLOAT32_GRAD_ATOL,
    FLOAT32_GRAD_RTOL,
    OPTION_CASES,
    assert_close,
    build_v1_cell,
    randomize_weights,
)
from lstmkit.convert import keras_to_v1
from lstmkit.convert.layouts import reorder_gates
from lstmkit.layers import masks

BATCH, TIME, DEPTH, UNITS = 4, 6, 3, 5

# Step masks, True at valid steps. Every mask has a full row.
MASKS = {
    "none": None,
    "right": [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
    ],
    "left": [
        [1, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1],
        [0, 0, 0, 0, 0, 1],
    ],
    "holes": [
        [1, 0, 1, 1, 0, 1],
        [1, 1, 0, 0, 1, 1],
        [0, 1, 0, 1, 0, 1],
        [1, 1, 1, 1, 1, 1],
    ],
    "empty_row": [
        [1, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 1, 1, 1, 1, 1],
    ],
}
MASKED = [name for name in MASKS if name != "none"]
# Lengths of the "right" mask.
RIGHT_LENGTHS = np.array([6, 4, 2, 1], np.int32)
# (return_sequences, return_state)
RETURN_MODES = [(False, False), (True, False), (False, True), (True, True)]
MERGE_MODES = ["concat", "sum", "ave", "mul", None]


def step_mask(name):
    """Returns the named mask as a bool tensor, or None."""
    if MASKS[name] is None:
        return None
    return tf.constant(np.array(MASKS[name], bool))


def make_inputs(seed=0, mask_name="none"):
    """Returns random float32 inputs, zero in every feature at masked steps.

    Zeroing the masked steps lets a `Masking(0.0)` layer rebuild the mask.
    Valid steps are drawn from a normal distribution, so none is all zero.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=[BATCH, TIME, DEPTH])
    if MASKS[mask_name] is not None:
        x = x * np.array(MASKS[mask_name], np.float64)[:, :, None]
    return tf.constant(x, tf.float32)


def make_initial_state(count, seed=7):
    """Returns `count` random `[BATCH, UNITS]` float32 state tensors."""
    rng = np.random.default_rng(seed)
    return [
        tf.constant(rng.uniform(-0.9, 0.9, [BATCH, UNITS]), tf.float32)
        for _ in range(count)
    ]


def randomize_layer(layer, seed):
    """Sets every weight of a built Keras 3 layer to random non-zero values.

    Each element is drawn from +-[0.1, 0.8] with a random sign, as
    `helpers.randomize_weights` does for the v1 cells, whose variables
    have a `tf.DType` where Keras 3 variables have a dtype name.
    """
    rng = np.random.default_rng(seed)
    values = []
    for weight in layer.get_weights():
        magnitude = rng.uniform(0.1, 0.8, size=weight.shape)
        sign = rng.choice([-1.0, 1.0], size=weight.shape)
        values.append((magnitude * sign).astype(weight.dtype))
    layer.set_weights(values)


def as_list(result):
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def weighted_sum(outputs):
    """Sums every output, each element times a fixed random coefficient.

    The coefficients depend only on the output's position and shape, so a
    layer and its reference get the same loss. Their random signs keep
    gradients from cancelling by symmetry.
    """
    loss = tf.constant(0.0)
    for index, output in enumerate(outputs):
        rng = np.random.default_rng(1000 + index)
        shape = output.shape.as_list()
        coefficients = rng.uniform(0.5, 1.5, shape) * rng.choice(
            [-1.0, 1.0], shape
        )
        loss += tf.reduce_sum(output * tf.constant(coefficients, tf.float32))
    return loss


def run_and_differentiate(model, inputs, watched=(), **call_kwargs):
    """Calls `model` once under a tape.

    Returns:
        `(outputs, gradients)` as NumPy arrays, the gradients of
        `weighted_sum(outputs)` with respect to `watched` and then to
        `model.trainable_weights`.
    """
    with tf.GradientTape() as tape:
        for tensor in watched:
            tape.watch(tensor)
        outputs = as_list(model(inputs, **call_kwargs))
        loss = weighted_sum(outputs)
    sources = list(watched) + list(model.trainable_weights)
    gradients = tape.gradient(
        loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    # Embedding gradients arrive as IndexedSlices.
    gradients = [np.asarray(tf.convert_to_tensor(g)) for g in gradients]
    return [np.asarray(o) for o in outputs], gradients


def output_names(return_state, bidirectional=False, merge_mode="concat"):
    names = ["output"]
    if bidirectional and merge_mode is None:
        names = ["output_fw", "output_bw"]
    if return_state:
        names += ["h_fw", "c_fw", "h_bw", "c_bw"] if bidirectional else [
            "h",
            "c",
        ]
    return names


def gradient_names(watched_names, model):
    names = [f"d/d {name}" for name in watched_names]
    return names + [f"d/d {weight.path}" for weight in model.trainable_weights]


def assert_runs_match(actual, expected, names, grad_names, label):
    """Compares `(outputs, gradients)` pairs within float32 tolerance."""
    actual_outputs, actual_grads = actual
    expected_outputs, expected_grads = expected
    assert len(actual_outputs) == len(expected_outputs) == len(names), (
        f"{label}: {len(actual_outputs)} outputs, expected "
        f"{len(expected_outputs)} ({names})"
    )
    for name, a, e in zip(names, actual_outputs, expected_outputs):
        assert_close(
            a, e, f"{label}: {name}", FLOAT32_ATOL, category="layer outputs"
        )
    assert len(actual_grads) == len(expected_grads) == len(grad_names), (
        f"{label}: {len(actual_grads)} gradients, expected "
        f"{len(expected_grads)} ({grad_names})"
    )
    for name, a, e in zip(grad_names, actual_grads, expected_grads):
        assert_close(
            a,
            e,
            f"{label}: {name}",
            FLOAT32_GRAD_ATOL,
            FLOAT32_GRAD_RTOL,
            category="layer gradients",
        )


def make_lstm_pair(seed=1, **kwargs):
    """Builds a Keras LSTM with random weights and an lstmkit copy."""
    reference = keras.layers.LSTM(UNITS, **kwargs)
    reference.build((BATCH, TIME, DEPTH))
    randomize_layer(reference, seed)
    ours = lstmkit.layers.LSTM(UNITS, **kwargs)
    ours.build((BATCH, TIME, DEPTH))
    ours.set_weights(reference.get_weights())
    return ours, reference


def make_bidirectional_pair(
    seed=2, merge_mode="concat", go_backwards=False, **kwargs
):
    """Builds a Keras Bidirectional LSTM with random weights and a copy.

    With `go_backwards=True` the wrapped layer reads backward and an
    explicit backward layer reads forward. Keras 3.15 rejects the wrapped
    layer alone, because its generated backward copy also reads backward.
    """
    pairs = []
    for module in (keras.layers, lstmkit.layers):
        backward = None
        if go_backwards:
            backward = module.LSTM(UNITS, **kwargs)
        pairs.append(
            module.Bidirectional(
                module.LSTM(UNITS, go_backwards=go_backwards, **kwargs),
                merge_mode=merge_mode,
                backward_layer=backward,
            )
        )
    reference, ours = pairs
    reference.build((BATCH, TIME, DEPTH))
    randomize_layer(reference, seed)
    ours.build((BATCH, TIME, DEPTH))
    ours.set_weights(reference.get_weights())
    return ours, reference


def make_rnn_cell_pair(seed=3, **kwargs):
    """Builds `keras.layers.RNN(LSTMCell)` with random weights and a copy."""
    reference = keras.layers.RNN(keras.layers.LSTMCell(UNITS), **kwargs)
    reference.build((BATCH, TIME, DEPTH))
    randomize_layer(reference, seed)
    ours = lstmkit.layers.LSTM(UNITS, **kwargs)
    ours.build((BATCH, TIME, DEPTH))
    ours.set_weights(reference.get_weights())
    return ours, reference


LAYER_PAIRS = {
    "lstm": make_lstm_pair,
    "bidirectional": make_bidirectional_pair,
    "rnn_cell": make_rnn_cell_pair,
}


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("return_sequences, return_state", RETURN_MODES)
def test_lstm_matches_keras(mask_name, return_sequences, return_state):
    ours, reference = make_lstm_pair(
        return_sequences=return_sequences, return_state=return_state
    )
    x = make_inputs(mask_name=mask_name)
    mask = step_mask(mask_name)

    actual = run_and_differentiate(ours, x, [x], mask=mask)
    expected = run_and_differentiate(reference, x, [x], mask=mask)

    assert_runs_match(
        actual,
        expected,
        output_names(return_state),
        gradient_names(["inputs"], reference),
        f"mask={mask_name}",
    )


LSTM_OPTION_CASES = {
    "go_backwards": {"go_backwards": True},
    "zero_output_for_mask": {"zero_output_for_mask": True},
    "initial_state": {},
    "all": {"go_backwards": True, "zero_output_for_mask": True},
}


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("case", list(LSTM_OPTION_CASES))
def test_lstm_matches_keras_options(case, mask_name):
    ours, reference = make_lstm_pair(
        return_sequences=True, return_state=True, **LSTM_OPTION_CASES[case]
    )
    x = make_inputs(mask_name=mask_name)
    watched, watched_names, call_kwargs = [x], ["inputs"], {}
    if case in ("initial_state", "all"):
        initial = make_initial_state(2)
        watched += initial
        watched_names += ["initial h", "initial c"]
        call_kwargs["initial_state"] = initial
    mask = step_mask(mask_name)

    actual = run_and_differentiate(ours, x, watched, mask=mask, **call_kwargs)
    expected = run_and_differentiate(
        reference, x, watched, mask=mask, **call_kwargs
    )

    assert_runs_match(
        actual,
        expected,
        output_names(True),
        gradient_names(watched_names, reference),
        f"{case}, mask={mask_name}",
    )


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm_matches_keras_rnn_cell(go_backwards, mask_name):
    ours, reference = make_rnn_cell_pair(
        return_sequences=True, return_state=True, go_backwards=go_backwards
    )
    x = make_inputs(mask_name=mask_name)
    mask = step_mask(mask_name)

    actual = run_and_differentiate(ours, x, [x], mask=mask)
    expected = run_and_differentiate(reference, x, [x], mask=mask)

    assert_runs_match(
        actual,
        expected,
        output_names(True),
        gradient_names(["inputs"], reference),
        f"go_backwards={go_backwards}, mask={mask_name}",
    )


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("merge_mode", MERGE_MODES)
def test_bidirectional_matches_keras(merge_mode, mask_name):
    ours, reference = make_bidirectional_pair(
        merge_mode=merge_mode, return_sequences=True, return_state=True
    )
    x = make_inputs(mask_name=mask_name)
    mask = step_mask(mask_name)

    actual = run_and_differentiate(ours, x, [x], mask=mask)
    expected = run_and_differentiate(reference, x, [x], mask=mask)

    assert_runs_match(
        actual,
        expected,
        output_names(True, bidirectional=True, merge_mode=merge_mode),
        gradient_names(["inputs"], reference),
        f"merge_mode={merge_mode}, mask={mask_name}",
    )


@pytest.mark.parametrize("mask_name", ["right", "holes"])
@pytest.mark.parametrize("return_sequences, return_state", RETURN_MODES)
@pytest.mark.parametrize("merge_mode", ["concat", None])
def test_bidirectional_matches_keras_return_modes(
    merge_mode, return_sequences, return_state, mask_name
):
    ours, reference = make_bidirectional_pair(
        merge_mode=merge_mode,
        return_sequences=return_sequences,
        return_state=return_state,
    )
    x = make_inputs(mask_name=mask_name)
    mask = step_mask(mask_name)

    actual = run_and_differentiate(ours, x, [x], mask=mask)
    expected = run_and_differentiate(reference, x, [x], mask=mask)

    assert_runs_match(
        actual,
        expected,
        output_names(return_state, True, merge_mode),
        gradient_names(["inputs"], reference),
        f"merge_mode={merge_mode}, mask={mask_name}",
    )


@pytest.mark.parametrize("mask_name", ["none", "left", "empty_row"])
@pytest.mark.parametrize(
    "case", ["go_backwards", "initial_state", "zero_output_for_mask"]
)
def test_bidirectional_matches_keras_options(case, mask_name):
    options = {"return_sequences": True, "return_state": True}
    if case == "go_backwards":
        options["go_backwards"] = True
    if case == "zero_output_for_mask":
        # Keras' Bidirectional sets zero_output_for_mask=return_sequences
        # on both copies, so this case needs return_sequences=False.
        options = {"return_state": True, "zero_output_for_mask": True}
    ours, reference = make_bidirectional_pair(**options)
    x = make_inputs(mask_name=mask_name)
    watched, watched_names, call_kwargs = [x], ["inputs"], {}
    if case == "initial_state":
        initial = make_initial_state(4)
        watched += initial
        watched_names += ["initial h_fw", "c_fw", "h_bw", "c_bw"]
        call_kwargs["initial_state"] = initial
    mask = step_mask(mask_name)

    actual = run_and_differentiate(ours, x, watched, mask=mask, **call_kwargs)
    expected = run_and_differentiate(
        reference, x, watched, mask=mask, **call_kwargs
    )

    assert_runs_match(
        actual,
        expected,
        output_names(True, bidirectional=True),
        gradient_names(watched_names, reference),
        f"{case}, mask={mask_name}",
    )


def masked_model(layer, use_masking):
    """Wraps `layer` in a functional model, after `Masking(0.0)` if asked."""
    inputs = keras.Input((TIME, DEPTH), batch_size=BATCH)
    hidden = keras.layers.Masking(0.0)(inputs) if use_masking else inputs
    return keras.Model(inputs, layer(hidden))


@pytest.mark.parametrize("mask_name", MASKED)
@pytest.mark.parametrize("kind", list(LAYER_PAIRS))
def test_layer_masking_layer_matches_keras(kind, mask_name):
    ours, reference = LAYER_PAIRS[kind](
        return_sequences=True, return_state=True
    )
    ours_model = masked_model(ours, use_masking=True)
    reference_model = masked_model(reference, use_masking=True)
    x = make_inputs(mask_name=mask_name)

    actual = run_and_differentiate(ours_model, x, [x])
    expected = run_and_differentiate(reference_model, x, [x])

    assert_runs_match(
        actual,
        expected,
        output_names(True, bidirectional=kind == "bidirectional"),
        gradient_names(["inputs"], reference_model),
        f"{kind} after Masking, mask={mask_name}",
    )


@pytest.mark.parametrize("kind", list(LAYER_PAIRS))
def test_layer_masking_layer_equals_mask_argument(kind):
    ours, _ = LAYER_PAIRS[kind](return_sequences=True, return_state=True)
    model = masked_model(ours, use_masking=True)
    x = make_inputs(mask_name="holes")

    through_masking = as_list(model(x))
    through_argument = as_list(ours(x, mask=step_mask("holes")))

    for index, (a, b) in enumerate(zip(through_masking, through_argument)):
        np.testing.assert_array_equal(
            a, b, err_msg=f"{kind}: result {index}, Masking vs mask="
        )


def embedding_model(layer, seed=4):
    inputs = keras.Input((TIME,), batch_size=BATCH, dtype="int32")
    embedding = keras.layers.Embedding(10, DEPTH, mask_zero=True)
    model = keras.Model(inputs, layer(embedding(inputs)))
    randomize_layer(embedding, seed)
    return model


@pytest.mark.parametrize("mask_name", ["left", "empty_row"])
@pytest.mark.parametrize("kind", list(LAYER_PAIRS))
def test_layer_embedding_mask_matches_keras(kind, mask_name):
    ours, reference = LAYER_PAIRS[kind](
        return_sequences=True, return_state=True
    )
    ours_model = embedding_model(ours)
    reference_model = embedding_model(reference)
    ours_model.set_weights(reference_model.get_weights())
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 10, size=[BATCH, TIME]) * np.array(
        MASKS[mask_name], np.int64
    )
    ids = tf.constant(ids, tf.int32)

    actual = run_and_differentiate(ours_model, ids)
    expected = run_and_differentiate(reference_model, ids)

    assert_runs_match(
        actual,
        expected,
        output_names(True, bidirectional=kind == "bidirectional"),
        gradient_names([], reference_model),
        f"{kind} after Embedding(mask_zero=True), mask={mask_name}",
    )


def test_lstm_stateful_matches_keras_across_batches():
    ours, reference = make_lstm_pair(
        stateful=True, return_sequences=True, return_state=True
    )
    first, second = make_inputs(seed=10), make_inputs(seed=11)
    names = output_names(True)
    fresh = as_list(ours(second))
    ours.reset_states()
    reference.reset_states()

    for step, x in (("batch 1", first), ("batch 2", second)):
        for name, a, e in zip(names, as_list(ours(x)), as_list(reference(x))):
            assert_close(
                a, e, f"stateful {step}: {name}", FLOAT32_ATOL,
                category="layer outputs",
            )
    carried = as_list(ours(second))
    ours.reset_states()
    reference.reset_states()
    after_reset = as_list(ours(second))
    reference_after_reset = as_list(reference(second))

    assert np.abs(np.asarray(carried[0]) - np.asarray(fresh[0])).max() > 1e-3, (
        "the second batch of a stateful layer gave the same outputs as a "
        "fresh start, so the state was not carried"
    )
    for name, a, e in zip(names, after_reset, reference_after_reset):
        assert_close(
            a, e, f"after reset_states: {name}", FLOAT32_ATOL,
            category="layer outputs",
        )
    for name, a, e in zip(names, after_reset, fresh):
        np.testing.assert_array_equal(
            a, e, err_msg=f"after reset_states vs fresh layer: {name}"
        )


def test_lstm_stateful_weights_match_keras():
    ours, reference = make_lstm_pair(stateful=True)

    assert len(ours.get_weights()) == len(reference.get_weights()) == 3, (
        "a stateful layer must list only kernel, recurrent_kernel and bias "
        f"as weights, as Keras does; got {[w.path for w in ours.weights]}"
    )


SEQUENCE_LENGTH_LAYERS = {
    "lstm_keras": lambda: lstmkit.layers.LSTM(
        UNITS, return_sequences=True, return_state=True
    ),
    "lstm_tf1": lambda: lstmkit.layers.LSTM(
        UNITS, semantics="tf1", return_sequences=True, return_state=True
    ),
    "bidirectional": lambda: lstmkit.layers.Bidirectional(
        lstmkit.layers.LSTM(UNITS, return_sequences=True, return_state=True)
    ),
    "rnn_gru": lambda: lstmkit.layers.RNN(
        lstmkit.GRUCell(UNITS), return_sequences=True, return_state=True
    ),
    "bidirectional_rnn_gru": lambda: lstmkit.layers.Bidirectional(
        lstmkit.layers.RNN(
            lstmkit.GRUCell(UNITS), return_sequences=True, return_state=True
        )
    ),
}


def build_random(layer, seed=6):
    layer.build((BATCH, TIME, DEPTH))
    randomize_layer(layer, seed)
    return layer


@pytest.mark.parametrize("kind", list(SEQUENCE_LENGTH_LAYERS))
def test_layer_sequence_length_equals_right_mask(kind):
    layer = build_random(SEQUENCE_LENGTH_LAYERS[kind]())
    x = make_inputs()

    with_mask = as_list(layer(x, mask=step_mask("right")))
    with_lengths = as_list(layer(x, sequence_length=RIGHT_LENGTHS))
    with_both = as_list(
        layer(x, mask=step_mask("right"), sequence_length=RIGHT_LENGTHS)
    )

    for index, (a, b) in enumerate(zip(with_lengths, with_mask)):
        np.testing.assert_array_equal(
            a, b, err_msg=f"{kind}: result {index}, lengths vs mask"
        )
    for index, (a, b) in enumerate(zip(with_both, with_mask)):
        np.testing.assert_array_equal(
            a, b, err_msg=f"{kind}: result {index}, both vs mask"
        )


@pytest.mark.parametrize("kind", list(SEQUENCE_LENGTH_LAYERS))
def test_layer_mask_length_disagreement_raises(kind):
    layer = build_random(SEQUENCE_LENGTH_LAYERS[kind]())
    lengths = RIGHT_LENGTHS.copy()
    lengths[2] = 3

    with pytest.raises(ValueError, match=r"first in row 2"):
        layer(make_inputs(), mask=step_mask("right"), sequence_length=lengths)


def test_lstm_mask_length_disagreement_raises_in_graph():
    layer = build_random(SEQUENCE_LENGTH_LAYERS["lstm_keras"]())
    lengths = RIGHT_LENGTHS.copy()
    lengths[2] = 3
    call = tf.function(
        lambda x: layer(x, mask=step_mask("right"), sequence_length=lengths)
    )

    with pytest.raises(tf.errors.InvalidArgumentError, match="same valid"):
        call(make_inputs())


def make_v1_cells(options=None, seeds=(20, 21)):
    cells = []
    for seed in seeds:
        cell = build_v1_cell(DEPTH, UNITS, **(options or {}))
        randomize_weights(cell, seed)
        cells.append(cell)
    return cells


def test_bidirectional_tf1_matches_v1():
    cell_fw, cell_bw = make_v1_cells()
    ours = lstmkit.layers.Bidirectional(
        lstmkit.layers.LSTM(
            UNITS, semantics="tf1", return_sequences=True, return_state=True
        )
    )
    ours.build((BATCH, TIME, DEPTH))
    ours.set_weights(cell_fw.get_weights() + cell_bw.get_weights())
    # Large values at the padded steps: lengths must keep them out.
    x = tf.constant(
        np.where(
            np.array(MASKS["right"], bool)[:, :, None],
            make_inputs().numpy(),
            50.0,
        ),
        tf.float32,
    )

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        actual = as_list(ours(x, sequence_length=RIGHT_LENGTHS))
        (output_fw, output_bw), (state_fw, state_bw) = (
            tf.compat.v1.nn.bidirectional_dynamic_rnn(
                cell_fw,
                cell_bw,
                x,
                sequence_length=RIGHT_LENGTHS,
                dtype=tf.float32,
            )
        )
        expected = [
            tf.concat([output_fw, output_bw], axis=-1),
            state_fw.h,
            state_fw.c,
            state_bw.h,
            state_bw.c,
        ]
        actual_loss = weighted_sum(actual)
        expected_loss = weighted_sum(expected)
    actual_grads = tape.gradient(actual_loss, [x] + ours.trainable_weights)
    v1_weights = cell_fw.trainable_weights + cell_bw.trainable_weights
    expected_grads = tape.gradient(expected_loss, [x] + v1_weights)

    padded = ~np.array(MASKS["right"], bool)
    assert np.all(np.asarray(actual[0])[padded] == 0.0), (
        "tf1 semantics must output zeros at padded steps in both halves"
    )
    assert_runs_match(
        (actual, actual_grads),
        (expected, expected_grads),
        output_names(True, bidirectional=True),
        gradient_names(["inputs"], ours),
        "tf1 Bidirectional vs v1 bidirectional_dynamic_rnn",
    )


def test_bidirectional_keras_matches_v1_after_conversion():
    ours = build_random(
        lstmkit.layers.Bidirectional(
            lstmkit.layers.LSTM(UNITS, return_sequences=True)
        )
    )
    cells = []
    for layer in (ours.forward_layer, ours.backward_layer):
        converted = keras_to_v1(*layer.get_weights())
        cell = build_v1_cell(DEPTH, UNITS)
        cell.set_weights([converted.kernel, converted.bias])
        cells.append(cell)
    x = make_inputs(mask_name="right")

    actual = ours(x, mask=step_mask("right"))
    (output_fw, output_bw), _ = tf.compat.v1.nn.bidirectional_dynamic_rnn(
        *cells, x, sequence_length=RIGHT_LENGTHS, dtype=tf.float32
    )

    assert_close(
        actual,
        tf.concat([output_fw, output_bw], axis=-1),
        "keras-semantics Bidirectional vs converted v1",
        FLOAT32_ATOL,
        category="layer outputs",
    )


def keras_layout(v1_weights, options):
    """Converts v1 cell weights to a "keras"-semantics layer's weights."""
    kernel, bias, *rest = v1_weights
    return [
        reorder_gates(kernel[:DEPTH], "ijfo", "ifco"),
        reorder_gates(kernel[DEPTH:], "ijfo", "ifco"),
        reorder_gates(bias, "ijfo", "ifco"),
        *rest,
    ]


@pytest.mark.parametrize("option", list(OPTION_CASES))
@pytest.mark.parametrize("semantics", ["keras", "tf1"])
def test_lstm_v1_options_match_v1(semantics, option):
    options = OPTION_CASES[option]
    (v1_cell,) = make_v1_cells(options, seeds=(30,))
    layer_options = dict(options)
    if semantics == "keras":
        # The v1 cell adds forget_bias (1.0 by default) at run time. A
        # "keras" layer adds none unless given, and zero_output_for_mask
        # gives v1's zeros at padded steps.
        layer_options["forget_bias"] = options.get("forget_bias", 1.0)
        layer_options["zero_output_for_mask"] = True
    ours = lstmkit.layers.LSTM(
        UNITS,
        semantics=semantics,
        return_sequences=True,
        return_state=True,
        **layer_options,
    )
    ours.build((BATCH, TIME, DEPTH))
    v1_weights = v1_cell.get_weights()
    if semantics == "keras":
        ours.set_weights(keras_layout(v1_weights, options))
    else:
        ours.set_weights(v1_weights)
    x = make_inputs()
    lengths = np.array([6, 4, 0, 1], np.int32)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        actual = as_list(ours(x, sequence_length=lengths))
        outputs, state = tf.compat.v1.nn.dynamic_rnn(
            v1_cell, x, sequence_length=lengths, dtype=tf.float32
        )
        expected = [outputs, state.h, state.c]
        actual_loss = weighted_sum(actual)
        expected_loss = weighted_sum(expected)
    actual_grads = tape.gradient(actual_loss, [x] + ours.trainable_weights)
    expected_grads = tape.gradient(
        expected_loss, [x] + v1_cell.trainable_weights
    )
    expected_grads = [np.asarray(g) for g in expected_grads]
    if semantics == "keras":
        expected_grads = expected_grads[:1] + keras_layout(
            expected_grads[1:], options
        )

    assert_runs_match(
        (actual, actual_grads),
        (expected, expected_grads),
        output_names(True),
        gradient_names(["inputs"], ours),
        f"{semantics} semantics, {option}",
    )


@pytest.fixture
def fresh_padding_warning(monkeypatch, caplog):
    """Re-arms the once-per-process warning and captures lstmkit's logs."""
    monkeypatch.setattr(masks, "_warned_unmasked_padding", False)
    caplog.set_level(logging.WARNING, logger="lstmkit")
    return caplog


def padding_warnings(caplog):
    return [
        record
        for record in caplog.records
        if record.name == masks.logger.name
        and "no mask or sequence_length" in record.getMessage()
    ]


def test_bidirectional_warns_once_for_unmasked_padding(fresh_padding_warning):
    layer = build_random(
        lstmkit.layers.Bidirectional(lstmkit.layers.LSTM(UNITS))
    )
    x = make_inputs(mask_name="right")

    layer(x)
    layer(x)

    warnings = padding_warnings(fresh_padding_warning)
    assert len(warnings) == 1, (
        "right-padded input without a mask must log the padding warning "
        f"exactly once over two calls; got {len(warnings)}"
    )
    assert layer.name in warnings[0].getMessage(), (
        f"the warning must name the layer: {warnings[0].getMessage()!r}"
    )


@pytest.mark.parametrize("how", ["mask", "sequence_length", "masking_layer"])
def test_bidirectional_no_warning_when_masked(fresh_padding_warning, how):
    layer = build_random(
        lstmkit.layers.Bidirectional(lstmkit.layers.LSTM(UNITS))
    )
    x = make_inputs(mask_name="right")

    if how == "mask":
        layer(x, mask=step_mask("right"))
    elif how == "sequence_length":
        layer(x, sequence_length=RIGHT_LENGTHS)
    else:
        masked_model(layer, use_masking=True)(x)

    warnings = padding_warnings(fresh_padding_warning)
    assert not warnings, (
        f"masked input ({how}) must not log the padding warning; got "
        f"{[w.getMessage() for w in warnings]}"
    )


DROPOUT_LAYERS = {
    "lstm_keras": lambda **dropout: lstmkit.layers.LSTM(
        UNITS, return_sequences=True, seed=1, **dropout
    ),
    "lstm_tf1": lambda **dropout: lstmkit.layers.LSTM(
        UNITS, semantics="tf1", return_sequences=True, seed=1, **dropout
    ),
    "bidirectional": lambda **dropout: lstmkit.layers.Bidirectional(
        lstmkit.layers.LSTM(UNITS, return_sequences=True, seed=1, **dropout)
    ),
}
DROPOUT = {"dropout": 0.4, "recurrent_dropout": 0.3}


def dropout_pair(kind):
    """Returns a layer with dropout and a dropout-free copy of its weights."""
    with_dropout = build_random(DROPOUT_LAYERS[kind](**DROPOUT))
    without = DROPOUT_LAYERS[kind]()
    without.build((BATCH, TIME, DEPTH))
    without.set_weights(with_dropout.get_weights())
    return with_dropout, without


@pytest.mark.parametrize("training", [False, None])
@pytest.mark.parametrize("kind", list(DROPOUT_LAYERS))
def test_layer_dropout_inactive_at_inference(kind, training):
    with_dropout, without = dropout_pair(kind)
    x = make_inputs(mask_name="holes")
    mask = step_mask("holes")

    np.testing.assert_array_equal(
        with_dropout(x, mask=mask, training=training),
        without(x, mask=mask),
        err_msg=f"{kind}: dropout changed the output with training={training}",
    )


@pytest.mark.parametrize("kind", list(DROPOUT_LAYERS))
def test_layer_dropout_active_in_training(kind):
    with_dropout, without = dropout_pair(kind)
    x = make_inputs()

    difference = np.abs(
        np.asarray(with_dropout(x, training=True)) - np.asarray(without(x))
    ).max()

    assert difference > 1e-3, (
        f"{kind}: training=True gave the dropout-free output (max abs "
        f"difference {difference:.3g})"
    )


@pytest.mark.parametrize("semantics", ["keras", "tf1"])
def test_lstm_input_dropout_drops_expected_fraction(semantics):
    rate, batch, depth = 0.5, 64, 8
    layer = lstmkit.layers.LSTM(
        UNITS, semantics=semantics, dropout=rate, return_sequences=True, seed=3
    )
    layer.build((batch, 3, depth))
    randomize_layer(layer, 7)
    reference = lstmkit.layers.LSTM(
        UNITS, semantics=semantics, return_sequences=True
    )
    reference.build((batch, 3, depth))
    reference.set_weights(layer.get_weights())
    rng = np.random.default_rng(8)
    x = tf.constant(rng.normal(size=[batch, 3, depth]), tf.float32)

    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x, training=True)
        loss = weighted_sum([outputs])
    dropped = np.asarray(tape.gradient(loss, x)) == 0.0
    # One mask per sequence: a feature is dropped at every step or none.
    keep = ~dropped[:, 0, :]
    rebuilt = reference(x * keep[:, None, :].astype("float32") / (1 - rate))

    assert np.all(dropped == dropped[:, :1, :]), (
        "input dropout must drop the same features at every time step"
    )
    assert abs(dropped[:, 0, :].mean() - rate) < 0.1, (
        f"dropped fraction {dropped[:, 0, :].mean():.3f}, expected about "
        f"{rate}"
    )
    assert_close(
        outputs,
        rebuilt,
        "dropout output vs dropout-free layer on x * keep / (1 - rate)",
        FLOAT32_ATOL,
        category="layer outputs",
    )


@pytest.mark.parametrize("semantics", ["keras", "tf1"])
def test_lstm_recurrent_dropout_drops_expected_fraction(semantics):
    rate, units, depth = 0.5, 64, 3
    layer = lstmkit.layers.LSTM(
        units, semantics=semantics, recurrent_dropout=rate, seed=4
    )
    layer.build((1, 4, depth))
    randomize_layer(layer, 9)
    x = tf.constant(
        np.random.default_rng(10).normal(size=[1, 4, depth]), tf.float32
    )
    # With one row, dropping unit k of h before the recurrent product is the
    # same as zeroing row k of the recurrent kernel.
    recurrent = layer.trainable_weights[1 if semantics == "keras" else 0]

    with tf.GradientTape() as tape:
        output = layer(x, training=True)
    gradient = np.asarray(tape.gradient(output, recurrent))
    if semantics == "tf1":
        gradient = gradient[depth:]
    dropped = np.all(gradient == 0.0, axis=1)
    reference = lstmkit.layers.LSTM(units, semantics=semantics)
    reference.build((1, 4, depth))
    weights = layer.get_weights()
    index = 1 if semantics == "keras" else 0
    first_row = 0 if semantics == "keras" else depth
    scale = np.where(dropped, 0.0, 1.0 / (1 - rate))[:, None]
    weights[index][first_row:] *= scale.astype("float32")
    reference.set_weights(weights)

    assert abs(dropped.mean() - rate) < 0.15, (
        f"dropped fraction of h units {dropped.mean():.3f}, expected about "
        f"{rate}"
    )
    assert_close(
        output,
        reference(x),
        "recurrent dropout vs recurrent kernel rows scaled by keep/(1-rate)",
        FLOAT32_ATOL,
        category="layer outputs",
    )


def test_lstm_keras_default_initialization():
    depth, units = 4, 8
    layer = lstmkit.layers.LSTM(units)
    layer.build((None, TIME, depth))
    kernel, recurrent, bias = layer.get_weights()
    limit = np.sqrt(6.0 / (depth + 4 * units))

    expected_bias = np.zeros(4 * units)
    expected_bias[units : 2 * units] = 1.0
    np.testing.assert_array_equal(
        bias, expected_bias, err_msg="bias must be zero with the f block at 1"
    )
    np.testing.assert_allclose(
        recurrent @ recurrent.T,
        np.eye(units),
        atol=1e-5,
        err_msg="recurrent kernel must be orthogonal over [units, 4 units]",
    )
    assert kernel.shape == (depth, 4 * units), kernel.shape
    assert np.abs(kernel).max() <= limit, (
        f"kernel exceeds the Glorot uniform limit {limit:.4f}"
    )
    assert np.abs(kernel).max() > 0.8 * limit, (
        f"kernel spans only {np.abs(kernel).max():.4f} of limit {limit:.4f}"
    )


def test_lstm_keras_seeded_initialization_equals_keras():
    def initializers():
        return dict(
            kernel_initializer=keras.initializers.GlorotUniform(seed=1),
            recurrent_initializer=keras.initializers.Orthogonal(seed=2),
        )

    ours = lstmkit.layers.LSTM(UNITS, **initializers())
    ours.build((BATCH, TIME, DEPTH))
    reference = keras.layers.LSTM(UNITS, **initializers())
    reference.build((BATCH, TIME, DEPTH))

    for weight, a, e in zip(
        reference.weights, ours.get_weights(), reference.get_weights()
    ):
        np.testing.assert_array_equal(
            a, e, err_msg=f"{weight.path}: initial values differ from Keras"
        )


def test_lstm_tf1_default_initialization():
    depth, units = 4, 8
    layer = lstmkit.layers.LSTM(units, semantics="tf1")
    layer.build((None, TIME, depth))
    kernel, bias = layer.get_weights()
    # Glorot uniform over the whole v1 kernel [depth + units, 4 units],
    # whose limit is below the one for the x rows alone.
    limit = np.sqrt(6.0 / (depth + units + 4 * units))

    np.testing.assert_array_equal(
        bias, np.zeros(4 * units), err_msg="v1 bias must start at zero"
    )
    assert kernel.shape == (depth + units, 4 * units), kernel.shape
    assert np.abs(kernel).max() <= limit, (
        f"kernel exceeds the v1 Glorot uniform limit {limit:.4f}"
    )
    assert np.abs(kernel).max() > 0.8 * limit, (
        f"kernel spans only {np.abs(kernel).max():.4f} of limit {limit:.4f}"
    )


CONSTRUCTOR_ERRORS = {
    "semantics": (
        lambda: lstmkit.layers.LSTM(UNITS, semantics="tf2"),
        ValueError,
        "'tf2'",
    ),
    "dropout_1": (
        lambda: lstmkit.layers.LSTM(UNITS, dropout=1.0),
        ValueError,
        r"dropout must be in \[0, 1\); got 1.0",
    ),
    "recurrent_dropout_negative": (
        lambda: lstmkit.layers.LSTM(UNITS, recurrent_dropout=-0.1),
        ValueError,
        "-0.1",
    ),
    "tf1_recurrent_initializer": (
        lambda: lstmkit.layers.LSTM(
            UNITS, semantics="tf1", recurrent_initializer="zeros"
        ),
        ValueError,
        "recurrent_initializer='zeros'",
    ),
    "tf1_bias_initializer": (
        lambda: lstmkit.layers.LSTM(
            UNITS, semantics="tf1", bias_initializer="ones"
        ),
        ValueError,
        "bias_initializer='ones'",
    ),
    "tf1_unit_forget_bias": (
        lambda: lstmkit.layers.LSTM(
            UNITS, semantics="tf1", unit_forget_bias=False
        ),
        ValueError,
        "unit_forget_bias=False",
    ),
    "stateful_without_batch": (
        lambda: lstmkit.layers.LSTM(UNITS, stateful=True)(
            keras.Input((TIME, DEPTH))
        ),
        ValueError,
        "batch size is None",
    ),
    "bidirectional_non_lstm": (
        lambda: lstmkit.layers.Bidirectional(keras.layers.GRU(UNITS)),
        TypeError,
        "GRU",
    ),
    "bidirectional_merge_mode": (
        lambda: lstmkit.layers.Bidirectional(
            lstmkit.layers.LSTM(UNITS), merge_mode="max"
        ),
        ValueError,
        "'max'",
    ),
    "bidirectional_same_go_backwards": (
        lambda: lstmkit.layers.Bidirectional(
            lstmkit.layers.LSTM(UNITS),
            backward_layer=lstmkit.layers.LSTM(UNITS),
        ),
        ValueError,
        "but both are False",
    ),
}


@pytest.mark.parametrize("case", list(CONSTRUCTOR_ERRORS))
def test_layer_constructor_rejects_invalid_argument(case):
    make, error, message = CONSTRUCTOR_ERRORS[case]

    with pytest.raises(error, match=message):
        make()


# The generic layer, lstmkit.layers.RNN.


def make_gru_pair(seed=12, **kwargs):
    """Builds a Keras GRU with random weights and `RNN(GRUCell)` copy."""
    reset_after = kwargs.pop("reset_after", True)
    reference = keras.layers.GRU(UNITS, reset_after=reset_after, **kwargs)
    reference.build((BATCH, TIME, DEPTH))
    randomize_layer(reference, seed)
    ours = lstmkit.layers.RNN(
        lstmkit.GRUCell(UNITS, reset_after=reset_after), **kwargs
    )
    ours.build((BATCH, TIME, DEPTH))
    ours.set_weights(reference.get_weights())
    return ours, reference


GRU_OPTION_CASES = {
    "reset_after": {},
    "reset_before": {"reset_after": False},
    "go_backwards": {"go_backwards": True},
    "zero_output_for_mask": {"zero_output_for_mask": True},
}


@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("case", list(GRU_OPTION_CASES))
def test_rnn_gru_matches_keras(case, mask_name):
    ours, reference = make_gru_pair(
        return_sequences=True, return_state=True, **GRU_OPTION_CASES[case]
    )
    x = make_inputs(mask_name=mask_name)
    initial = make_initial_state(1)
    mask = step_mask(mask_name)

    actual = run_and_differentiate(
        ours, x, [x] + initial, mask=mask, initial_state=initial
    )
    expected = run_and_differentiate(
        reference, x, [x] + initial, mask=mask, initial_state=initial
    )

    assert_runs_match(
        actual,
        expected,
        ["output", "h"],
        gradient_names(["inputs", "initial h"], reference),
        f"{case}, mask={mask_name}",
    )


@pytest.mark.parametrize("mask_name", list(MASKS))
def test_bidirectional_rnn_gru_matches_keras(mask_name):
    reference = keras.layers.Bidirectional(
        keras.layers.GRU(UNITS, return_sequences=True, return_state=True)
    )
    ours = lstmkit.layers.Bidirectional(
        lstmkit.layers.RNN(
            lstmkit.GRUCell(UNITS), return_sequences=True, return_state=True
        )
    )
    reference.build((BATCH, TIME, DEPTH))
    randomize_layer(reference, 13)
    ours.build((BATCH, TIME, DEPTH))
    ours.set_weights(reference.get_weights())
    x = make_inputs(mask_name=mask_name)
    initial = make_initial_state(2)
    mask = step_mask(mask_name)

    actual = run_and_differentiate(
        ours, x, [x] + initial, mask=mask, initial_state=initial
    )
    expected = run_and_differentiate(
        reference, x, [x] + initial, mask=mask, initial_state=initial
    )

    assert_runs_match(
        actual,
        expected,
        ["output", "h_fw", "h_bw"],
        gradient_names(["inputs", "initial h_fw", "initial h_bw"], reference),
        f"mask={mask_name}",
    )


def test_rnn_lstm_cell_equals_lstm_layer():
    lstm = build_random(
        lstmkit.layers.LSTM(UNITS, return_sequences=True, return_state=True)
    )
    rnn = lstmkit.layers.RNN(
        lstmkit.KerasLSTMCell(UNITS), return_sequences=True, return_state=True
    )
    rnn.build((BATCH, TIME, DEPTH))
    rnn.set_weights(lstm.get_weights())
    x = make_inputs(mask_name="holes")
    initial = make_initial_state(2)

    expected = as_list(lstm(x, mask=step_mask("holes"), initial_state=initial))
    actual = as_list(rnn(x, mask=step_mask("holes"), initial_state=initial))

    for name, a, e in zip(["output", "h", "c"], actual, expected):
        np.testing.assert_array_equal(a, e, err_msg=name)


def test_rnn_sets_cell_training_for_one_call():
    cell = lstmkit.VariationalDropoutCell(
        lstmkit.LSTMCell(UNITS), dropout=0.4, recurrent_dropout=0.4, seed=2
    )
    layer = build_random(lstmkit.layers.RNN(cell, return_sequences=True))
    x = make_inputs()

    inference = np.asarray(layer(x))
    unset = np.asarray(layer(x, training=None))
    training = np.asarray(layer(x, training=True))

    np.testing.assert_array_equal(unset, inference)
    assert np.abs(training - inference).max() > 1e-3, (
        "training=True gave the inference output, so the cell's dropout "
        "was not active"
    )
    assert cell.training is False, "the layer left the cell in training"
    cell.training = True
    np.testing.assert_array_equal(np.asarray(layer(x)), inference)
    assert cell.training is True, "the layer did not restore cell.training"


def test_rnn_stateful_gru_carries_state():
    inputs = keras.Input((TIME, DEPTH), batch_size=BATCH)
    layer = lstmkit.layers.RNN(
        lstmkit.GRUCell(UNITS), return_sequences=True, stateful=True
    )
    model = keras.Model(inputs, layer(inputs))
    randomize_layer(layer, 14)
    plain = lstmkit.layers.RNN(lstmkit.GRUCell(UNITS), return_sequences=True)
    plain.build((BATCH, TIME, DEPTH))
    plain.set_weights(layer.get_weights())
    first, second = make_inputs(seed=15), make_inputs(seed=16)

    model(first)
    carried = np.asarray(model(second))
    whole = np.asarray(plain(tf.concat([first, second], axis=1)))
    layer.reset_states()
    fresh = np.asarray(model(second))

    assert_close(
        carried, whole[:, TIME:], "stateful second batch vs one long call",
        FLOAT32_ATOL, category="layer outputs",
    )
    np.testing.assert_array_equal(fresh, np.asarray(plain(second)))
    assert [v.name for v in layer.state_variables] == ["state_h"]
    assert len(layer.weights) == 3


def test_rnn_serializes_cell():
    cell = lstmkit.LayerNormLSTMCell(UNITS, norm="separate")
    layer = lstmkit.layers.RNN(cell, return_state=True, go_backwards=True)

    config = layer.get_config()
    restored = lstmkit.layers.RNN.from_config(config)

    assert config["cell"]["class_name"] == "LayerNormLSTMCell"
    assert type(restored.cell) is lstmkit.LayerNormLSTMCell
    assert restored.cell is not cell
    assert restored.get_config() == config


RNN_ERRORS = {
    "keras_cell": (
        lambda: lstmkit.layers.RNN(keras.layers.GRUCell(UNITS)),
        TypeError,
        "must be an lstmkit cell",
    ),
    "initial_state_length": (
        lambda: lstmkit.layers.RNN(lstmkit.LSTMCell(UNITS))(
            make_inputs(), initial_state=make_initial_state(1)
        ),
        ValueError,
        r"initial_state must be \[h, c\]; got 1 tensors",
    ),
    "bidirectional_initial_state_length": (
        lambda: lstmkit.layers.Bidirectional(
            lstmkit.layers.RNN(lstmkit.GRUCell(UNITS))
        )(make_inputs(), initial_state=make_initial_state(4)),
        ValueError,
        r"must be \[h_fw, h_bw\]; got 4 tensors",
    ),
    "bidirectional_keras_backward_layer": (
        lambda: lstmkit.layers.Bidirectional(
            lstmkit.layers.RNN(lstmkit.GRUCell(UNITS)),
            backward_layer=keras.layers.GRU(UNITS, go_backwards=True),
        ),
        TypeError,
        "backward_layer must be an lstmkit.layers.LSTM or",
    ),
}


@pytest.mark.parametrize("case", list(RNN_ERRORS))
def test_rnn_rejects_invalid_argument(case):
    make, error, message = RNN_ERRORS[case]

    with pytest.raises(error, match=message):
        make()


def test_load_model_registers_every_cell(tmp_path):
    """A fresh process that imports only `lstmkit.layers` loads any cell."""
    import subprocess
    import sys

    path = tmp_path / "gru.keras"
    model = keras.Sequential([
        keras.Input((5, 3)),
        lstmkit.layers.RNN(lstmkit.GRUCell(4), return_sequences=True),
    ])
    model.save(path)
    script = (
        "import sys, keras, lstmkit.layers\n"
        "model = keras.saving.load_model(sys.argv[1])\n"
        "print(type(model.layers[0].cell).__name__)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "GRUCell"
