"""Parity of lstmkit's drivers with the v1 built-ins sharing the same weights.

The reference is `tf.compat.v1.nn.dynamic_rnn` and
`tf.compat.v1.nn.bidirectional_dynamic_rnn` with the tf_keras copy of the
v1 `LSTMCell`, always run eagerly. lstmkit runs eagerly, in `tf.function`
and in `tf.function(jit_compile=True)` (XLA).
"""

import dataclasses
import functools

import numpy as np
import pytest
import tensorflow as tf

import lstmkit
from helpers import (
    FLOAT32_ATOL,
    FLOAT32_GRAD_ATOL,
    FLOAT32_GRAD_RTOL,
    FLOAT64_ATOL,
    OPTION_CASES,
    V1LSTMStateTuple,
    assert_close,
    cell_weights_by_name,
    make_cell_pair,
    make_padded_inputs,
    numpy_bidirectional_dynamic_rnn,
    numpy_dynamic_rnn,
    numpy_lstm_step,
    padding_mask,
)

BATCH, TIME, DEPTH, UNITS = 5, 7, 3, 4
# One batch with a full row, a length-0 row, a length-1 row and two others.
LENGTHS = np.array([7, 3, 0, 1, 5], np.int32)
RNN_KINDS = ["dynamic", "bidirectional"]
# XLA compiles take about a second each, so only a few cases run under XLA.
MATCH_CASES = [
    (option, mode) for option in OPTION_CASES for mode in ("eager", "function")
] + [("default", "xla"), ("all", "xla")]


@dataclasses.dataclass
class RunResult:
    """Outputs, final state parts and gradients of one run, as NumPy."""

    outputs: list
    states: list
    grads: list


@dataclasses.dataclass
class ParityCase:
    """Paired cells, inputs, initial states and loss weights for one test."""

    kind: str
    v1_cells: list
    cells: list
    x: np.ndarray
    initial: list
    loss_weights: list
    dtype: str
    time_major: bool

    def output_names(self) -> list[str]:
        if self.kind == "dynamic":
            return ["outputs"]
        return ["output_fw", "output_bw"]

    def state_names(self) -> list[str]:
        if self.kind == "dynamic":
            return ["state.c", "state.h"]
        return ["state_fw.c", "state_fw.h", "state_bw.c", "state_bw.h"]

    def grad_names(self, with_initial: bool = True) -> list[str]:
        names = ["d/d inputs"]
        if with_initial:
            names += ["d/d initial_" + name for name in self.state_names()]
        prefixes = ["fw/", "bw/"] if self.kind == "bidirectional" else [""]
        for prefix, cell in zip(prefixes, self.cells):
            names += [f"d/d {prefix}{w.name}" for w in cell.trainable_weights]
        return names


def make_case(
    kind,
    options,
    seed=0,
    dtype="float32",
    padding="junk",
    lengths=LENGTHS,
    time_major=False,
    ours_dtype="argument",
):
    """Builds cells sharing random weights, padded inputs and loss weights.

    The loss weights are random, so every element of the outputs and of
    both state parts contributes its own gradient.
    """
    rng = np.random.default_rng(seed)
    directions = 1 if kind == "dynamic" else 2
    v1_cells, cells = [], []
    for direction in range(directions):
        v1, ours = make_cell_pair(
            DEPTH,
            UNITS,
            seed=seed + 100 * direction,
            dtype=dtype,
            ours_dtype=ours_dtype,
            **options,
        )
        v1_cells.append(v1)
        cells.append(ours)

    if lengths is None:
        x = rng.normal(size=[BATCH, TIME, DEPTH])
    else:
        x = make_padded_inputs(rng, BATCH, TIME, DEPTH, lengths, padding)
    output_shape = [BATCH, TIME, cells[0].output_size]
    if time_major:
        x = x.transpose(1, 0, 2)
        output_shape = [TIME, BATCH, cells[0].output_size]
    state_shapes = [[BATCH, UNITS], [BATCH, cells[0].output_size]]
    initial = [
        tuple(rng.normal(size=shape).astype(dtype) for shape in state_shapes)
        for _ in range(directions)
    ]
    loss_weights = [
        rng.normal(size=output_shape).astype(dtype) for _ in range(directions)
    ]
    for _ in range(directions):
        loss_weights += [
            rng.normal(size=shape).astype(dtype) for shape in state_shapes
        ]
    return ParityCase(
        kind=kind,
        v1_cells=v1_cells,
        cells=cells,
        x=x.astype(dtype),
        initial=initial,
        loss_weights=loss_weights,
        dtype=dtype,
        time_major=time_major,
    )


