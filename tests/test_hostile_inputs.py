"""Invalid arguments for the public functions, layers, cells and
converters, with the error each must raise, and non-finite values.

Each table row calls one entry point with one bad argument and names the
exception type and fragments of its message: the bad value and the fix.
`tests/test_validation.py` covers the same arguments of `dynamic_rnn` and
`bidirectional_dynamic_rnn` inside `tf.function` and under XLA. Zero batch
and zero time steps are valid and tested for their results.

NaN and Inf in valid steps are allowed and give what the float64 NumPy
reference of the v1 LSTM computes: NaN reaches the later outputs of its own
sequence only. In padding they reach neither the outputs nor any gradient of the
lstmkit layers.
"""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import (
    cell_weights_by_name,
    make_cell_pair,
    numpy_bidirectional_dynamic_rnn,
    numpy_dynamic_rnn,
    torch_state_dict,
)

import lstmkit
from lstmkit import convert, layers

BATCH, TIME, DEPTH, UNITS = 3, 5, 4, 6


def inputs(shape=(BATCH, TIME, DEPTH), dtype=np.float32):
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


def cell(units=UNITS, **options):
    return lstmkit.LSTMCell(units, **options)


def built(layer, depth=DEPTH):
    layer.build((None, None, depth))
    return layer


def zeros_state(batch=BATCH, units=UNITS, dtype=tf.float32):
    return (tf.zeros([batch, units], dtype), tf.zeros([batch, units], dtype))


def string_tensor():
    return tf.constant([[["a"] * DEPTH] * TIME] * BATCH)


def ragged_inputs():
    rows = [inputs((length, DEPTH)) for length in (5, 2, 1)]
    return tf.ragged.constant(rows, ragged_rank=1, dtype=tf.float32)


@dataclasses.dataclass
class BadCall:
    """One call with a bad argument and the error it must raise."""

    call: Callable[[], object]
    error: type
    fragments: tuple[str, ...]


def check_bad_call(case: BadCall) -> None:
    with pytest.raises(case.error) as caught:
        case.call()
    message = str(caught.value)
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


dynamic = lstmkit.dynamic_rnn
bidirectional = lstmkit.bidirectional_dynamic_rnn
stacked = lstmkit.stacked_dynamic_rnn
stacked_bidirectional = lstmkit.stacked_bidirectional_dynamic_rnn

