"""Errors of `dynamic_rnn` and `bidirectional_dynamic_rnn` for invalid
arguments, eagerly, inside `tf.function` and under XLA.

Each case asserts the exception type and that the message names the bad
value. Inside `tf.function` the lengths are a function argument whose
signature leaves every dimension unknown, so their values are checked when
the graph runs and raise `tf.errors.InvalidArgumentError`.
"""

import dataclasses
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import lstmkit

BATCH, TIME, DEPTH, UNITS = 5, 7, 3, 4
VALID_LENGTHS = np.array([7, 3, 0, 1, 5], np.int32)
RNN_KINDS = ["dynamic", "bidirectional"]


@dataclasses.dataclass
class BadCase:
    """One invalid call and the error it must raise.

    `state` replaces the initial state: for `dynamic_rnn` it is passed as
    `initial_state`, for `bidirectional_dynamic_rnn` as `initial_state_bw`
    (with a valid `initial_state_fw`). `{state}` in a pattern stands for
    that argument name. `graph_error` and `graph_match` default to the
    eager ones.
    """

    error: type
    match: str
    inputs: Any = None
    lengths: Any = dataclasses.field(default_factory=lambda: VALID_LENGTHS)
    state: Any = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    graph_error: type | None = None
    graph_match: str | None = None


def random_inputs(shape=(BATCH, TIME, DEPTH), dtype=np.float32):
    return np.random.default_rng(0).normal(size=shape).astype(dtype)


def random_state(c_shape=(BATCH, UNITS), h_shape=(BATCH, UNITS),
                 dtype=tf.float32):
    rng = np.random.default_rng(1)
    return lstmkit.LSTMStateTuple(
        tf.constant(rng.normal(size=c_shape), dtype),
        tf.constant(rng.normal(size=h_shape), dtype),
    )


def ragged_inputs():
    rows = [random_inputs((length, DEPTH)) for length in (7, 3, 1, 1, 5)]
    return tf.ragged.constant(rows, ragged_rank=1, dtype=tf.float32)