def to_state(state_kind, c, h):
    """Wraps `(c, h)` in the state type a test passes to the driver."""
    if state_kind == "lstmkit":
        return lstmkit.LSTMStateTuple(c, h)
    if state_kind == "v1":
        return V1LSTMStateTuple(c, h)
    if state_kind == "tuple":
        return (c, h)
    raise ValueError(f"unknown state_kind={state_kind!r}")


def call_rnn(api, kind, cells, x, lengths, states, time_major, dtype):
    """Calls a driver and returns `(outputs, flat state parts)` as lists."""
    module = tf.compat.v1.nn if api == "v1" else lstmkit
    if kind == "dynamic":
        outputs, state = module.dynamic_rnn(
            cells[0],
            x,
            sequence_length=lengths,
            initial_state=None if states is None else states[0],
            dtype=dtype,
            time_major=time_major,
        )
        return [outputs], [state.c, state.h]
    (output_fw, output_bw), (state_fw, state_bw) = (
        module.bidirectional_dynamic_rnn(
            cells[0],
            cells[1],
            x,
            sequence_length=lengths,
            initial_state_fw=None if states is None else states[0],
            initial_state_bw=None if states is None else states[1],
            dtype=dtype,
            time_major=time_major,
        )
    )
    return (
        [output_fw, output_bw],
        [state_fw.c, state_fw.h, state_bw.c, state_bw.h],
    )


def make_runner(case, api="lstmkit", mode="eager", state_kind="lstmkit"):
    """Returns `run(x, lengths, initial) -> RunResult` for one driver.

    `run` computes a weighted sum of the outputs and of every final state
    part, and its gradients with respect to the inputs, the initial state
    parts (when given) and every weight of the cells. The v1 driver always
    gets `dtype=`, because it requires it without an initial state; lstmkit
    gets none and takes the dtype from the inputs. For `mode` "function"
    and "xla", one traced function serves every call with equal shapes.
    """
    cells = case.v1_cells if api == "v1" else case.cells
    weights = [w for cell in cells for w in cell.trainable_weights]
    loss_weights = [tf.constant(w) for w in case.loss_weights]
    dtype = case.dtype if api == "v1" else None

    def forward(x, lengths, initial):
        with tf.GradientTape() as tape:
            tape.watch(x)
            states = None
            if initial is not None:
                tape.watch(initial)
                states = [to_state(state_kind, c, h) for c, h in initial]
            outputs, final = call_rnn(
                api, case.kind, cells, x, lengths, states, case.time_major,
                dtype,
            )
            loss = tf.add_n(
                [
                    tf.reduce_sum(tensor * weight)
                    for tensor, weight in zip(outputs + final, loss_weights)
                ]
            )
        sources = [x] + weights
        if initial is not None:
            sources = [x] + tf.nest.flatten(initial) + weights
        return outputs, final, tape.gradient(loss, sources)

    if mode != "eager":
        forward = tf.function(forward, jit_compile=mode == "xla")

    def run(x=None, lengths=LENGTHS, initial="case"):
        x = tf.constant(case.x if x is None else x)
        if isinstance(initial, str):
            initial = [
                (tf.constant(c), tf.constant(h)) for c, h in case.initial
            ]
        outputs, final, grads = forward(x, lengths, initial)
        return RunResult(
            outputs=[t.numpy() for t in outputs],
            states=[t.numpy() for t in final],
            grads=[None if g is None else g.numpy() for g in grads],
        )

    return run


def assert_results_close(actual, expected, case, atol, grad_rtol, grad_atol,
                         prefix="", with_initial=True, category=None):
    """Compares every output, state part and gradient of two runs."""
    for name, a, e in zip(case.output_names(), actual.outputs,
                          expected.outputs):
        assert_close(a, e, prefix + name, atol,
                     category=category or "outputs")
    for name, a, e in zip(case.state_names(), actual.states,
                          expected.states):
        assert_close(a, e, prefix + name, atol,
                     category=category or "states")
    names = case.grad_names(with_initial)
    assert len(actual.grads) == len(names), (
        f"{prefix}expected {len(names)} gradients, got {len(actual.grads)}"
    )
    for name, a, e in zip(names, actual.grads, expected.grads):
        assert_close(a, e, prefix + name, grad_atol, grad_rtol,
                     category=category or "gradients")


def assert_results_equal(actual, expected, case, label, with_initial=True):
    """Asserts two runs are bitwise equal in every output, state and grad."""
    pairs = (
        list(zip(case.output_names(), actual.outputs, expected.outputs))
        + list(zip(case.state_names(), actual.states, expected.states))
        + list(zip(case.grad_names(with_initial), actual.grads,
                   expected.grads))
    )
    for name, a, e in pairs:
        diff = np.nanmax(np.abs(a - e)) if a.size else 0.0
        assert np.array_equal(a, e), (
            f"{name} with {label} differs from the zero-padding run; max abs "
            f"diff {diff:.3g}"
        )