FUNCTION_CASES = {
    "dynamic_none_inputs": BadCall(
        lambda: dynamic(cell(), None),
        TypeError,
        ("could not be converted", "[batch, time, depth]"),
    ),
    "dynamic_string_inputs": BadCall(
        lambda: dynamic(cell(), string_tensor()),
        TypeError,
        ("got dtype string", "tf.cast(inputs, tf.float32)"),
    ),
    "dynamic_bool_inputs": BadCall(
        lambda: dynamic(cell(), np.ones([BATCH, TIME, DEPTH], bool)),
        TypeError,
        ("got dtype bool", "tf.cast"),
    ),
    "dynamic_nested_lists_ragged": BadCall(
        lambda: dynamic(cell(), [[[1.0, 2.0]], [[1.0, 2.0], [3.0, 4.0]]]),
        TypeError,
        ("non-rectangular", "pass a float tensor"),
    ),
    "dynamic_zero_depth": BadCall(
        lambda: dynamic(cell(), np.zeros([BATCH, TIME, 0], np.float32)),
        ValueError,
        ("depth 0", "(3, 5, 0)", "at least one feature"),
    ),
    "dynamic_lengths_ragged": BadCall(
        lambda: dynamic(
            cell(),
            inputs(),
            sequence_length=tf.ragged.constant([[1], [2, 3], []]),
        ),
        TypeError,
        ("sequence_length is a RaggedTensor", "row_lengths()"),
    ),
    "dynamic_lengths_strings": BadCall(
        lambda: dynamic(cell(), inputs(), sequence_length=["5", "2", "1"]),
        TypeError,
        ("must hold integers", "[5, 2, 1]", "int32 or int64"),
    ),
    "dynamic_lengths_bool": BadCall(
        lambda: dynamic(cell(), inputs(), sequence_length=[True] * BATCH),
        TypeError,
        ("got dtype bool", "int32 or int64"),
    ),
    "dynamic_lengths_scalar": BadCall(
        lambda: dynamic(cell(), inputs(), sequence_length=5),
        ValueError,
        ("must be a vector [batch]", "shape ()"),
    ),
    "dynamic_state_strings": BadCall(
        lambda: dynamic(cell(), inputs(), initial_state=("a", "b")),
        ValueError,
        ("initial_state", "'a'"),
    ),
    "dynamic_state_dict": BadCall(
        lambda: dynamic(cell(), inputs(), initial_state={"c": 1}),
        ValueError,
        ("must be a pair (c, h)", "got dict"),
    ),
    "dynamic_state_integer": BadCall(
        lambda: dynamic(
            cell(), inputs(), initial_state=zeros_state(dtype=tf.int32)
        ),
        TypeError,
        ("initial_state.c is int32", "cast the state to float32"),
    ),
    "dynamic_keras_cell": BadCall(
        lambda: dynamic(keras.layers.LSTMCell(UNITS), inputs()),
        TypeError,
        ("got keras.src.layers.rnn.lstm.LSTMCell", "set_weights"),
    ),
    "dynamic_unknown_kernel": BadCall(
        lambda: dynamic(cell(), inputs(), implementation="cudnn"),
        ValueError,
        ("'cudnn'", "'fused_lstm'"),
    ),
    "bidirectional_string_inputs": BadCall(
        lambda: bidirectional(cell(), cell(), string_tensor()),
        TypeError,
        ("got dtype string",),
    ),
    "bidirectional_state_fw_batch": BadCall(
        lambda: bidirectional(
            cell(), cell(), inputs(), initial_state_fw=zeros_state(batch=2)
        ),
        ValueError,
        ("initial_state_fw.c has shape (2, 6)", "expected [3, 6]"),
    ),
    "bidirectional_lengths_batch": BadCall(
        lambda: bidirectional(
            cell(), cell(), inputs(), sequence_length=[5, 2]
        ),
        ValueError,
        ("2 entries but the batch has 3 rows", "one length per row"),
    ),
    "bidirectional_zero_depth": BadCall(
        lambda: bidirectional(
            cell(), cell(), np.zeros([BATCH, TIME, 0], np.float32)
        ),
        ValueError,
        ("depth 0",),
    ),
    "bidirectional_keras_cell_bw": BadCall(
        lambda: bidirectional(
            cell(), keras.layers.LSTMCell(UNITS), inputs()
        ),
        TypeError,
        ("lstmkit cell", "LSTMCell"),
    ),
    "stacked_single_cell": BadCall(
        lambda: stacked(cell(), inputs()),
        TypeError,
        ("cells must be a list", "got LSTMCell", "[cell]"),
    ),
    "stacked_empty": BadCall(
        lambda: stacked([], inputs()),
        ValueError,
        ("cells is empty", "one cell per layer"),
    ),
    "stacked_dropout_string": BadCall(
        lambda: stacked([cell(), cell()], inputs(), dropout="0.5"),
        ValueError,
        ("dropout must be a number in [0, 1)", "'0.5'"),
    ),
    # Rejected without training too: the rate is a setting, not data.
    "stacked_dropout_one": BadCall(
        lambda: stacked([cell()], inputs(), dropout=1.0),
        ValueError,
        ("dropout must be a number in [0, 1)", "1.0"),
    ),
    "stacked_states_count": BadCall(
        lambda: stacked([cell(), cell()], inputs(), initial_states=[None]),
        ValueError,
        ("1 entries for 2 layers", "None for zeros"),
    ),
    "stacked_residual_depths": BadCall(
        lambda: stacked([cell(), cell(3)], inputs(), residual=True),
        ValueError,
        ("reads 6 and outputs 3", "residual=False"),
    ),
    "stacked_lengths_batch": BadCall(
        lambda: stacked([cell()], inputs(), sequence_length=[1, 2]),
        ValueError,
        ("2 entries but the batch has 3 rows",),
    ),
    "stacked_bidirectional_counts": BadCall(
        lambda: stacked_bidirectional([cell()], [cell(), cell()], inputs()),
        ValueError,
        ("same length", "got 1 and 2"),
    ),
    "stacked_bidirectional_single_cell": BadCall(
        lambda: stacked_bidirectional(cell(), [cell()], inputs()),
        TypeError,
        ("cells_fw must be a list", "[cell]"),
    ),
    "stacked_bidirectional_dropout": BadCall(
        lambda: stacked_bidirectional([cell()], [cell()], inputs(),
                                      dropout=-0.1),
        ValueError,
        ("dropout must be a number in [0, 1)", "-0.1"),
    ),
    "stacked_bidirectional_lengths": BadCall(
        lambda: stacked_bidirectional(
            [cell()], [cell()], inputs(), sequence_length=[9, 1, 1]
        ),
        ValueError,
        ("sequence_length[0] = 9 is outside [0, 5]",),
    ),
}