INVALID = tf.errors.InvalidArgumentError
BAD_CASES = {
    "negative_length": BadCase(
        ValueError,
        r"sequence_length\[3\] = -1 is outside \[0, 7\]",
        lengths=np.array([7, 3, 0, -1, 5], np.int32),
        graph_error=INVALID,
        graph_match=r"must not be negative.*\[7 3 0 -1 5\]",
    ),
    "length_above_time": BadCase(
        ValueError,
        r"sequence_length\[4\] = 9 is outside \[0, 7\]",
        lengths=np.array([7, 3, 0, 1, 9], np.int32),
        graph_error=INVALID,
        graph_match=r"must not exceed the number of time steps.*"
        r"\[7 3 0 1 9\].*\[7\]",
    ),
    "lengths_column": BadCase(
        ValueError,
        r"must be a vector \[batch\]; got shape \(5, 1\)",
        lengths=VALID_LENGTHS[:, None],
        graph_match=r"must be a vector \[batch\]; got shape \(None, None\)",
    ),
    "lengths_count": BadCase(
        ValueError,
        r"sequence_length has 4 entries but the batch has 5 rows",
        lengths=VALID_LENGTHS[:4],
        graph_error=INVALID,
        # With a static batch size the count is checked by EnsureShape.
        graph_match=r"\[4\] is not compatible with expected shape \[5\]",
    ),
    "float_lengths_array": BadCase(
        TypeError,
        r"must hold integers; got dtype float64: \[7\.0, 3\.0",
        lengths=VALID_LENGTHS.astype(np.float64),
        graph_match=r"must be int32 or int64; got float64",
    ),
    "float_lengths_tensor": BadCase(
        TypeError,
        r"must be int32 or int64; got float32",
        lengths=tf.constant(VALID_LENGTHS, tf.float32),
    ),
    "inputs_rank_2": BadCase(
        ValueError,
        r"inputs must have rank 3, \[batch, time, depth\]; got shape "
        r"\(5, 3\)",
        inputs=random_inputs((BATCH, DEPTH)),
    ),
    "inputs_rank_4": BadCase(
        ValueError,
        r"inputs must have rank 3.*got shape \(5, 7, 3, 1\)",
        inputs=random_inputs((BATCH, TIME, DEPTH, 1)),
    ),
    "integer_inputs": BadCase(
        TypeError,
        r"floating-point tensor; got dtype int32",
        inputs=np.ones([BATCH, TIME, DEPTH], np.int32),
    ),
    "ragged_inputs": BadCase(
        TypeError,
        r"inputs is a tf\.RaggedTensor",
        inputs=ragged_inputs(),
    ),
    "depth_mismatch": BadCase(
        ValueError,
        r"inputs have depth 4 but cell 'lstm_cell' was built for depth 3",
        inputs=random_inputs((BATCH, TIME, DEPTH + 1)),
    ),
    "float64_inputs_float32_cell": BadCase(
        TypeError,
        r"inputs are float64 but cell 'lstm_cell' computes in float32",
        inputs=random_inputs(dtype=np.float64),
    ),
    "dtype_argument_contradicts_inputs": BadCase(
        TypeError,
        r"dtype=float64 differs from the inputs' dtype float32",
        kwargs={"dtype": tf.float64},
    ),
    "state_c_shape": BadCase(
        ValueError,
        r"{state}\.c has shape \(5, 3\); expected \[5, 4\]",
        state=random_state(c_shape=(BATCH, UNITS - 1)),
    ),
    "state_h_batch": BadCase(
        ValueError,
        r"{state}\.h has shape \(4, 4\); expected \[5, 4\]",
        state=random_state(h_shape=(BATCH - 1, UNITS)),
    ),
    "state_rank_3": BadCase(
        ValueError,
        r"{state}\.c has shape \(5, 4, 1\); expected \[5, 4\]",
        state=random_state(c_shape=(BATCH, UNITS, 1)),
    ),
    "state_dtype": BadCase(
        TypeError,
        r"{state}\.c is float64 but the inputs are float32",
        state=random_state(dtype=tf.float64),
    ),
    "state_single_tensor": BadCase(
        ValueError,
        r"{state}: An LSTM state must be a pair \(c, h\).*got EagerTensor",
        state=tf.zeros([BATCH, UNITS]),
    ),
    "state_triple": BadCase(
        ValueError,
        r"{state}: An LSTM state must be a pair \(c, h\).*got tuple",
        state=(tf.zeros([BATCH, UNITS]),) * 3,
    ),
}


def built_cell():
    """Returns a float32 cell built for depth `DEPTH`."""
    cell = lstmkit.LSTMCell(UNITS)
    cell.build((DEPTH,))
    return cell


def call_kwargs(kind, case):
    """Returns the keyword arguments other than inputs and lengths."""
    kwargs = dict(case.kwargs)
    if case.state is not None:
        if kind == "dynamic":
            kwargs["initial_state"] = case.state
        else:
            kwargs["initial_state_fw"] = random_state()
            kwargs["initial_state_bw"] = case.state
    return kwargs


def make_cells(kind):
    """Returns the built cells of one driver call, created outside any
    `tf.function`."""
    return [built_cell()] if kind == "dynamic" else [built_cell(), built_cell()]


def call_rnn(cells, inputs, lengths, kwargs):
    if len(cells) == 1:
        return lstmkit.dynamic_rnn(
            cells[0], inputs, sequence_length=lengths, **kwargs
        )
    return lstmkit.bidirectional_dynamic_rnn(
        cells[0], cells[1], inputs, sequence_length=lengths, **kwargs
    )