def assert_float32_parity(case, mode, state_kind="lstmkit", lengths=LENGTHS,
                          initial="case"):
    """Runs lstmkit in `mode` and the v1 built-in eagerly and compares."""
    ours = make_runner(case, mode=mode, state_kind=state_kind)(
        lengths=lengths, initial=initial
    )
    v1_kind = "v1" if state_kind != "none" else "lstmkit"
    reference = make_runner(case, api="v1", state_kind=v1_kind)(
        lengths=lengths, initial=initial
    )
    assert_results_close(
        ours,
        reference,
        case,
        FLOAT32_ATOL,
        FLOAT32_GRAD_RTOL,
        FLOAT32_GRAD_ATOL,
        prefix=f"[{case.kind}, {mode}] ",
        with_initial=initial is not None,
    )


@pytest.mark.parametrize("option,mode", MATCH_CASES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_matches_v1(kind, option, mode):
    case = make_case(kind, OPTION_CASES[option], seed=1)
    assert_float32_parity(case, mode)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("state_kind", ["none", "lstmkit", "v1", "tuple"])
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_initial_state_kinds_match_v1(kind, state_kind, mode):
    case = make_case(kind, OPTION_CASES["all"], seed=2)
    initial = None if state_kind == "none" else "case"
    assert_float32_parity(case, mode, state_kind=state_kind, initial=initial)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_time_major_matches_v1(kind, mode):
    case = make_case(kind, OPTION_CASES["all"], seed=3, time_major=True)
    assert_float32_parity(case, mode)


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_time_major_equals_batch_major(kind):
    batch_case = make_case(kind, OPTION_CASES["all"], seed=4)
    time_case = dataclasses.replace(
        batch_case,
        x=batch_case.x.transpose(1, 0, 2),
        loss_weights=[
            w.transpose(1, 0, 2) if w.ndim == 3 else w
            for w in batch_case.loss_weights
        ],
        time_major=True,
    )
    batch_run = make_runner(batch_case)()
    time_run = make_runner(time_case)()
    for name, a, b in zip(batch_case.output_names(), time_run.outputs,
                          batch_run.outputs):
        assert np.array_equal(a.transpose(1, 0, 2), b), (
            f"time-major {name} differs from batch-major {name} transposed"
        )
    for name, a, b in zip(batch_case.state_names(), time_run.states,
                          batch_run.states):
        assert np.array_equal(a, b), (
            f"time-major {name} differs from the batch-major run"
        )


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("lengths_type", ["numpy", "tensor"])
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_int64_lengths_match_v1(kind, lengths_type, mode):
    case = make_case(kind, OPTION_CASES["all"], seed=5)
    lengths = LENGTHS.astype(np.int64)
    if lengths_type == "tensor":
        lengths = tf.constant(lengths)
    assert_float32_parity(case, mode, lengths=lengths)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_without_lengths_matches_v1(kind, mode):
    case = make_case(kind, OPTION_CASES["all"], seed=6, lengths=None)
    assert_float32_parity(case, mode, lengths=None)


FLOAT64_CASES = [
    (option, ours_dtype, mode)
    for option in ("default", "all")
    for ours_dtype in ("argument", "inputs")
    for mode in ("eager", "function")
] + [("all", "argument", "xla")]


@pytest.mark.parametrize("option,ours_dtype,mode", FLOAT64_CASES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_float64_matches_v1_and_numpy(kind, option, ours_dtype, mode):
    options = OPTION_CASES[option]
    case = make_case(
        kind, options, seed=7, dtype="float64", ours_dtype=ours_dtype
    )
    for cell in case.cells:
        dtypes = {w.dtype for w in cell.weights}
        assert dtypes == {"float64"}, (
            f"cell {cell.name} built with ours_dtype={ours_dtype} has "
            f"variables of dtype {dtypes}, expected float64"
        )

    ours = make_runner(case, mode=mode)()
    reference = make_runner(case, api="v1", state_kind="v1")()
    assert_results_close(
        ours,
        reference,
        case,
        FLOAT64_ATOL,
        FLOAT64_ATOL,
        FLOAT64_ATOL,
        prefix=f"[{kind}, {mode}] vs v1 float64: ",
        category="float64",
    )

    weights = [cell_weights_by_name(cell, options) for cell in case.cells]
    if kind == "dynamic":
        outputs, state = numpy_dynamic_rnn(
            case.x, weights[0], options, LENGTHS, case.initial[0]
        )
        numpy_outputs, numpy_states = [outputs], list(state)
    else:
        numpy_outputs, (state_fw, state_bw) = (
            numpy_bidirectional_dynamic_rnn(
                case.x, weights[0], weights[1], options, LENGTHS,
                case.initial[0], case.initial[1],
            )
        )
        numpy_states = list(state_fw) + list(state_bw)
    for name, a, e in zip(case.output_names(), ours.outputs, numpy_outputs):
        assert_close(a, e, f"{name} vs NumPy", FLOAT64_ATOL,
                     category="float64")
    for name, a, e in zip(case.state_names(), ours.states, numpy_states):
        assert_close(a, e, f"{name} vs NumPy", FLOAT64_ATOL,
                     category="float64")


@pytest.mark.parametrize("option", ["cell_clip", "proj_clip", "all"])
def test_option_cases_reach_their_clips(option):
    """Checks that the random weights make the clip options matter."""
    options = OPTION_CASES[option]
    case = make_case("dynamic", options, seed=1, dtype="float64")
    weights = cell_weights_by_name(case.cells[0], options)
    c, h = case.initial[0]
    largest_c, largest_h = 0.0, 0.0
    for t in range(TIME):
        _, c, h = numpy_lstm_step(case.x[:, t], c, h, weights, options)
        largest_c = max(largest_c, float(np.abs(c).max()))
        largest_h = max(largest_h, float(np.abs(h).max()))
    if "cell_clip" in options:
        assert largest_c == options["cell_clip"], (
            f"|c| never reaches cell_clip={options['cell_clip']}; largest "
            f"{largest_c:.3g}"
        )
    if "proj_clip" in options:
        assert largest_h == options["proj_clip"], (
            f"|h| never reaches proj_clip={options['proj_clip']}; largest "
            f"{largest_h:.3g}"
        )


@functools.cache
def padded_runner(kind, mode):
    """Returns a zero-padded case and its lstmkit runner, one per kind and
    mode, so that every padding test shares one trace or XLA compile."""
    case = make_case(kind, OPTION_CASES["all"], seed=8, padding="zero")
    return case, make_runner(case, mode=mode)


def junk_padded_inputs(case):
    """Returns `case.x` with large random values at every padded step."""
    junk = make_padded_inputs(
        np.random.default_rng(11), BATCH, TIME, DEPTH, LENGTHS, "junk"
    )
    valid = ~padding_mask(LENGTHS, TIME)
    junk[valid] = case.x[valid]
    return junk.astype(case.dtype)


@functools.cache
def padded_run(kind, mode):
    """Runs lstmkit once per kind and mode on junk-padded inputs."""
    case, run = padded_runner(kind, mode)
    return case, run(junk_padded_inputs(case))


EXACT_MODES = ["eager", "function", "xla"]


@pytest.mark.parametrize("mode", EXACT_MODES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_outputs_zero_at_padded_steps(kind, mode):
    case, result = padded_run(kind, mode)
    pad = padding_mask(LENGTHS, TIME)
    for name, outputs in zip(case.output_names(), result.outputs):
        assert np.all(outputs[pad] == 0.0), (
            f"{name} is not exactly 0 at padded steps; max abs "
            f"{np.abs(outputs[pad]).max():.3g}"
        )


@pytest.mark.parametrize("mode", EXACT_MODES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_length_zero_rows_keep_initial_state(kind, mode):
    case, result = padded_run(kind, mode)
    initial_parts = [part for state in case.initial for part in state]
    rows = np.flatnonzero(LENGTHS == 0)
    for name, final, initial in zip(case.state_names(), result.states,
                                    initial_parts):
        assert np.array_equal(final[rows], initial[rows]), (
            f"{name} of length-0 rows {rows} differs from the initial state"
        )


@pytest.mark.parametrize("mode", EXACT_MODES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_forward_final_h_is_last_valid_output(kind, mode):
    case, result = padded_run(kind, mode)
    rows = np.flatnonzero(LENGTHS > 0)
    last = result.outputs[0][rows, LENGTHS[rows] - 1]
    final_h = result.states[1][rows]
    assert np.array_equal(final_h, last), (
        "forward final h differs from the output at step length - 1"
    )


@pytest.mark.parametrize("mode", EXACT_MODES)
def test_bidirectional_backward_output_at_zero_is_final_h(mode):
    _, result = padded_run("bidirectional", mode)
    rows = np.flatnonzero(LENGTHS > 0)
    output_bw_at_zero = result.outputs[1][rows, 0]
    state_bw_h = result.states[3][rows]
    assert np.array_equal(output_bw_at_zero, state_bw_h), (
        "output_bw[:, 0] differs from the backward final h"
    )


@pytest.mark.parametrize("mode", EXACT_MODES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_input_gradient_zero_at_padded_steps(kind, mode):
    _, result = padded_run(kind, mode)
    input_grad = result.grads[0]
    pad = padding_mask(LENGTHS, TIME)
    assert np.all(input_grad[pad] == 0.0), (
        f"d loss / d inputs is not exactly 0 at padded steps; max abs "
        f"{np.abs(input_grad[pad]).max():.3g}"
    )


@pytest.mark.parametrize("mode", EXACT_MODES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_length_zero_row_passes_state_gradient(kind, mode):
    """The initial state of a length-0 row gets the final-state gradient.

    The loss is `sum(w * final_part)` for each state part, so the incoming
    gradient of a final part is its loss weight.
    """
    case, result = padded_run(kind, mode)
    rows = np.flatnonzero(LENGTHS == 0)
    directions = len(case.cells)
    state_loss_weights = case.loss_weights[directions:]
    initial_grads = result.grads[1:1 + 2 * directions]
    for name, grad, incoming in zip(case.state_names(), initial_grads,
                                    state_loss_weights):
        assert np.array_equal(grad[rows], incoming[rows]), (
            f"gradient to the initial {name} of length-0 rows {rows} "
            f"differs from the incoming final-state gradient"
        )


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_padded_batch_matches_rows_run_alone(kind):
    case = make_case(kind, OPTION_CASES["all"], seed=9)
    batch_result = make_runner(case)()
    for row, length in enumerate(LENGTHS):
        row_case = dataclasses.replace(
            case,
            x=case.x[row:row + 1, :length],
            initial=[(c[row:row + 1], h[row:row + 1]) for c, h in case.initial],
            loss_weights=[
                w[row:row + 1, :length] if w.ndim == 3 else w[row:row + 1]
                for w in case.loss_weights
            ],
        )
        alone = make_runner(row_case)(lengths=None)
        for name, a, b in zip(case.output_names(), alone.outputs,
                              batch_result.outputs):
            assert_close(a[0], b[row, :length], f"row {row} alone: {name}",
                         FLOAT32_ATOL, category="outputs")
        for name, a, b in zip(case.state_names(), alone.states,
                              batch_result.states):
            assert_close(a[0], b[row], f"row {row} alone: {name}",
                         FLOAT32_ATOL, category="states")


@pytest.mark.parametrize("mode", EXACT_MODES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_padding_content_is_ignored(kind, mode):
    case, run = padded_runner(kind, mode)
    _, junk_padded = padded_run(kind, mode)
    assert_results_equal(junk_padded, run(), case, "junk padding")


@pytest.mark.parametrize("mode", EXACT_MODES)
@pytest.mark.parametrize("kind", RNN_KINDS)
def test_rnn_nonfinite_padding_is_ignored(kind, mode):
    case, run = padded_runner(kind, mode)
    zero_padded = run()
    pad = padding_mask(LENGTHS, TIME)
    for fill in (np.nan, np.inf, -np.inf):
        x = case.x.copy()
        x[pad] = fill
        result = run(x)
        parts = (
            list(zip(case.output_names(), result.outputs))
            + list(zip(case.state_names(), result.states))
            + list(zip(case.grad_names(), result.grads))
        )
        for name, value in parts:
            assert np.all(np.isfinite(value)), (
                f"{name} is not finite with {fill} padding"
            )
        assert_results_equal(result, zero_padded, case, f"{fill} padding")


@pytest.mark.parametrize("kind", RNN_KINDS)
def test_v1_kernel_gradient_is_nan_with_nan_padding(kind):
    """Shows why lstmkit zeroes padding: the built-in's gradient breaks."""
    case = make_case(kind, OPTION_CASES["default"], seed=13, padding=np.nan)
    reference = make_runner(case, api="v1", state_kind="v1")()
    for name, outputs in zip(case.output_names(), reference.outputs):
        assert np.all(np.isfinite(outputs)), (
            f"v1 {name} is not finite with NaN padding"
        )
    names = case.grad_names()
    kernel_grads = [
        (name, grad) for name, grad in zip(names, reference.grads)
        if name.endswith("kernel")
    ]
    assert kernel_grads, f"no kernel gradient among {names}"
    for name, grad in kernel_grads:
        assert np.isnan(grad).any(), (
            f"v1 {name} has no NaN with NaN padding; the built-in was "
            "expected to leak the padding into the kernel gradient"
        )