@pytest.mark.parametrize("name", list(FUNCTION_CASES))
def test_function_rejects_argument(name):
    check_bad_call(FUNCTION_CASES[name])


def lstm_layer(**kwargs):
    return layers.LSTM(UNITS, return_sequences=True, **kwargs)


def called_twice(layer, first, second):
    layer(first)
    return layer(second)


LAYER_CASES = {
    "lstm_units_zero": BadCall(
        lambda: layers.LSTM(0), ValueError, ("positive integer", "got 0")
    ),
    "lstm_units_string": BadCall(
        lambda: layers.LSTM("8"), ValueError, ("positive integer", "'8'")
    ),
    "lstm_dropout_one": BadCall(
        lambda: layers.LSTM(4, dropout=1.0), ValueError, ("[0, 1)", "1.0")
    ),
    "lstm_dropout_string": BadCall(
        lambda: layers.LSTM(4, dropout="0.5"),
        ValueError,
        ("dropout must be in [0, 1)", "'0.5'"),
    ),
    "lstm_semantics": BadCall(
        lambda: layers.LSTM(4, semantics="torch"),
        ValueError,
        ("semantics must be one of", "'torch'"),
    ),
    "lstm_cell_clip_negative": BadCall(
        lambda: layers.LSTM(4, semantics="tf1", cell_clip=-1.0),
        ValueError,
        ("cell_clip must be a positive finite number", "-1.0"),
    ),
    "lstm_rank_2": BadCall(
        lambda: lstm_layer()(inputs()[0]),
        ValueError,
        ("must have rank 3", "(5, 4)"),
    ),
    "lstm_string_inputs": BadCall(
        lambda: lstm_layer()(string_tensor()), TypeError, ("dtype string",)
    ),
    "lstm_integer_inputs": BadCall(
        lambda: lstm_layer()(np.ones([BATCH, TIME, DEPTH], np.int32)),
        TypeError,
        ("got dtype int32", "tf.cast"),
    ),
    "lstm_ragged_inputs": BadCall(
        lambda: lstm_layer()(ragged_inputs()),
        TypeError,
        ("tf.RaggedTensor", "inputs.to_tensor()"),
    ),
    "lstm_zero_depth": BadCall(
        lambda: lstm_layer()(np.zeros([BATCH, TIME, 0], np.float32)),
        ValueError,
        ("depth 0",),
    ),
    "lstm_depth_after_build": BadCall(
        lambda: called_twice(
            lstm_layer(), inputs(), inputs((BATCH, TIME, DEPTH + 3))
        ),
        ValueError,
        ("inputs have depth 7", "built for depth 4"),
    ),
    "lstm_mask_batch": BadCall(
        lambda: lstm_layer()(inputs(), mask=np.ones([2, TIME], bool)),
        ValueError,
        ("mask has shape (2, 5)", "[batch, time] = [3, 5]"),
    ),
    "lstm_mask_time": BadCall(
        lambda: lstm_layer()(inputs(), mask=np.ones([BATCH, 4], bool)),
        ValueError,
        ("mask has shape (3, 4)", "[batch, time] = [3, 5]"),
    ),
    "lstm_mask_rank_3": BadCall(
        lambda: lstm_layer()(inputs(), mask=np.ones([BATCH, TIME, 1], bool)),
        ValueError,
        ("mask must be [batch, time]", "(3, 5, 1)"),
    ),
    "lstm_lengths_batch": BadCall(
        lambda: lstm_layer()(inputs(), sequence_length=[1, 2]),
        ValueError,
        ("2 entries but the batch has 3 rows",),
    ),
    "lstm_lengths_above_time": BadCall(
        lambda: lstm_layer()(inputs(), sequence_length=[1, 2, 9]),
        ValueError,
        ("sequence_length[2] = 9 is outside [0, 5]",),
    ),
    "lstm_lengths_float": BadCall(
        lambda: lstm_layer()(inputs(), sequence_length=[1.0, 2.0, 3.0]),
        TypeError,
        ("must hold integers", "int32 or int64"),
    ),
    "lstm_mask_and_lengths_disagree": BadCall(
        lambda: lstm_layer()(
            inputs(),
            mask=np.ones([BATCH, TIME], bool),
            sequence_length=[5, 2, 5],
        ),
        ValueError,
        ("disagree in 1 row(s), first in row 1", "Pass only one"),
    ),
    "lstm_state_count": BadCall(
        lambda: lstm_layer()(inputs(), initial_state=[tf.zeros([3, UNITS])]),
        ValueError,
        ("initial_state must be [h, c]", "got 1 tensors"),
    ),
    "lstm_state_batch": BadCall(
        lambda: lstm_layer()(inputs(), initial_state=list(zeros_state(2))),
        ValueError,
        ("has shape (2, 6)", "expected [3, 6]"),
    ),
    "rnn_keras_cell": BadCall(
        lambda: layers.RNN(keras.layers.LSTMCell(4)),
        TypeError,
        ("lstmkit cell", "set_weights"),
    ),
    "rnn_gru_state_units": BadCall(
        lambda: layers.RNN(lstmkit.GRUCell(4), return_sequences=True)(
            inputs(), initial_state=[tf.zeros([BATCH, 5])]
        ),
        ValueError,
        ("initial_state.[0] has shape (3, 5)", "expected [3, 4]"),
    ),
    "bidirectional_keras_lstm": BadCall(
        lambda: layers.Bidirectional(keras.layers.LSTM(4)),
        TypeError,
        ("lstmkit.layers.LSTM or lstmkit.layers.RNN", "got LSTM"),
    ),
    "bidirectional_merge_mode": BadCall(
        lambda: layers.Bidirectional(lstm_layer(), merge_mode="xor"),
        ValueError,
        ("merge_mode must be one of", "'xor'"),
    ),
    "bidirectional_string_inputs": BadCall(
        lambda: layers.Bidirectional(lstm_layer())(string_tensor()),
        TypeError,
        ("dtype string",),
    ),
    "bidirectional_mask_batch": BadCall(
        lambda: layers.Bidirectional(lstm_layer())(
            inputs(), mask=np.ones([2, TIME], bool)
        ),
        ValueError,
        ("mask has shape (2, 5)",),
    ),
    "bidirectional_state_count": BadCall(
        lambda: layers.Bidirectional(lstm_layer())(
            inputs(), initial_state=[tf.zeros([BATCH, UNITS])]
        ),
        ValueError,
        ("[h_fw, c_fw, h_bw, c_bw]", "got 1 tensors"),
    ),
}


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_layer_rejects_argument(name):
    check_bad_call(LAYER_CASES[name])


