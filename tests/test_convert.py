"""Tests of `lstmkit.convert`: each conversion path round-trips the arrays
and reproduces the source layer's outputs on a random probe batch.

References: the v1 `LSTMCell` with `tf.compat.v1.nn.dynamic_rnn` (eager and
in a TF1 graph saved to a real checkpoint), `keras.layers.LSTM` and
`keras.layers.Bidirectional`, a float64 NumPy implementation of the
`torch.nn.LSTM` equations as documented by PyTorch, and `torch.nn.LSTM`
itself when PyTorch is installed.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit
from helpers import (
    OPTION_CASES,
    V1LSTMCell,
    make_cell_pair,
    sigmoid,
)
from lstmkit import convert
from lstmkit.convert import (
    GATE_ORDER_KERAS,
    GATE_ORDER_TF1,
    GATE_ORDER_TORCH,
    V1Weights,
)

BATCH, TIME, DEPTH, UNITS, PROJ = 4, 6, 3, 5, 2
# A full row, a short row, a length-0 row and a length-1 row.
LENGTHS = np.array([6, 3, 0, 1], np.int32)
# Max abs difference of float32 outputs and states between two frameworks
# that share converted weights.
OUTPUT_ATOL = 1e-5
FLOAT32_EPS = float(np.finfo(np.float32).eps)
# Options that Keras LSTM lacks, and those that nn.LSTM lacks.
KERAS_UNSUPPORTED = {
    "use_peepholes": {"use_peepholes": True},
    "cell_clip": {"cell_clip": 0.3},
    "num_proj": {"num_proj": PROJ},
    "proj_clip": {"num_proj": PROJ, "proj_clip": 0.2},
}
TORCH_UNSUPPORTED = {
    "use_peepholes": {"use_peepholes": True},
    "cell_clip": {"cell_clip": 0.3},
    "proj_clip": {"num_proj": PROJ, "proj_clip": 0.2},
    "activation": {"activation": "softsign"},
}
# Options that a TF1 checkpoint does not store, so a reader passes them.
NOT_IN_CHECKPOINT = ("cell_clip", "proj_clip", "activation")
# (num_layers, bidirectional, proj_size) of the nn.LSTM cases.
TORCH_CASES = [(1, False, 0), (1, True, 0), (2, False, PROJ), (2, True, PROJ)]


# ---------------------------------------------------------------- helpers


def probe_batch(seed=0, depth=DEPTH, dtype=np.float32):
    """Returns random inputs `[BATCH, TIME, depth]`."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=[BATCH, TIME, depth]).astype(dtype)


def assert_outputs_close(actual, expected, label, atol=OUTPUT_ATOL):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (
        f"{label}: shape {actual.shape} differs from {expected.shape}"
    )
    diff = float(np.abs(actual - expected).max())
    assert diff <= atol, f"{label}: max abs diff {diff:.3g} > {atol:g}"