def run_in_function(cells, inputs, lengths, kwargs):
    """Calls the driver in a `tf.function` that takes inputs and lengths as
    arguments. The lengths' signature leaves every dimension unknown."""
    if isinstance(inputs, tf.RaggedTensor):
        inputs_spec = tf.RaggedTensorSpec.from_value(inputs)
    else:
        inputs = tf.convert_to_tensor(inputs)
        inputs_spec = tf.TensorSpec.from_tensor(inputs)
    lengths = tf.convert_to_tensor(lengths)
    lengths_spec = tf.TensorSpec([None] * lengths.shape.rank, lengths.dtype)

    @tf.function(input_signature=[inputs_spec, lengths_spec])
    def run(inputs, lengths):
        return call_rnn(cells, inputs, lengths, kwargs)

    return run(inputs, lengths)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("name", list(BAD_CASES))
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_rejects_invalid_arguments(kind, name, mode):
    case = BAD_CASES[name]
    inputs = random_inputs() if case.inputs is None else case.inputs
    kwargs = call_kwargs(kind, case)
    state_name = "initial_state" if kind == "dynamic" else "initial_state_bw"
    if mode == "eager":
        error, match = case.error, case.match
    else:
        error = case.graph_error or case.error
        match = case.graph_match or case.match
    match = match.replace("{state}", state_name)
    cells = make_cells(kind)

    with pytest.raises(error, match=match):
        if mode == "eager":
            call_rnn(cells, inputs, case.lengths, kwargs)
        else:
            run_in_function(cells, inputs, case.lengths, kwargs)


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_accepts_valid_arguments(kind):
    """The unchanged valid arguments of the table run without errors."""
    outputs, _ = call_rnn(
        make_cells(kind), random_inputs(), VALID_LENGTHS, {}
    )
    expected = [BATCH, TIME, UNITS]
    first = outputs if kind == "dynamic" else outputs[0]
    assert first.shape.as_list() == expected, (
        f"outputs shape {first.shape}, expected {expected}"
    )
    in_function, _ = run_in_function(
        make_cells(kind), random_inputs(), VALID_LENGTHS, {}
    )
    first = in_function if kind == "dynamic" else in_function[0]
    assert first.shape.as_list() == expected, (
        f"outputs shape in tf.function {first.shape}, expected {expected}"
    )


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_function_rejects_lengths_count_with_unknown_batch(kind):
    cells = make_cells(kind)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, TIME, DEPTH], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ]
    )
    def run(inputs, lengths):
        return call_rnn(cells, inputs, lengths, {})

    with pytest.raises(INVALID, match=r"one entry per batch row.*\[4\].*\[5\]"):
        run(tf.constant(random_inputs()), tf.constant(VALID_LENGTHS[:4]))


@pytest.mark.parametrize(
    "lengths,match",
    [
        ([7, 3, 0, -2, 5], r"sequence_length\[3\] = -2 is outside \[0, 7\]"),
        ([7, 3, 0, 1, 8], r"sequence_length\[4\] = 8 is outside \[0, 7\]"),
    ],
    ids=["negative", "above_time"],
)
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_function_rejects_constant_invalid_lengths(
    kind, jit_compile, lengths, match
):
    """Constant lengths are checked while tracing, so XLA keeps the check."""
    cells = make_cells(kind)

    @tf.function(jit_compile=jit_compile)
    def run(inputs):
        return call_rnn(cells, inputs, tf.constant(lengths), {})

    with pytest.raises(ValueError, match=match):
        run(tf.constant(random_inputs()))


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_xla_clamps_runtime_out_of_range_lengths(kind):
    """Documents a limit: XLA drops run-time assertions.

    So lengths that are only known when the graph runs are not checked
    under `jit_compile=True`. They are clamped to `[0, time]`, as the v1
    built-in does: a length above `time` acts as `time` and a negative one
    as 0.
    """
    cells = make_cells(kind)

    @tf.function(
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([BATCH, TIME, DEPTH], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ],
    )
    def run(inputs, lengths):
        return call_rnn(cells, inputs, lengths, {})

    inputs = tf.constant(random_inputs())
    out_of_range = run(inputs, tf.constant([9, 3, -2, 1, 5], tf.int32))
    clamped = run(inputs, tf.constant([7, 3, 0, 1, 5], tf.int32))
    for index, (a, b) in enumerate(
        zip(tf.nest.flatten(out_of_range), tf.nest.flatten(clamped))
    ):
        assert np.array_equal(a.numpy(), b.numpy()), (
            f"result part {index} with lengths [9, 3, -2, 1, 5] differs "
            "from lengths [7, 3, 0, 1, 5]"
        )