def built_gru_cell():
    gru = lstmkit.GRUCell(4)
    gru.build((DEPTH,))
    return gru


def step_of_built_cell():
    lstm = cell()
    lstm.build((DEPTH,))
    return lstm(inputs(), zeros_state())


CELL_CASES = {
    "lstm_units_zero": BadCall(
        lambda: lstmkit.LSTMCell(0), ValueError, ("positive integer", "0")
    ),
    "lstm_units_float": BadCall(
        lambda: lstmkit.LSTMCell(8.0), ValueError, ("positive integer", "8.0")
    ),
    "lstm_num_proj_zero": BadCall(
        lambda: lstmkit.LSTMCell(4, num_proj=0),
        ValueError,
        ("num_proj must be a positive integer", "0"),
    ),
    "lstm_cell_clip_string": BadCall(
        lambda: lstmkit.LSTMCell(4, cell_clip="1"),
        TypeError,
        ("cell_clip must be a number or None", "'1'"),
    ),
    "lstm_cell_clip_negative": BadCall(
        lambda: lstmkit.LSTMCell(4, cell_clip=-1.0),
        ValueError,
        ("cell_clip must be a positive finite number", "-1.0"),
    ),
    "lstm_cell_clip_nan": BadCall(
        lambda: lstmkit.LSTMCell(4, cell_clip=float("nan")),
        ValueError,
        ("cell_clip must be a positive finite number", "nan"),
    ),
    "lstm_proj_clip_zero": BadCall(
        lambda: lstmkit.LSTMCell(4, num_proj=2, proj_clip=0.0),
        ValueError,
        ("proj_clip must be a positive finite number", "0.0"),
    ),
    "lstm_proj_clip_without_proj": BadCall(
        lambda: lstmkit.LSTMCell(4, proj_clip=1.0),
        ValueError,
        ("proj_clip=1.0 needs num_proj",),
    ),
    "lstm_forget_bias_inf": BadCall(
        lambda: lstmkit.LSTMCell(4, forget_bias=float("inf")),
        ValueError,
        ("forget_bias must be finite", "inf"),
    ),
    "lstm_step_rank_3": BadCall(
        step_of_built_cell,
        ValueError,
        ("takes inputs [batch, 4]", "(3, 5, 4)", "lstmkit.dynamic_rnn"),
    ),
    "lstm_build_unknown_depth": BadCall(
        lambda: lstmkit.LSTMCell(4).build((None,)),
        ValueError,
        ("last dimension of the inputs must be known", "(None,)"),
    ),
    "keras_lstm_cell_clip_zero": BadCall(
        lambda: lstmkit.KerasLSTMCell(4, cell_clip=0.0),
        ValueError,
        ("cell_clip must be a positive finite number", "0.0"),
    ),
    "gru_units_zero": BadCall(
        lambda: lstmkit.GRUCell(0), ValueError, ("units", "got 0")
    ),
    "zoneout_rate": BadCall(
        lambda: lstmkit.ZoneoutLSTMCell(4, zoneout_c=1.5),
        ValueError,
        ("zoneout_c must be a number in [0, 1)", "1.5"),
    ),
    "variational_dropout_not_cell": BadCall(
        lambda: lstmkit.VariationalDropoutCell("lstm"),
        TypeError,
        ("lstmkit cell", "got builtins.str"),
    ),
    "trainable_state_not_cell": BadCall(
        lambda: lstmkit.TrainableInitialState("lstm"),
        TypeError,
        ("lstmkit cell", "got builtins.str"),
    ),
}