def assert_bias_close(actual, expected, forget_bias, label):
    """Asserts equality up to the rounding of adding `forget_bias` and
    subtracting it again in float32 (one rounding each way)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (
        f"{label}: shape {actual.shape} differs from {expected.shape}"
    )
    allowed = 2 * FLOAT32_EPS * (np.abs(expected) + abs(forget_bias))
    diff = np.abs(actual - expected)
    assert np.all(diff <= allowed), (
        f"{label}: max abs diff {diff.max():.3g} exceeds float32 rounding"
    )


def v1_cell(num_units=UNITS, seed=0, depth=DEPTH, **options):
    """Returns a built v1 cell with random nonzero weights."""
    cell, _ = make_cell_pair(depth, num_units, seed=seed, **options)
    return cell


def run_v1(cell, x, lengths=None):
    """Runs the real v1 `dynamic_rnn` and returns `(outputs, c, h)`."""
    outputs, state = tf.compat.v1.nn.dynamic_rnn(
        cell, x, sequence_length=lengths, dtype=tf.as_dtype(x.dtype)
    )
    return outputs.numpy(), state.c.numpy(), state.h.numpy()


def run_lstmkit(cell, x, lengths=None):
    """Runs `lstmkit.dynamic_rnn` and returns `(outputs, c, h)`."""
    outputs, state = lstmkit.dynamic_rnn(cell, x, sequence_length=lengths)
    return outputs.numpy(), state.c.numpy(), state.h.numpy()


def cell_options(options):
    """Returns the options of `options` that are not stored as weights."""
    return {
        name: value
        for name, value in options.items()
        if name in NOT_IN_CHECKPOINT
    }


def block_columns(order, gates, units):
    """Returns column indices that pick the blocks `gates` from `order`."""
    return np.concatenate(
        [
            np.arange(units) + order.index(gate) * units
            for gate in gates
        ]
    )


# ---------------------------------------------------------------- layouts


def test_reorder_gates_moves_named_blocks():
    labels = np.repeat(np.array([10, 20, 30, 40]), 2)  # i, j, f, o blocks
    array = np.stack([labels, labels + 1])  # [2, 8]

    to_keras = convert.reorder_gates(array, GATE_ORDER_TF1, GATE_ORDER_KERAS)
    to_torch = convert.reorder_gates(array, GATE_ORDER_TF1, GATE_ORDER_TORCH)
    back = convert.reorder_gates(to_keras, GATE_ORDER_KERAS, GATE_ORDER_TF1)

    assert to_keras[0].tolist() == [10, 10, 30, 30, 20, 20, 40, 40]
    assert np.array_equal(to_torch, to_keras)
    assert np.array_equal(back, array)
    assert to_keras.dtype == array.dtype


def test_reorder_gates_along_axis_zero():
    array = np.arange(8).reshape(8, 1)

    moved = convert.reorder_gates(array, "ijfo", "ifco", axis=0)

    assert moved[:, 0].tolist() == [0, 1, 4, 5, 2, 3, 6, 7]


@pytest.mark.parametrize("order", ["ijko", "ijf", "iifo", "ijfoo", 4])
def test_reorder_gates_rejects_bad_order(order):
    with pytest.raises(ValueError, match="Invalid source gate order"):
        convert.reorder_gates(np.zeros(8), order, GATE_ORDER_KERAS)


def test_reorder_gates_rejects_bad_axis_size():
    with pytest.raises(ValueError, match="size 6, which is not 4"):
        convert.reorder_gates(np.zeros([6, 8]), "ijfo", "ifco", axis=0)


def test_gate_slice_picks_forget_block():
    assert convert.gate_slice(GATE_ORDER_TF1, "f", 3) == slice(6, 9)
    assert convert.gate_slice(GATE_ORDER_KERAS, "f", 3) == slice(3, 6)
    with pytest.raises(ValueError, match="Gate 'j' is not in"):
        convert.gate_slice(GATE_ORDER_TORCH, "j", 3)


def test_v1_weights_infers_shapes():
    plain = V1Weights(np.zeros([DEPTH + UNITS, 4 * UNITS]), np.zeros(20))
    projected = V1Weights(
        np.zeros([DEPTH + PROJ, 4 * UNITS]),
        np.zeros(4 * UNITS),
        projection=np.zeros([UNITS, PROJ]),
        input_depth=DEPTH,
    )

    assert plain.input_depth == DEPTH
    assert plain.num_units == UNITS
    assert plain.num_proj is None
    assert not plain.use_peepholes
    assert projected.input_depth == DEPTH
    assert projected.h_depth == PROJ


def v1_weights_arrays(**changes):
    arrays = {
        "kernel": np.zeros([DEPTH + UNITS, 4 * UNITS]),
        "bias": np.zeros(4 * UNITS),
        "w_f_diag": np.zeros(UNITS),
        "w_i_diag": np.zeros(UNITS),
        "w_o_diag": np.zeros(UNITS),
    }
    arrays.update(changes)
    return arrays


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"w_o_diag": None}, "got w_f_diag, w_i_diag without w_o_diag"),
        ({"w_i_diag": np.zeros(3)}, r"w_i_diag must have shape \(5,\)"),
        ({"bias": np.zeros(6)}, r"bias must have shape \[4 \* num_units\]"),
        ({"kernel": np.zeros([8, 16])}, r"kernel must have shape"),
        ({"projection": np.zeros([4, 2])}, r"projection must have shape"),
        ({"kernel": np.zeros([5, 20])}, "leaves no rows for the inputs"),
        ({"input_depth": 4}, "input_depth=4 does not match"),
    ],
    ids=[
        "partial_peepholes",
        "peephole_shape",
        "bias_shape",
        "kernel_columns",
        "projection_shape",
        "no_input_rows",
        "input_depth",
    ],
)
def test_v1_weights_rejects_inconsistent_arrays(changes, message):
    with pytest.raises(ValueError, match=message):
        V1Weights(**v1_weights_arrays(**changes))


# ---------------------------------------------------------------- cells


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_weights_from_v1_and_lstmkit_cells_agree(case):
    options = OPTION_CASES[case]
    v1, ours = make_cell_pair(DEPTH, UNITS, seed=3, **options)

    from_v1 = convert.v1_weights_from_cell(v1)
    from_ours = convert.v1_weights_from_cell(ours)

    for name in ("kernel", "bias", "w_f_diag", "w_o_diag", "projection"):
        a, b = getattr(from_v1, name), getattr(from_ours, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert np.array_equal(a, b), name
    assert from_v1.forget_bias == options.get("forget_bias", 1.0)
    assert convert.v1_cell_options(v1) == convert.v1_cell_options(ours)


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_weights_to_cell_reproduces_v1(case):
    options = OPTION_CASES[case]
    v1 = v1_cell(seed=4, **options)
    x = probe_batch(seed=4)
    expected = run_v1(v1, x, LENGTHS)

    weights = convert.v1_weights_from_cell(v1)
    cell = convert.v1_weights_to_cell(weights, **cell_options(options))
    actual = run_lstmkit(cell, x, LENGTHS)

    assert isinstance(cell, lstmkit.LSTMCell)
    for got, want in zip(cell.get_weights(), v1.get_weights()):
        assert np.array_equal(got, want)
    for name, got, want in zip(("outputs", "c", "h"), actual, expected):
        assert_outputs_close(got, want, f"{case} {name}")


def test_weights_to_cell_fills_given_cell():
    weights = convert.v1_weights_from_cell(v1_cell(seed=5))
    cell = lstmkit.LSTMCell(UNITS, cell_clip=0.4)

    filled = convert.v1_weights_to_cell(weights, cell)

    assert filled is cell
    assert cell.cell_clip == 0.4
    assert np.array_equal(cell.kernel.numpy(), weights.kernel)


@pytest.mark.parametrize(
    "cell_kwargs, message",
    [
        ({"num_units": UNITS + 1}, "num_units=6"),
        ({"num_units": UNITS, "forget_bias": 0.0}, "forget_bias=0.0"),
        ({"num_units": UNITS, "use_peepholes": True}, "use_peepholes=True"),
    ],
    ids=["num_units", "forget_bias", "peepholes"],
)
def test_weights_to_cell_rejects_mismatched_cell(cell_kwargs, message):
    weights = convert.v1_weights_from_cell(v1_cell(seed=5))
    cell = lstmkit.LSTMCell(**cell_kwargs)

    with pytest.raises(ValueError, match=message):
        convert.v1_weights_to_cell(weights, cell)


def test_weights_to_cell_rejects_options_with_cell():
    weights = convert.v1_weights_from_cell(v1_cell(seed=5))

    with pytest.raises(ValueError, match=r"cell_options \['cell_clip'\]"):
        convert.v1_weights_to_cell(
            weights, lstmkit.LSTMCell(UNITS), cell_clip=0.1
        )


def test_weights_from_cell_rejects_unbuilt_and_foreign():
    with pytest.raises(ValueError, match="not built"):
        convert.v1_weights_from_cell(lstmkit.LSTMCell(UNITS))
    with pytest.raises(TypeError, match="got GRUCell"):
        convert.v1_weights_from_cell(keras.layers.GRUCell(UNITS))


# ---------------------------------------------------------------- Keras


def test_v1_to_keras_layout():
    weights = convert.v1_weights_from_cell(v1_cell(seed=6, forget_bias=0.5))
    keras_order = block_columns(GATE_ORDER_TF1, "ifjo", UNITS)

    kernel, recurrent_kernel, bias = convert.v1_to_keras(weights)

    expected_bias = weights.bias[keras_order].copy()
    expected_bias[UNITS : 2 * UNITS] += np.float32(0.5)
    assert np.array_equal(kernel, weights.kernel[:DEPTH, keras_order])
    assert np.array_equal(
        recurrent_kernel, weights.kernel[DEPTH:, keras_order]
    )
    assert np.array_equal(bias, expected_bias)
    assert kernel.dtype == np.float32


@pytest.mark.parametrize(
    "options",
    [{}, {"forget_bias": 0.0}, {"forget_bias": 0.5, "activation": "softsign"}],
    ids=["default", "forget_bias_0", "softsign"],
)
def test_keras_lstm_reproduces_v1_and_back(options):
    v1 = v1_cell(seed=7, **options)
    x = probe_batch(seed=7)
    expected_outputs, expected_c, expected_h = run_v1(v1, x)
    forget_bias = options.get("forget_bias", 1.0)

    # v1 -> lstmkit -> Keras.
    weights = convert.v1_weights_from_cell(v1)
    cell = convert.v1_weights_to_cell(weights, **cell_options(options))
    layer = convert.to_keras_lstm(
        cell, return_sequences=True, return_state=True
    )
    outputs, h, c = layer(x)

    assert isinstance(layer, keras.layers.LSTM)
    assert_outputs_close(outputs, expected_outputs, "Keras outputs")
    assert_outputs_close(h, expected_h, "Keras h")
    assert_outputs_close(c, expected_c, "Keras c")

    # Keras -> lstmkit.
    back = convert.from_keras_lstm(layer, forget_bias=forget_bias)
    back_weights = convert.v1_weights_from_cell(back)
    actual = run_lstmkit(back, x)

    assert np.array_equal(back_weights.kernel, weights.kernel)
    assert_bias_close(back_weights.bias, weights.bias, forget_bias, "bias")
    assert back.forget_bias == forget_bias
    expected = (expected_outputs, expected_c, expected_h)
    for name, got, want in zip(("outputs", "c", "h"), actual, expected):
        assert_outputs_close(got, want, f"lstmkit {name} after Keras")


def test_keras_lstm_mask_reproduces_lengths():
    v1 = v1_cell(seed=8)
    x = probe_batch(seed=8)
    expected_outputs, expected_c, expected_h = run_v1(v1, x, LENGTHS)
    mask = tf.sequence_mask(LENGTHS, TIME)

    layer = convert.to_keras_lstm(v1, return_sequences=True, return_state=True)
    outputs, h, c = layer(x, mask=mask)

    assert_outputs_close(outputs, expected_outputs, "masked outputs")
    assert_outputs_close(h, expected_h, "masked h")
    assert_outputs_close(c, expected_c, "masked c")


def test_keras_source_round_trips():
    layer = keras.layers.LSTM(UNITS, return_sequences=True, return_state=True)
    layer.build((None, None, DEPTH))
    kernel, recurrent_kernel, bias = layer.get_weights()
    rng = np.random.default_rng(9)
    bias = rng.uniform(-0.8, 0.8, size=bias.shape).astype(np.float32)
    layer.set_weights([kernel, recurrent_kernel, bias])
    x = probe_batch(seed=9)
    expected_outputs, expected_h, expected_c = layer(x)

    cell = convert.from_keras_lstm(layer)
    outputs, c, h = run_lstmkit(cell, x)
    again = convert.to_keras_lstm(cell)
    direct = convert.keras_to_v1(kernel, recurrent_kernel, bias)
    again_kernel, again_recurrent, again_bias = again.get_weights()

    assert_outputs_close(outputs, expected_outputs, "lstmkit outputs")
    assert_outputs_close(h, expected_h, "lstmkit h")
    assert_outputs_close(c, expected_c, "lstmkit c")
    assert np.array_equal(again_kernel, kernel)
    assert np.array_equal(again_recurrent, recurrent_kernel)
    assert_bias_close(again_bias, bias, 1.0, "Keras bias")
    assert np.array_equal(direct.kernel, cell.kernel.numpy())
    assert np.array_equal(direct.bias, cell.bias.numpy())


def test_keras_lstm_keeps_float64():
    v1 = v1_cell(seed=10, dtype="float64")
    x = probe_batch(seed=10, dtype=np.float64)
    expected_outputs, _, _ = run_v1(v1, x)

    layer = convert.to_keras_lstm(v1, return_sequences=True)
    back = convert.from_keras_lstm(layer)

    assert layer.dtype == "float64"
    assert back.dtype == "float64"
    assert_outputs_close(layer(x), expected_outputs, "outputs", atol=1e-12)


def test_keras_bidirectional_mask_reproduces_lengths():
    v1_fw = v1_cell(seed=11, forget_bias=0.5)
    v1_bw = v1_cell(seed=12, forget_bias=0.5)
    x = probe_batch(seed=11)
    (ref_fw, ref_bw), (state_fw, state_bw) = (
        tf.compat.v1.nn.bidirectional_dynamic_rnn(
            v1_fw, v1_bw, x, sequence_length=LENGTHS, dtype=tf.float32
        )
    )
    mask = tf.sequence_mask(LENGTHS, TIME)

    layer = convert.to_keras_bidirectional(
        v1_fw, v1_bw, return_sequences=True, return_state=True
    )
    outputs, h_fw, c_fw, h_bw, c_bw = layer(x, mask=mask)

    expected_weights = convert.v1_to_keras(v1_fw) + convert.v1_to_keras(v1_bw)
    for got, want in zip(layer.get_weights(), expected_weights):
        assert np.array_equal(got, want)
    expected_outputs = np.concatenate([ref_fw, ref_bw], axis=-1)
    assert_outputs_close(outputs, expected_outputs, "Keras outputs")
    assert_outputs_close(h_fw, state_fw.h, "Keras h_fw")
    assert_outputs_close(c_fw, state_fw.c, "Keras c_fw")
    assert_outputs_close(h_bw, state_bw.h, "Keras h_bw")
    assert_outputs_close(c_bw, state_bw.c, "Keras c_bw")

    cell_fw, cell_bw = convert.from_keras_bidirectional(layer, 0.5)
    (out_fw, out_bw), (ours_fw, ours_bw) = lstmkit.bidirectional_dynamic_rnn(
        cell_fw, cell_bw, x, sequence_length=LENGTHS
    )

    assert np.array_equal(cell_fw.kernel.numpy(), v1_fw.get_weights()[0])
    assert np.array_equal(cell_bw.kernel.numpy(), v1_bw.get_weights()[0])
    assert_outputs_close(out_fw, ref_fw, "lstmkit output_fw")
    assert_outputs_close(out_bw, ref_bw, "lstmkit output_bw")
    assert_outputs_close(ours_fw.h, state_fw.h, "lstmkit h_fw")
    assert_outputs_close(ours_bw.c, state_bw.c, "lstmkit c_bw")


@pytest.mark.parametrize("option", sorted(KERAS_UNSUPPORTED))
def test_to_keras_rejects_option(option):
    v1 = v1_cell(seed=13, **KERAS_UNSUPPORTED[option])
    message = f"Keras LSTM .* has no counterpart for .*{option}="

    with pytest.raises(ValueError, match=message):
        convert.to_keras_lstm(v1)
    with pytest.raises(ValueError, match=message):
        convert.v1_to_keras(v1)
    with pytest.raises(ValueError, match=message):
        convert.to_keras_bidirectional(v1_cell(seed=14), v1)


def test_to_keras_rejects_projection_weights():
    weights = convert.v1_weights_from_cell(v1_cell(seed=15, num_proj=PROJ))

    with pytest.raises(ValueError, match="no counterpart for num_proj=2"):
        convert.v1_to_keras(weights)


def test_to_keras_bidirectional_rejects_depths():
    with pytest.raises(ValueError, match="input depth 3 and cell_bw 4"):
        convert.to_keras_bidirectional(v1_cell(), v1_cell(depth=4))


def test_from_keras_rejects_unsupported_layers():
    hard = keras.layers.LSTM(UNITS, recurrent_activation="hard_sigmoid")
    hard.build((None, None, DEPTH))
    unbuilt = keras.layers.LSTM(UNITS)

    with pytest.raises(ValueError, match="recurrent_activation='hard_sig"):
        convert.from_keras_lstm(hard)
    with pytest.raises(ValueError, match="is not built"):
        convert.from_keras_lstm(unbuilt)
    with pytest.raises(TypeError, match="got GRU"):
        convert.from_keras_lstm(keras.layers.GRU(UNITS))
    with pytest.raises(TypeError, match="Expected a keras.layers.Bidir"):
        convert.from_keras_bidirectional(unbuilt)


@pytest.mark.parametrize(
    "shapes, message",
    [
        (([3, 20], [5, 16], [20]), r"recurrent_kernel has shape \(5, 16\)"),
        (([3, 16], [4, 16], [12]), r"bias has shape \(12,\)"),
        (([3, 12], [4, 16], [16]), r"kernel has shape \(3, 12\)"),
    ],
    ids=["recurrent_kernel", "bias", "kernel"],
)
def test_keras_to_v1_rejects_shapes(shapes, message):
    arrays = [np.zeros(shape, np.float32) for shape in shapes]

    with pytest.raises(ValueError, match=message):
        convert.keras_to_v1(*arrays)


# ---------------------------------------------------------------- PyTorch


def numpy_torch_lstm(x, state_dict, num_layers, bidirectional):
    """Runs `torch.nn.LSTM(batch_first=True)` in float64 with NumPy.

    Implements the equations of the `torch.nn.LSTM` documentation: for
    each layer and direction,

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
        f = sigmoid(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        o = sigmoid(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g
        h' = o * tanh(c'), then h' = W_hr h' with proj_size > 0

    where `weight_ih` stacks W_ii, W_if, W_ig, W_io by rows. The reverse
    direction reads the sequence from its last step. Layer k + 1 reads the
    outputs of layer k, both directions concatenated.

    Returns:
        `(output [batch, time, directions * h], h_n, c_n)` with
        `h_n [num_layers * directions, batch, h]` as PyTorch orders it.
    """
    weights = {
        key: np.asarray(value, np.float64) for key, value in state_dict.items()
    }
    layer_input = np.asarray(x, np.float64)
    h_n, c_n = [], []
    for layer in range(num_layers):
        suffixes = [f"_l{layer}"]
        if bidirectional:
            suffixes.append(f"_l{layer}_reverse")
        outputs = []
        for suffix in suffixes:
            sequence = layer_input
            if suffix.endswith("_reverse"):
                sequence = sequence[:, ::-1]
            output, h, c = numpy_torch_direction(sequence, weights, suffix)
            if suffix.endswith("_reverse"):
                output = output[:, ::-1]
            outputs.append(output)
            h_n.append(h)
            c_n.append(c)
        layer_input = np.concatenate(outputs, axis=-1)
    return layer_input, np.stack(h_n), np.stack(c_n)


def numpy_torch_direction(x, weights, suffix):
    weight_ih = weights["weight_ih" + suffix]
    weight_hh = weights["weight_hh" + suffix]
    weight_hr = weights.get("weight_hr" + suffix)
    units = weight_ih.shape[0] // 4
    bias = np.zeros(4 * units)
    if "bias_ih" + suffix in weights:
        bias = weights["bias_ih" + suffix] + weights["bias_hh" + suffix]

    batch, time, _ = x.shape
    h = np.zeros([batch, weight_hh.shape[1]])
    c = np.zeros([batch, units])
    outputs = []
    for t in range(time):
        gates = x[:, t] @ weight_ih.T + h @ weight_hh.T + bias
        i, f, g, o = np.split(gates, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        if weight_hr is not None:
            h = h @ weight_hr.T
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c


def random_torch_state_dict(
    seed, num_layers, bidirectional, proj_size, bias=True
):
    """Returns a random float32 `nn.LSTM` state dict in PyTorch key order."""
    rng = np.random.default_rng(seed)
    h_depth = proj_size or UNITS
    directions = ["", "_reverse"] if bidirectional else [""]
    state_dict = {}
    for layer in range(num_layers):
        depth = DEPTH if layer == 0 else h_depth * len(directions)
        for direction in directions:
            suffix = f"_l{layer}{direction}"
            shapes = {
                "weight_ih": [4 * UNITS, depth],
                "weight_hh": [4 * UNITS, h_depth],
            }
            if bias:
                shapes["bias_ih"] = [4 * UNITS]
                shapes["bias_hh"] = [4 * UNITS]
            if proj_size:
                shapes["weight_hr"] = [proj_size, UNITS]
            for name, shape in shapes.items():
                values = rng.uniform(-0.6, 0.6, size=shape)
                state_dict[name + suffix] = values.astype(np.float32)
    return state_dict


def run_lstmkit_stack(layers, x):
    """Runs `from_torch_lstm_state_dict` cells as `nn.LSTM` does.

    Returns:
        `(output, h_n, c_n)` shaped as `numpy_torch_lstm` returns them.
    """
    layer_input = x
    h_n, c_n = [], []
    for cell_fw, cell_bw in layers:
        if cell_bw is None:
            output, state = lstmkit.dynamic_rnn(cell_fw, layer_input)
            states = [state]
        else:
            outputs, states = lstmkit.bidirectional_dynamic_rnn(
                cell_fw, cell_bw, layer_input
            )
            output = tf.concat(outputs, axis=-1)
        h_n += [state.h.numpy() for state in states]
        c_n += [state.c.numpy() for state in states]
        layer_input = output
    return layer_input.numpy(), np.stack(h_n), np.stack(c_n)


def assert_stack_matches(actual, expected, label):
    for name, got, want in zip(("output", "h_n", "c_n"), actual, expected):
        assert_outputs_close(got, want, f"{label} {name}")


def torch_case_id(case):
    num_layers, bidirectional, proj_size = case
    direction = "bi" if bidirectional else "uni"
    return f"{num_layers}layer_{direction}_proj{proj_size}"


@pytest.mark.parametrize("case", TORCH_CASES, ids=torch_case_id)
def test_torch_state_dict_matches_numpy_lstm(case):
    num_layers, bidirectional, proj_size = case
    state_dict = random_torch_state_dict(20, *case)
    x = probe_batch(seed=20)
    expected = numpy_torch_lstm(x, state_dict, num_layers, bidirectional)

    layers = convert.from_torch_lstm_state_dict(state_dict)
    actual = run_lstmkit_stack(layers, x)

    assert len(layers) == num_layers
    assert all((bw is not None) == bidirectional for _, bw in layers)
    assert layers[0][0].num_proj == (proj_size or None)
    assert_stack_matches(actual, expected, "lstmkit")


@pytest.mark.parametrize("case", TORCH_CASES, ids=torch_case_id)
def test_torch_state_dict_round_trips(case):
    state_dict = random_torch_state_dict(21, *case)

    layers = convert.from_torch_lstm_state_dict(state_dict, forget_bias=0.5)
    again = convert.to_torch_lstm_state_dict(layers)

    assert list(again) == list(state_dict)
    for key, value in state_dict.items():
        if key.startswith("bias_hh"):
            assert not again[key].any(), key
        elif key.startswith("bias_ih"):
            summed = value + state_dict[key.replace("_ih", "_hh")]
            assert_bias_close(again[key], summed, 0.5, key)
        else:
            assert np.array_equal(again[key], value), key
        assert again[key].dtype == np.float32, key


def test_torch_state_dict_without_bias():
    state_dict = random_torch_state_dict(22, 1, True, 0, bias=False)
    x = probe_batch(seed=22)
    expected = numpy_torch_lstm(x, state_dict, 1, True)

    layers = convert.from_torch_lstm_state_dict(state_dict)
    weights = convert.torch_to_v1(state_dict, reverse=True, forget_bias=1.0)

    assert_stack_matches(run_lstmkit_stack(layers, x), expected, "no bias")
    assert weights.bias[2 * UNITS : 3 * UNITS].tolist() == [-1.0] * UNITS


def test_v1_to_torch_matches_v1_bidirectional():
    options = {"num_proj": PROJ, "forget_bias": 0.5}
    v1_fw = v1_cell(seed=23, **options)
    v1_bw = v1_cell(seed=24, **options)
    x = probe_batch(seed=23)
    (ref_fw, ref_bw), (state_fw, state_bw) = (
        tf.compat.v1.nn.bidirectional_dynamic_rnn(
            v1_fw, v1_bw, x, dtype=tf.float32
        )
    )

    state_dict = convert.to_torch_lstm_state_dict([(v1_fw, v1_bw)])
    output, h_n, c_n = numpy_torch_lstm(x, state_dict, 1, True)

    single = convert.v1_to_torch(v1_bw, layer=0, reverse=True)
    assert sorted(single) == sorted(k for k in state_dict if "reverse" in k)
    assert single["weight_hr_l0_reverse"].shape == (PROJ, UNITS)
    expected_output = np.concatenate([ref_fw, ref_bw], axis=-1)
    assert_outputs_close(output, expected_output, "output")
    assert_outputs_close(h_n[0], state_fw.h, "h_n forward")
    assert_outputs_close(h_n[1], state_bw.h, "h_n reverse")
    assert_outputs_close(c_n[1], state_bw.c, "c_n reverse")


def test_torch_to_v1_layout():
    state_dict = random_torch_state_dict(25, 1, False, PROJ)
    v1_order = block_columns(GATE_ORDER_TORCH, "igfo", UNITS)

    weights = convert.torch_to_v1(state_dict, forget_bias=0.0)

    summed = state_dict["bias_ih_l0"] + state_dict["bias_hh_l0"]
    assert np.array_equal(
        weights.kernel[:DEPTH], state_dict["weight_ih_l0"][v1_order].T
    )
    assert np.array_equal(
        weights.kernel[DEPTH:], state_dict["weight_hh_l0"][v1_order].T
    )
    assert np.array_equal(weights.bias, summed[v1_order])
    assert np.array_equal(weights.projection, state_dict["weight_hr_l0"].T)


class FakeTensor:
    """Stands in for a torch tensor: `detach().cpu()` then `__array__`."""

    def __init__(self, array):
        self.array = array
        self.shape = array.shape
        self.calls = []

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def __array__(self, dtype=None, copy=None):
        return self.array


def test_torch_to_v1_detaches_tensors():
    state_dict = random_torch_state_dict(26, 1, False, 0)
    tensors = {key: FakeTensor(value) for key, value in state_dict.items()}

    weights = convert.torch_to_v1(tensors)

    assert tensors["weight_ih_l0"].calls == ["detach", "cpu"]
    assert np.array_equal(
        weights.kernel, convert.torch_to_v1(state_dict).kernel
    )


def without(state_dict, *keys):
    return {key: value for key, value in state_dict.items() if key not in keys}


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda sd: without(sd, "weight_hh_l1"),
            r"Missing key\(s\) weight_hh_l1 .*Found keys: weight_ih_l0",
        ),
        (
            lambda sd: without(sd, "bias_hh_l0_reverse"),
            r"Missing key\(s\) bias_hh_l0_reverse",
        ),
        (
            lambda sd: without(
                sd, "weight_ih_l1_reverse", "weight_hh_l1_reverse"
            ),
            "weight_ih_l1_reverse, weight_hh_l1_reverse",
        ),
        (
            lambda sd: {**sd, "weight_hh_l0": np.zeros([20, 4], np.float32)},
            r"weight_hh_l0 \(20, 4\) \(expected \(20, 2\)\)",
        ),
        (
            lambda sd: {**sd, "weight_ih_l1": np.zeros([20, 3], np.float32)},
            "layer 1 reads 3 features, expected 4",
        ),
        (
            lambda sd: {**sd, "weight_ih_l0": np.zeros([18, 3], np.float32)},
            r"weight_ih_l0 must have shape .* got \(18, 3\)",
        ),
        (
            lambda sd: {f"lstm.{key}": value for key, value in sd.items()},
            r"\['lstm.weight_ih_l0'.* are not nn.LSTM keys",
        ),
        (
            lambda sd: {
                key: value for key, value in sd.items() if "_l0" not in key
            },
            r"Layers \[0\] are missing",
        ),
        (lambda sd: {}, "no nn.LSTM keys were found"),
    ],
    ids=[
        "missing_layer_key",
        "missing_bias",
        "missing_reverse",
        "weight_hh_shape",
        "layer_input_depth",
        "weight_ih_rows",
        "module_prefix",
        "missing_layer",
        "empty",
    ],
)
def test_from_torch_rejects_bad_state_dict(edit, message):
    state_dict = edit(random_torch_state_dict(27, 2, True, PROJ))

    with pytest.raises(ValueError, match=message):
        convert.from_torch_lstm_state_dict(state_dict)


@pytest.mark.parametrize("option", sorted(TORCH_UNSUPPORTED))
def test_to_torch_rejects_option(option):
    v1 = v1_cell(seed=28, **TORCH_UNSUPPORTED[option])
    message = f"PyTorch nn.LSTM has no counterpart for .*{option}="

    with pytest.raises(ValueError, match=message):
        convert.v1_to_torch(v1)
    with pytest.raises(ValueError, match=message):
        convert.to_torch_lstm_state_dict([(v1_cell(seed=29), v1)])


@pytest.mark.parametrize(
    "layers, message",
    [
        (lambda: [], "layers is empty"),
        (
            lambda: [v1_cell(), v1_cell(num_units=UNITS + 1, depth=UNITS)],
            "layer 1 has num_units=6, layer 0 has 5",
        ),
        (
            lambda: [v1_cell(), v1_cell(depth=DEPTH)],
            "layer 1 reads 3 features, expected 5",
        ),
        (
            lambda: [(v1_cell(), v1_cell()), v1_cell(depth=2 * UNITS)],
            "layer 1 is unidirectional but layer 0 is not",
        ),
        (lambda: [(v1_cell(), v1_cell(), None)], "got 3 items"),
    ],
    ids=["empty", "num_units", "input_depth", "mixed_directions", "triple"],
)
def test_to_torch_rejects_bad_stack(layers, message):
    with pytest.raises(ValueError, match=message):
        convert.to_torch_lstm_state_dict(layers())


# ------------------------------------------------ PyTorch (real nn.LSTM)


def import_torch():
    return pytest.importorskip(
        "torch", reason="PyTorch is not installed; the NumPy nn.LSTM tests "
        "cover the state dict layout without it"
    )


@pytest.mark.parametrize("case", TORCH_CASES, ids=torch_case_id)
def test_real_torch_lstm_matches_lstmkit(case):
    torch = import_torch()
    num_layers, bidirectional, proj_size = case
    torch.manual_seed(30)
    module = torch.nn.LSTM(
        DEPTH,
        UNITS,
        num_layers=num_layers,
        batch_first=True,
        bidirectional=bidirectional,
        proj_size=proj_size,
    )
    x = probe_batch(seed=30)
    with torch.no_grad():
        output, (h_n, c_n) = module(torch.from_numpy(x))
    expected = (output.numpy(), h_n.numpy(), c_n.numpy())

    layers = convert.from_torch_lstm_state_dict(module.state_dict())
    actual = run_lstmkit_stack(layers, x)

    assert_stack_matches(actual, expected, "lstmkit vs nn.LSTM")


@pytest.mark.parametrize("case", TORCH_CASES, ids=torch_case_id)
def test_lstmkit_state_dict_loads_into_torch(case):
    torch = import_torch()
    num_layers, bidirectional, proj_size = case
    state_dict = random_torch_state_dict(31, *case)
    layers = convert.from_torch_lstm_state_dict(state_dict, forget_bias=0.5)
    x = probe_batch(seed=31)
    expected = run_lstmkit_stack(layers, x)

    module = torch.nn.LSTM(
        DEPTH,
        UNITS,
        num_layers=num_layers,
        batch_first=True,
        bidirectional=bidirectional,
        proj_size=proj_size,
    )
    exported = convert.to_torch_lstm_state_dict(layers)
    module.load_state_dict(
        {key: torch.from_numpy(value) for key, value in exported.items()}
    )
    with torch.no_grad():
        output, (h_n, c_n) = module(torch.from_numpy(x))

    actual = (output.numpy(), h_n.numpy(), c_n.numpy())
    assert_stack_matches(actual, expected, "nn.LSTM vs lstmkit")


# ---------------------------------------------------------------- TF1


def random_assignments(session, seed):
    """Assigns random nonzero values to every variable of the session."""
    rng = np.random.default_rng(seed)
    values = {}
    for variable in tf.compat.v1.global_variables():
        shape = variable.shape.as_list()
        magnitude = rng.uniform(0.1, 0.8, size=shape)
        sign = rng.choice([-1.0, 1.0], size=shape)
        value = (magnitude * sign).astype(np.float32)
        variable.load(value, session)
        values[variable.op.name] = value
    return values


def new_v1_cell(**options):
    with warnings.catch_warnings():
        # The v1 cell warns on every construction that it is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        return V1LSTMCell(UNITS, **options)


def write_tf1_checkpoint(directory, x, bidirectional, options, seed):
    """Builds a TF1 graph with the v1 RNN, saves it, and runs it.

    Returns:
        `(checkpoint_path, variable_values, results)` with `results` the
        session's `outputs, state` (a pair of each when bidirectional).
    """
    graph = tf.compat.v1.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        inputs = tf.compat.v1.placeholder(tf.float32, [None, TIME, DEPTH])
        lengths = tf.compat.v1.placeholder(tf.int32, [None])
        if bidirectional:
            results = tf.compat.v1.nn.bidirectional_dynamic_rnn(
                new_v1_cell(**options),
                new_v1_cell(**options),
                inputs,
                sequence_length=lengths,
                dtype=tf.float32,
            )
        else:
            results = tf.compat.v1.nn.dynamic_rnn(
                new_v1_cell(**options),
                inputs,
                sequence_length=lengths,
                dtype=tf.float32,
            )
        session.run(tf.compat.v1.global_variables_initializer())
        values = random_assignments(session, seed)
        path = tf.compat.v1.train.Saver().save(
            session, str(directory / "model.ckpt")
        )
        computed = session.run(results, {inputs: x, lengths: LENGTHS})
    return path, values, computed


TF1_CASES = {
    "default": {},
    "all": OPTION_CASES["all"],
}


@pytest.mark.parametrize("case", sorted(TF1_CASES))
def test_tf1_checkpoint_reproduces_session(case, tmp_path):
    options = TF1_CASES[case]
    forget_bias = options.get("forget_bias", 1.0)
    x = probe_batch(seed=40)
    path, values, (outputs, state) = write_tf1_checkpoint(
        tmp_path, x, False, options, seed=40
    )

    weights = convert.read_tf1_checkpoint(path, forget_bias=forget_bias)
    from_directory = convert.read_tf1_checkpoint(tmp_path)
    [cell] = convert.cells_from_tf1_checkpoint(
        path, forget_bias=forget_bias, **cell_options(options)
    )
    actual = run_lstmkit(cell, x, LENGTHS)

    assert np.array_equal(weights.kernel, values["rnn/lstm_cell/kernel"])
    assert np.array_equal(weights.bias, values["rnn/lstm_cell/bias"])
    assert np.array_equal(from_directory.kernel, weights.kernel)
    assert weights.forget_bias == forget_bias
    if options.get("use_peepholes"):
        assert np.array_equal(
            weights.w_o_diag, values["rnn/lstm_cell/w_o_diag"]
        )
    if options.get("num_proj"):
        assert np.array_equal(
            weights.projection, values["rnn/lstm_cell/projection/kernel"]
        )
    for name, got, want in zip(
        ("outputs", "c", "h"), actual, (outputs, state.c, state.h)
    ):
        assert_outputs_close(got, want, f"{case} {name}")


def test_tf1_bidirectional_checkpoint_reproduces_session(tmp_path):
    options = {"use_peepholes": True, "forget_bias": 0.5}
    x = probe_batch(seed=41)
    path, values, results = write_tf1_checkpoint(
        tmp_path, x, True, options, seed=41
    )
    (ref_fw, ref_bw), (state_fw, state_bw) = results

    weights_fw, weights_bw = convert.read_tf1_bidirectional_checkpoint(
        path, forget_bias=0.5
    )
    cell_fw, cell_bw = convert.cells_from_tf1_checkpoint(
        path,
        ["bidirectional_rnn/fw/lstm_cell", "bidirectional_rnn/bw/lstm_cell"],
        forget_bias=0.5,
    )
    (out_fw, out_bw), (ours_fw, ours_bw) = lstmkit.bidirectional_dynamic_rnn(
        cell_fw, cell_bw, x, sequence_length=LENGTHS
    )

    fw_kernel = values["bidirectional_rnn/fw/lstm_cell/kernel"]
    bw_bias = values["bidirectional_rnn/bw/lstm_cell/bias"]
    assert np.array_equal(weights_fw.kernel, fw_kernel)
    assert np.array_equal(weights_bw.bias, bw_bias)
    assert weights_bw.use_peepholes
    assert_outputs_close(out_fw, ref_fw, "output_fw")
    assert_outputs_close(out_bw, ref_bw, "output_bw")
    assert_outputs_close(ours_fw.h, state_fw.h, "h_fw")
    assert_outputs_close(ours_bw.c, state_bw.c, "c_bw")


def test_tf1_checkpoint_missing_prefix_lists_variables(tmp_path):
    path, _, _ = write_tf1_checkpoint(
        tmp_path, probe_batch(), False, {}, seed=42
    )

    with pytest.raises(ValueError) as raised:
        convert.read_tf1_checkpoint(path, prefix="encoder/lstm_cell")

    message = str(raised.value)
    assert "encoder/lstm_cell/kernel" in message
    assert "Prefixes with a kernel and a bias: rnn/lstm_cell." in message
    assert "rnn/lstm_cell/bias [20]" in message
    with pytest.raises(ValueError, match="bidirectional_rnn/fw/lstm_cell"):
        convert.read_tf1_bidirectional_checkpoint(path)