@pytest.mark.parametrize("name", list(CELL_CASES))
def test_cell_rejects_argument(name):
    check_bad_call(CELL_CASES[name])


def state_dict(dtype=np.float32):
    return torch_state_dict(units=2, seed=0, dtype=dtype)


def without(mapping, key):
    return {name: value for name, value in mapping.items() if name != key}


KERNEL, BIAS = np.zeros([5, 8], np.float32), np.zeros([8], np.float32)

CONVERTER_CASES = {
    "v1_weights_none": BadCall(
        lambda: convert.V1Weights(None, None),
        TypeError,
        ("kernel is None", "pass the kernel array"),
    ),
    "v1_weights_integer": BadCall(
        lambda: convert.V1Weights(KERNEL.astype(np.int32), BIAS),
        TypeError,
        ("kernel must hold floating-point numbers", "int32", "(5, 8)",
         "float32"),
    ),
    "v1_weights_strings": BadCall(
        lambda: convert.V1Weights(KERNEL, BIAS.astype(str)),
        TypeError,
        ("bias must hold floating-point numbers", "<U"),
    ),
    "v1_weights_forget_bias_string": BadCall(
        lambda: convert.V1Weights(KERNEL, BIAS, forget_bias="a"),
        TypeError,
        ("forget_bias must be a real number", "'a'"),
    ),
    "v1_weights_forget_bias_nan": BadCall(
        lambda: convert.V1Weights(KERNEL, BIAS, forget_bias=float("nan")),
        ValueError,
        ("forget_bias must be finite", "nan"),
    ),
    "v1_weights_no_input_rows": BadCall(
        lambda: convert.V1Weights(KERNEL[:2], BIAS),
        ValueError,
        ("kernel has 2 rows", "[input_depth + h_depth, 4 * num_units]"),
    ),
    "from_cell_unbuilt": BadCall(
        lambda: convert.v1_weights_from_cell(cell()),
        ValueError,
        ("not built", "cell.build((input_depth,))"),
    ),
    "from_cell_gru": BadCall(
        lambda: convert.v1_weights_from_cell(built_gru_cell()),
        TypeError,
        ("got GRUCell", "V1Weights"),
    ),
    "from_keras_gru": BadCall(
        lambda: convert.from_keras_lstm(built(keras.layers.GRU(4))),
        TypeError,
        ("Expected a keras.layers.LSTM; got GRU",),
    ),
    "from_keras_unbuilt": BadCall(
        lambda: convert.from_keras_lstm(keras.layers.LSTM(4)),
        ValueError,
        ("is not built", "layer.build((None, None, depth))"),
    ),
    "from_keras_bidirectional_lstm": BadCall(
        lambda: convert.from_keras_bidirectional(built(keras.layers.LSTM(4))),
        TypeError,
        ("Expected a keras.layers.Bidirectional; got LSTM",
         "from_keras_lstm"),
    ),
    "to_lstmkit_layer_gru": BadCall(
        lambda: convert.to_lstmkit_layer(built(keras.layers.GRU(4))),
        TypeError,
        ("got GRU", "V1Weights"),
    ),
    "to_lstmkit_layer_semantics": BadCall(
        lambda: convert.to_lstmkit_layer(
            convert.V1Weights(KERNEL, BIAS), semantics="torch"
        ),
        ValueError,
        ("semantics must be one of", "'torch'"),
    ),
    "torch_state_dict_list": BadCall(
        lambda: convert.from_torch_lstm_state_dict([1, 2]),
        TypeError,
        ("state_dict must be a mapping", "got list", "state_dict()"),
    ),
    "torch_state_dict_none": BadCall(
        lambda: convert.torch_to_v1(None),
        TypeError,
        ("state_dict must be a mapping", "got NoneType"),
    ),
    "torch_state_dict_missing_key": BadCall(
        lambda: convert.from_torch_lstm_state_dict(
            without(state_dict(), "weight_hh_l0")
        ),
        ValueError,
        ("Missing key(s) weight_hh_l0", "Found keys: weight_ih_l0 (8, 3)",
         "num_layers and bidirectional"),
    ),
    "torch_state_dict_missing_bias": BadCall(
        lambda: convert.layers_from_torch_state_dict(
            without(state_dict(), "bias_hh_l0")
        ),
        ValueError,
        ("Missing key(s) bias_hh_l0",),
    ),
    "torch_state_dict_strings": BadCall(
        lambda: convert.from_torch_lstm_state_dict(state_dict(dtype=str)),
        ValueError,
        ("weight_ih_l0 has dtype <U", "cast its values to float32"),
    ),
    "torch_state_dict_integers": BadCall(
        lambda: convert.from_torch_lstm_state_dict(
            state_dict(dtype=np.int64)
        ),
        ValueError,
        ("weight_ih_l0 has dtype int64",),
    ),
    "torch_state_dict_vector": BadCall(
        lambda: convert.from_torch_lstm_state_dict(
            {**state_dict(), "weight_ih_l0": np.zeros([8], np.float32)}
        ),
        ValueError,
        ("weight_ih_l0 must have shape [4 * hidden_size, input_size]",
         "(8,)"),
    ),
    "torch_to_v1_layer_negative": BadCall(
        lambda: convert.torch_to_v1(state_dict(), layer=-1),
        ValueError,
        ("layer must be an int >= 0", "-1"),
    ),
    "torch_to_v1_forget_bias_string": BadCall(
        lambda: convert.torch_to_v1(state_dict(), forget_bias="1"),
        TypeError,
        ("forget_bias must be a real number", "'1'"),
    ),
    "to_torch_empty": BadCall(
        lambda: convert.to_torch_lstm_state_dict([]),
        ValueError,
        ("layers is empty", "at least one cell"),
    ),
    "to_torch_peepholes": BadCall(
        lambda: convert.to_torch_lstm_state_dict(
            [convert.V1Weights(KERNEL, BIAS, w_f_diag=BIAS[:2],
                               w_i_diag=BIAS[:2], w_o_diag=BIAS[:2])]
        ),
        ValueError,
        ("use_peepholes",),
    ),
    "reorder_gates_order": BadCall(
        lambda: convert.reorder_gates(KERNEL, "ijfo", "abcd"),
        ValueError,
        ("'abcd'", "'ifco'"),
    ),
    "gate_slice_gate": BadCall(
        lambda: convert.gate_slice("ijfo", "z", 2),
        ValueError,
        ("Gate 'z' is not in gate order 'ijfo'",),
    ),
    "tf1_checkpoint_missing": BadCall(
        lambda: convert.cells_from_tf1_checkpoint("/nonexistent/model.ckpt"),
        tf.errors.NotFoundError,
        ("No TF1 checkpoint at /nonexistent/model.ckpt",
         "Pass the checkpoint prefix"),
    ),
}


@pytest.mark.parametrize("name", list(CONVERTER_CASES))
def test_converter_rejects_argument(name):
    check_bad_call(CONVERTER_CASES[name])


# ------------------------------------------------------ zero-size inputs

DRIVERS = {
    "dynamic": lambda x, **kw: dynamic(cell(), x, **kw),
    "bidirectional": lambda x, **kw: bidirectional(cell(), cell(), x, **kw),
    "stacked": lambda x, **kw: stacked([cell(), cell()], x, **kw),
    "lstm_layer": lambda x, **kw: (lstm_layer()(x, **kw), None),
}


@pytest.mark.parametrize("name", list(DRIVERS))
def test_zero_batch_gives_empty_outputs(name):
    outputs, _ = DRIVERS[name](np.zeros([0, TIME, DEPTH], np.float32))
    first = tf.nest.flatten(outputs)[0]
    assert first.shape[:2] == (0, TIME), first.shape


@pytest.mark.parametrize("name", ["dynamic", "bidirectional"])
def test_zero_time_keeps_initial_state(name):
    state = (tf.fill([BATCH, UNITS], 0.5), tf.fill([BATCH, UNITS], -0.5))
    x = np.zeros([BATCH, 0, DEPTH], np.float32)
    if name == "dynamic":
        outputs, final = dynamic(cell(), x, initial_state=state)
        finals = [final]
    else:
        outputs, finals = bidirectional(
            cell(), cell(), x, initial_state_fw=state, initial_state_bw=state
        )
    for output in tf.nest.flatten(outputs):
        assert output.shape == (BATCH, 0, UNITS), output.shape
    for final in finals:
        np.testing.assert_array_equal(final.c, state[0])
        np.testing.assert_array_equal(final.h, state[1])


# ------------------------------------------------- NaN and Inf in steps

LENGTHS = np.array([5, 4, 2, 0])
NAN_ROW, NAN_STEP = 1, 1


# Values written into features 1 and 2 of one valid step. One Inf only
# saturates the gates, so the outputs stay finite; Inf and -Inf together
# give Inf - Inf = NaN in the gate sums.
NONFINITE_FILLS = {
    "nan": (0.5, np.nan),
    "inf": (0.5, np.inf),
    "minus_inf": (0.5, -np.inf),
    "inf_and_minus_inf": (np.inf, -np.inf),
}


def nonfinite_case(fill=NONFINITE_FILLS["nan"], seed=3):
    """Float64 inputs with `fill` at one valid step of row `NAN_ROW`."""
    x = np.random.default_rng(seed).normal(size=(4, TIME, DEPTH))
    x[NAN_ROW, NAN_STEP, 1:3] = fill
    return x


def reference_pair(seed):
    """A v1 cell's float64 weights and an lstmkit cell that shares them."""
    v1, ours = make_cell_pair(DEPTH, UNITS, seed=seed, dtype="float64")
    return cell_weights_by_name(v1, {}), ours


@pytest.mark.parametrize("fill", list(NONFINITE_FILLS))
@pytest.mark.parametrize("kernel", ["fused_lstm", "derived", "autodiff"])
def test_nonfinite_valid_step_follows_reference(kernel, fill):
    x = nonfinite_case(NONFINITE_FILLS[fill])
    weights, ours = reference_pair(seed=5)

    outputs, state = dynamic(
        ours, x, sequence_length=LENGTHS, implementation=kernel
    )
    with np.errstate(all="ignore"):
        expected, (c, h) = numpy_dynamic_rnn(x, weights, {}, LENGTHS)

    for name, actual, reference in [
        ("outputs", outputs, expected), ("c", state.c, c), ("h", state.h, h)
    ]:
        np.testing.assert_allclose(
            actual, reference, rtol=0, atol=1e-12, equal_nan=True,
            err_msg=f"{name} with {fill} at a valid step",
        )


@pytest.mark.parametrize("kernel", ["fused_lstm", "autodiff"])
def test_nan_valid_step_stays_in_its_row(kernel):
    _, ours = reference_pair(seed=6)
    outputs, state = dynamic(
        ours, nonfinite_case(), sequence_length=LENGTHS,
        implementation=kernel,
    )
    outputs = outputs.numpy()
    length = LENGTHS[NAN_ROW]

    row = outputs[NAN_ROW]
    assert np.isfinite(row[:NAN_STEP]).all(), "NaN before its step"
    assert np.isnan(row[NAN_STEP:length]).all(), "NaN did not propagate"
    assert (row[length:] == 0).all(), "padding of the NaN row is not zero"
    others = np.delete(outputs, NAN_ROW, axis=0)
    assert np.isfinite(others).all(), "NaN reached another row"
    assert np.isnan(state.c[NAN_ROW]).all(), "final c of the NaN row"
    assert np.isfinite(np.delete(state.h, NAN_ROW, axis=0)).all()


@pytest.mark.parametrize("kernel", ["fused_lstm", "derived", "autodiff"])
def test_nan_valid_step_other_rows_gradients(kernel):
    """A loss over the other rows has finite gradients for their inputs.

    The weight gradients are NaN even so: the NaN row's activations enter
    them multiplied by a zero upstream gradient, and 0 * NaN is NaN, as in
    any autodiff of the v1 built-in.
    """
    _, ours = reference_pair(seed=6)
    x = tf.constant(nonfinite_case())
    others = np.arange(len(LENGTHS)) != NAN_ROW
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs, _ = dynamic(
            ours, x, sequence_length=LENGTHS, implementation=kernel
        )
        loss = tf.reduce_sum(tf.boolean_mask(outputs, others) ** 2)
    gradient = tape.gradient(loss, x).numpy()

    assert np.isfinite(gradient[others]).all(), "gradient of other rows"
    assert np.any(gradient[others] != 0), "gradient of other rows is zero"


def test_nan_valid_step_bidirectional_follows_reference():
    x = nonfinite_case()
    weights_fw, cell_fw = reference_pair(seed=7)
    weights_bw, cell_bw = reference_pair(seed=8)

    (out_fw, out_bw), _ = bidirectional(
        cell_fw, cell_bw, x, sequence_length=LENGTHS
    )
    with np.errstate(all="ignore"):
        (expected_fw, expected_bw), _ = numpy_bidirectional_dynamic_rnn(
            x, weights_fw, weights_bw, {}, LENGTHS
        )

    np.testing.assert_allclose(out_fw, expected_fw, atol=1e-12, rtol=0,
                               equal_nan=True)
    np.testing.assert_allclose(out_bw, expected_bw, atol=1e-12, rtol=0,
                               equal_nan=True)
    # The backward direction reads the row reversed, so NaN reaches the
    # outputs at and before its step.
    backward_row = out_bw.numpy()[NAN_ROW]
    assert np.isnan(backward_row[:NAN_STEP + 1]).all()
    assert np.isfinite(backward_row[NAN_STEP + 1:]).all()


# ---------------------------------------- NaN and Inf in layer padding

# Valid steps of each row: right padding, left padding, a hole, all valid.
VALID_STEPS = np.array(
    [
        [1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1],
        [1, 0, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ],
    bool,
)

PADDING_LAYERS = {
    "lstm_keras": lambda: lstm_layer(),
    "lstm_tf1": lambda: lstm_layer(semantics="tf1"),
    "bidirectional": lambda: layers.Bidirectional(lstm_layer()),
    "rnn_gru": lambda: layers.RNN(lstmkit.GRUCell(UNITS),
                                  return_sequences=True),
}


def run_with_gradients(layer, x, mask):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x, mask=mask)
        loss = tf.reduce_sum(outputs * outputs)
    weights = layer.trainable_weights
    gradients = tape.gradient(loss, [x, *weights])
    return [outputs, *gradients]


# Inf takes the same path as NaN (the layers zero padded steps with
# tf.where), so one layer checks it.
@pytest.mark.parametrize(
    "name, fill",
    [(name, np.nan) for name in PADDING_LAYERS] + [("lstm_tf1", np.inf)],
)
def test_layer_nonfinite_padding_is_ignored(name, fill):
    layer = PADDING_LAYERS[name]()
    x = np.random.default_rng(4).normal(size=(4, TIME, DEPTH))
    x = x.astype(np.float32)
    x[~VALID_STEPS] = 0.0
    junk = x.copy()
    junk[~VALID_STEPS] = fill

    clean = run_with_gradients(layer, x, VALID_STEPS)
    dirty = run_with_gradients(layer, junk, VALID_STEPS)

    labels = ["outputs", "input gradient"] + [
        f"gradient of {w.path}" for w in layer.trainable_weights
    ]
    for label, a, b in zip(labels, dirty, clean):
        assert np.isfinite(a).all(), f"{label} is not finite with {fill}"
        np.testing.assert_array_equal(
            a, b, err_msg=f"{label} with {fill} padding"
        )
