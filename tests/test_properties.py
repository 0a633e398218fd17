"""Property-based parity of lstmkit with the built-ins and a NumPy model.

Hypothesis draws batch size, time steps, input depth, units, lengths (0,
full and anything between), dtype, `time_major`, initial states, every
`LSTMCell` option and the time-loop kernel (see `strategies.py`). For each
draw, lstmkit must equal:

* the v1 built-ins `tf.compat.v1.nn.dynamic_rnn` and
  `bidirectional_dynamic_rnn` with the v1 `LSTMCell` holding the same
  weights: outputs, final states and the gradients with respect to the
  inputs, the given initial states and every weight;
* `keras.layers.LSTM` and `keras.layers.Bidirectional` for the layers with
  "keras" semantics (masks, initial states, `go_backwards`,
  `zero_output_for_mask`, merge modes), with the same gradients, and the
  v1 built-ins for the layers with "tf1" semantics and every v1 option;
* the float64 NumPy model in this module (outputs and final states), which
  runs each row alone, step by step, over its valid steps only.

The default run is bounded for CI: 3 to 5 drawn examples per test plus
the explicit `@example` cases (one per kernel and the regressions), drawn
derandomized so that every run checks the same cases, and no example
database. It took 30 to 100 s on 2 shared CPU cores, depending on
their load. The tests marked `slow` draw new cases on every run, 200 per
test by default, and `LSTMKIT_PROPERTY_EXAMPLES` sets another number.
The 1,200 examples of a default slow run took 12 minutes on the same
machine with no other load:

    pytest tests/test_properties.py -m slow
    LSTMKIT_PROPERTY_EXAMPLES=1000 pytest tests/test_properties.py -m slow

A failing case prints the drawn case and a `@reproduce_failure` line.

Tolerances, as `(atol, rtol)` of `|actual - expected| <= atol + rtol *
|expected|`, are in `TOLERANCES` below.
"""

import dataclasses
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lstmkit
import strategies
from helpers import V1LSTMStateTuple, assert_close, build_v1_cell

CI_SETTINGS = settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
SLOW_SETTINGS = settings(
    CI_SETTINGS,
    max_examples=int(os.environ.get("LSTMKIT_PROPERTY_EXAMPLES", "200")),
    derandomize=False,
)

# (atol, rtol) per dtype and comparison:
# "values": outputs and states against the built-in in the same dtype. In
#     float32 the sums round in another order, because lstmkit multiplies
#     x and h by separate kernel blocks where v1 multiplies concat([x, h]).
# "gradients": every gradient against the built-in in the same dtype.
# "reference": outputs and states against the NumPy float64 model, which
#     is given the same (float32-rounded) inputs and weights.
# Over 420 slow examples (2 CPU cores, TF 2.21) the largest differences
# were 3.6e-7 (values), 9.5e-7 (gradients) and 2.3e-7 (reference) in
# float32, and 1.8e-15 in float64. The largest share of a tolerance used
# was 16% (float32 values).
TOLERANCES = {
    ("float32", "values"): (1e-6, 1e-6),
    ("float32", "gradients"): (2e-6, 2e-5),
    ("float32", "reference"): (2e-6, 2e-6),
    ("float64", "values"): (1e-12, 1e-12),
    ("float64", "gradients"): (1e-12, 1e-11),
    ("float64", "reference"): (1e-12, 1e-12),
}


# --- NumPy float64 model ----------------------------------------------------


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softsign(x):
    return x / (1.0 + np.abs(x))


# The v1 cell resolves activation names through tf_keras and the Keras 3
# layers through Keras 3. The two define hard_sigmoid differently:
# tf_keras as clip(0.2 x + 0.5, 0, 1), Keras 3 as clip(x / 6 + 0.5, 0, 1).
V1_NUMPY_ACTIVATIONS = {
    None: np.tanh,
    "tanh": np.tanh,
    "softsign": softsign,
    "sigmoid": sigmoid,
    "hard_sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "tf.nn.softsign": softsign,
}
KERAS_NUMPY_ACTIVATIONS = {
    **V1_NUMPY_ACTIVATIONS,
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
}


def reference_step(x, c, h, weights, options, activation):
    """Runs one LSTM step on one row, `x [depth]`, `c [units]`, `h [h_depth]`.

    `weights` holds `kernel_x`, `kernel_h` and `bias` with gate blocks in
    the v1 order i, j, f, o, and the peepholes and projection when used.
    """
    z = x @ weights["kernel_x"] + h @ weights["kernel_h"] + weights["bias"]
    units = c.shape[0]
    i, j, f, o = (z[k * units:(k + 1) * units] for k in range(4))
    f = f + options.get("forget_bias", 1.0)
    if options.get("use_peepholes"):
        i = i + weights["w_i_diag"] * c
        f = f + weights["w_f_diag"] * c
    c = sigmoid(f) * c + sigmoid(i) * activation(j)
    if options.get("cell_clip") is not None:
        c = np.clip(c, -options["cell_clip"], options["cell_clip"])
    if options.get("use_peepholes"):
        o = o + weights["w_o_diag"] * c
    h = sigmoid(o) * activation(c)
    if options.get("num_proj") is not None:
        h = h @ weights["projection_kernel"]
        if options.get("proj_clip") is not None:
            h = np.clip(h, -options["proj_clip"], options["proj_clip"])
    return c, h


def reference_rnn(x, valid, c0, h0, weights, options, activation,
                  carry_output=False):
    """Runs the LSTM over batch-major `x [batch, time, depth]` in float64.

    Each row runs alone. At a step where `valid` is False the state stays
    and the output is zeros, or the row's previous output with
    `carry_output` (zeros before its first valid step).

    Returns:
        `(outputs [batch, time, h_depth], c [batch, units], h [batch,
        h_depth])`.
    """
    x = np.asarray(x, np.float64)
    batch, time, _ = x.shape
    outputs = np.zeros([batch, time, h0.shape[1]])
    c_final = np.array(c0, np.float64)
    h_final = np.array(h0, np.float64)
    for row in range(batch):
        c, h = c_final[row], h_final[row]
        previous = np.zeros(h0.shape[1])
        for t in range(time):
            if valid[row][t]:
                c, h = reference_step(x[row, t], c, h, weights, options,
                                      activation)
                previous = h
                outputs[row, t] = h
            elif carry_output:
                outputs[row, t] = previous
        c_final[row], h_final[row] = c, h
    return outputs, c_final, h_final


def reverse_valid_steps(x, valid):
    """Reverses the valid prefix of each row of `x [batch, time, ...]`.

    `valid` must be right padding; the padded steps stay in place.
    """
    reversed_x = np.array(x)
    for row, row_valid in enumerate(valid):
        length = int(np.sum(row_valid))
        reversed_x[row, :length] = x[row, :length][::-1]
    return reversed_x


def reference_bidirectional(x, valid, states, weights, options, activation):
    """Runs `bidirectional_dynamic_rnn` in float64 on right-padded rows.

    Returns:
        `([output_fw, output_bw], [c_fw, h_fw, c_bw, h_bw])`.
    """
    output_fw, c_fw, h_fw = reference_rnn(
        x, valid, *states[0], weights[0], options, activation
    )
    reversed_bw, c_bw, h_bw = reference_rnn(
        reverse_valid_steps(x, valid), valid, *states[1], weights[1],
        options, activation,
    )
    output_bw = reverse_valid_steps(reversed_bw, valid)
    return [output_fw, output_bw], [c_fw, h_fw, c_bw, h_bw]


def v1_numpy_weights(cell, depth, options):
    """Returns a v1-layout cell's weights for `reference_rnn`.

    The v1 cell's variables come in the order kernel, bias, the peepholes
    w_f_diag, w_i_diag, w_o_diag, and the projection kernel.
    """
    names = ["kernel", "bias"]
    if options.get("use_peepholes"):
        names += ["w_f_diag", "w_i_diag", "w_o_diag"]
    if options.get("num_proj") is not None:
        names.append("projection_kernel")
    arrays = [np.asarray(w, np.float64) for w in cell.get_weights()]
    assert len(arrays) == len(names), f"{len(arrays)} weights for {names}"
    weights = dict(zip(names, arrays))
    kernel = weights.pop("kernel")
    return dict(weights, kernel_x=kernel[:depth], kernel_h=kernel[depth:])


def keras_to_v1_gates(matrix):
    """Reorders the last axis from Keras' gate blocks i, f, c, o to i, j, f,
    o, independently of lstmkit's converters."""
    i, f, c, o = np.split(np.asarray(matrix, np.float64), 4, axis=-1)
    return np.concatenate([i, c, f, o], axis=-1)


def keras_numpy_weights(layer_weights):
    """Returns `[kernel, recurrent_kernel, bias]` for `reference_rnn`."""
    kernel, recurrent_kernel, bias = layer_weights
    return {
        "kernel_x": keras_to_v1_gates(kernel),
        "kernel_h": keras_to_v1_gates(recurrent_kernel),
        "bias": keras_to_v1_gates(bias),
    }


def merge(forward, backward, merge_mode):
    """Merges two directions as `keras.layers.Bidirectional` does.

    Takes arrays or tensors; "concat" returns a tensor either way.
    """
    if merge_mode == "concat":
        return [tf.concat([forward, backward], axis=-1)]
    if merge_mode == "sum":
        return [forward + backward]
    if merge_mode == "ave":
        return [(forward + backward) / 2]
    if merge_mode == "mul":
        return [forward * backward]
    return [forward, backward]


# --- Cases ------------------------------------------------------------------


def random_values(rng, shape, dtype, depth=1):
    """Draws +-[0.1, 0.8] with random signs, scaled by `2 / sqrt(depth)`.

    No value is near zero, so a missing term changes the result, and the
    scale keeps the gates away from saturation for the larger depths.
    """
    scale = min(1.0, 2.0 / np.sqrt(depth))
    magnitude = rng.uniform(0.1, 0.8, size=shape)
    sign = rng.choice([-1.0, 1.0], size=shape)
    return (scale * magnitude * sign).astype(dtype)


def randomize(variables, rng):
    """Assigns `random_values` to each variable, scaled by its fan-in."""
    for variable in variables:
        shape = tuple(variable.shape)
        depth = shape[0] if len(shape) == 2 else 1
        dtype = np.dtype(tf.as_dtype(variable.dtype).as_numpy_dtype)
        variable.assign(random_values(rng, shape, dtype, depth))


def cell_options(options):
    """Converts drawn options to constructor arguments (callables)."""
    if options.get("activation") == "tf.nn.softsign":
        return dict(options, activation=tf.nn.softsign)
    return dict(options)


def padded_inputs(rng, batch, time, depth, valid, dtype):
    """Returns normal inputs with large values (scale 30) at masked steps."""
    x = rng.normal(size=[batch, time, depth])
    junk = rng.normal(scale=30.0, size=x.shape)
    return np.where(np.asarray(valid)[:, :, None], x, junk).astype(dtype)


def valid_steps(case):
    """Returns the `[batch, time]` bool mask of an `RnnCase`'s lengths."""
    if case.lengths is None:
        return np.ones([case.batch, case.time], bool)
    return np.arange(case.time)[None, :] < np.array(case.lengths)[:, None]


def make_cells(case, rng):
    """Builds v1 and lstmkit cells per direction, sharing random weights."""
    v1_cells, cells = [], []
    options = cell_options(case.options)
    for _ in case.given_states:
        v1 = build_v1_cell(case.depth, case.units, case.dtype, **options)
        randomize(v1.weights, rng)
        if case.dtype_from_inputs:
            ours = lstmkit.LSTMCell(case.units, **options)
            zeros = tf.zeros([1, case.depth], case.dtype)
            ours(zeros, ours.zero_state(1, case.dtype))
        else:
            ours = lstmkit.LSTMCell(case.units, dtype=case.dtype, **options)
            ours.build((case.depth,))
        ours.set_weights(v1.get_weights())
        v1_cells.append(v1)
        cells.append(ours)
    return v1_cells, cells


def initial_states(case, rng, output_size):
    """Returns one `(c, h)` of random arrays or `None` per direction."""
    states = []
    for given in case.given_states:
        if not given:
            states.append(None)
            continue
        c = rng.normal(size=[case.batch, case.units]).astype(case.dtype)
        h = rng.normal(size=[case.batch, output_size]).astype(case.dtype)
        states.append((c, h))
    return states


def weighted_loss(tensors, loss_weights):
    """Sums each tensor times its fixed random loss weights."""
    return tf.add_n(
        [tf.reduce_sum(t * w) for t, w in zip(tensors, loss_weights)]
    )


def gradients(tape, loss, sources):
    result = tape.gradient(
        loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return [np.asarray(tf.convert_to_tensor(g)) for g in result]


def assert_all_close(actual, expected, names, dtype, kind, label):
    """Compares lists of arrays with the tolerance of `(dtype, kind)`."""
    assert len(actual) == len(expected) == len(names), (
        f"{label}: {len(actual)} results, {len(expected)} expected, "
        f"names {names}"
    )
    atol, rtol = TOLERANCES[(dtype, kind)]
    for name, a, e in zip(names, actual, expected):
        assert_close(a, e, f"{label}: {name}", atol, rtol,
                     category=f"properties {dtype} {kind}")


# --- Drivers ----------------------------------------------------------------


def call_driver(module, cells, x, lengths, states, case, implementation):
    """Calls `module.dynamic_rnn` or `bidirectional_dynamic_rnn`.

    Returns:
        `(outputs, state parts)` as lists, the parts as `[c, h]` per
        direction.
    """
    extra = {} if implementation is None else {
        "implementation": implementation
    }
    # The v1 functions need dtype= without an initial state; lstmkit takes
    # the dtype of the inputs.
    dtype = None
    if module is tf.compat.v1.nn:
        dtype = case.dtype
        states = [None if s is None else V1LSTMStateTuple(*s) for s in states]
    if len(cells) == 1:
        outputs, state = module.dynamic_rnn(
            cells[0], x, sequence_length=lengths, initial_state=states[0],
            dtype=dtype, time_major=case.time_major, **extra,
        )
        return [outputs], [state[0], state[1]]
    (output_fw, output_bw), (state_fw, state_bw) = (
        module.bidirectional_dynamic_rnn(
            cells[0], cells[1], x, sequence_length=lengths,
            initial_state_fw=states[0], initial_state_bw=states[1],
            dtype=dtype, time_major=case.time_major, **extra,
        )
    )
    return [output_fw, output_bw], [*state_fw, *state_bw]


def run_driver(module, cells, case, arrays, implementation=None,
               traced=False):
    """Runs a driver under a tape and returns outputs, states, gradients.

    The gradients are those of the weighted loss with respect to the
    inputs, each given initial state part and every weight of `cells`.
    """
    x_array, lengths, state_arrays, loss_weights = arrays
    weights = [w for cell in cells for w in cell.trainable_weights]

    def forward(x, given):
        parts = iter(given)
        states = [None if s is None else (next(parts), next(parts))
                  for s in state_arrays]
        with tf.GradientTape() as tape:
            tape.watch([x, *given])
            outputs, finals = call_driver(
                module, cells, x, lengths, states, case, implementation
            )
            loss = weighted_loss(outputs + finals, loss_weights)
        grads = tape.gradient(
            loss, [x, *given, *weights],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return outputs, finals, grads

    if traced:
        forward = tf.function(forward)
    given = [tf.constant(part) for s in state_arrays if s is not None
             for part in s]
    outputs, finals, grads = forward(tf.constant(x_array), given)
    return (
        [np.asarray(t) for t in outputs],
        [np.asarray(t) for t in finals],
        [np.asarray(g) for g in grads],
    )


def driver_arrays(case, rng, output_size):
    """Draws inputs, lengths, initial states and loss weights of a case.

    Returns:
        `(x, lengths, states, loss_weights)`: x in the layout of the case,
        lengths `None` or an array, one `(c, h)` or `None` per direction,
        and loss weights for each output and then each state part.
    """
    valid = valid_steps(case)
    x = padded_inputs(rng, case.batch, case.time, case.depth, valid,
                      case.dtype)
    states = initial_states(case, rng, output_size)
    lengths = None
    if case.lengths is not None:
        lengths = np.array(case.lengths, case.lengths_dtype)
    directions = len(case.given_states)
    output_shape = [case.batch, case.time, output_size]
    if case.time_major:
        x = x.transpose(1, 0, 2)
        output_shape = [case.time, case.batch, output_size]
    state_shapes = [[case.batch, case.units], [case.batch, output_size]]
    shapes = [output_shape] * directions + state_shapes * directions
    loss_weights = [rng.normal(size=s).astype(case.dtype) for s in shapes]
    return x, lengths, states, loss_weights


def reference_driver(case, v1_cells, x, states):
    """Runs a driver case on the NumPy model.

    Returns:
        `(outputs, state parts)` as lists, outputs in the case's layout.
    """
    batch_major = x.transpose(1, 0, 2) if case.time_major else x
    output_size = v1_cells[0].output_size
    zero_state = (np.zeros([case.batch, case.units]),
                  np.zeros([case.batch, output_size]))
    states = [zero_state if s is None else s for s in states]
    activation = V1_NUMPY_ACTIVATIONS[case.options.get("activation")]
    weights = [
        v1_numpy_weights(cell, case.depth, case.options) for cell in v1_cells
    ]
    valid = valid_steps(case)
    if len(v1_cells) == 1:
        output, c, h = reference_rnn(
            batch_major, valid, *states[0], weights[0], case.options,
            activation,
        )
        outputs, parts = [output], [c, h]
    else:
        outputs, parts = reference_bidirectional(
            batch_major, valid, states, weights, case.options, activation
        )
    if case.time_major:
        outputs = [o.transpose(1, 0, 2) for o in outputs]
    return outputs, parts


def driver_names(case, cells):
    """Names the outputs, state parts and gradients of a driver case."""
    prefixes = ["fw ", "bw "] if len(cells) == 2 else [""]
    outputs = [f"{p}outputs" for p in prefixes]
    states = [f"{p}state.{part}" for p in prefixes for part in "ch"]
    given = np.repeat(case.given_states, 2)
    grads = ["d/d inputs"]
    grads += [f"d/d initial {s}" for s, g in zip(states, given) if g]
    grads += [
        f"d/d {p}{w.name}" for p, cell in zip(prefixes, cells)
        for w in cell.trainable_weights
    ]
    return outputs, states, grads


def check_driver(case):
    """Runs an `RnnCase` on lstmkit, the v1 built-in and the NumPy model."""
    rng = np.random.default_rng(case.seed)
    v1_cells, cells = make_cells(case, rng)
    for cell in cells:
        dtypes = {w.dtype for w in cell.weights}
        assert dtypes == {case.dtype}, (
            f"{cell.name}: variables in {dtypes}, expected {case.dtype}"
        )
    arrays = driver_arrays(case, rng, cells[0].output_size)
    implementation = "auto" if case.via_auto else case.kernel

    ours = run_driver(lstmkit, cells, case, arrays, implementation,
                      case.traced)
    v1 = run_driver(tf.compat.v1.nn, v1_cells, case, arrays)
    numpy_outputs, numpy_states = reference_driver(
        case, v1_cells, arrays[0], arrays[2]
    )

    for cell in cells:
        chosen = lstmkit.kernels.explain(cell).kernel
        assert chosen == case.kernel, (
            f"{cell.name} ran {chosen} for implementation="
            f"{implementation!r}, expected {case.kernel}"
        )
    outputs, states, grads = driver_names(case, cells)
    assert_all_close(ours[0], v1[0], outputs, case.dtype, "values", "vs v1")
    assert_all_close(ours[1], v1[1], states, case.dtype, "values", "vs v1")
    assert_all_close(ours[2], v1[2], grads, case.dtype, "gradients",
                     "vs v1")
    assert_all_close(ours[0], numpy_outputs, outputs, case.dtype,
                     "reference", "vs NumPy")
    assert_all_close(ours[1], numpy_states, states, case.dtype, "reference",
                     "vs NumPy")


# Regression: the v1 cell reads "hard_sigmoid" as tf_keras'
# clip(0.2 x + 0.5, 0, 1), not as Keras 3's clip(x / 6 + 0.5, 0, 1).
HARD_SIGMOID_CASE = strategies.RnnCase(
    batch=3, time=4, depth=2, units=3, dtype="float32", time_major=False,
    lengths=(4, 0, 2), lengths_dtype="int32", given_states=(True,),
    options={"activation": "hard_sigmoid"}, dtype_from_inputs=False,
    traced=False, kernel="derived", via_auto=False, seed=1,
)
# One case per kernel, so that every CI run covers each of them.
FUSED_CASE = strategies.RnnCase(
    batch=2, time=3, depth=3, units=2, dtype="float64", time_major=True,
    lengths=(0, 3), lengths_dtype="int64", given_states=(True,),
    options={"forget_bias": 0.0}, dtype_from_inputs=True, traced=True,
    kernel="fused_lstm", via_auto=True, seed=2,
)
AUTODIFF_CASE = strategies.RnnCase(
    batch=2, time=5, depth=1, units=3, dtype="float32", time_major=False,
    lengths=(5, 1), lengths_dtype="int32", given_states=(False,),
    options={
        "use_peepholes": True, "cell_clip": 0.3, "num_proj": 2,
        "proj_clip": 0.2, "forget_bias": -1.5, "activation": "softsign",
    },
    dtype_from_inputs=False, traced=False, kernel="autodiff",
    via_auto=False, seed=3,
)


@CI_SETTINGS
@given(case=strategies.rnn_cases())
@example(case=HARD_SIGMOID_CASE)
@example(case=FUSED_CASE)
@example(case=AUTODIFF_CASE)
def test_dynamic_rnn_matches_references(case):
    check_driver(case)


def bidirectional_case(case):
    """Returns `case` with an initial state for the backward cell too."""
    return dataclasses.replace(case, given_states=case.given_states * 2)


@settings(CI_SETTINGS, max_examples=4)
@given(case=strategies.rnn_cases(directions=2))
@example(case=bidirectional_case(HARD_SIGMOID_CASE))
@example(case=bidirectional_case(FUSED_CASE))
@example(case=bidirectional_case(AUTODIFF_CASE))
def test_bidirectional_matches_references(case):
    check_driver(case)


@pytest.mark.slow
@SLOW_SETTINGS
@given(case=strategies.rnn_cases())
def test_dynamic_rnn_matches_references_slow(case):
    check_driver(case)


@pytest.mark.slow
@SLOW_SETTINGS
@given(case=strategies.rnn_cases(directions=2))
def test_bidirectional_matches_references_slow(case):
    check_driver(case)


# --- Keras layers -----------------------------------------------------------


def layer_arguments(case):
    """Returns the arguments shared by the lstmkit and Keras LSTM layers."""
    return dict(
        return_sequences=case.return_sequences,
        return_state=True,
        zero_output_for_mask=case.zero_output_for_mask,
        dtype=case.dtype,
        **cell_options(case.options),
    )


def layer_inputs(case, rng, state_count):
    """Returns inputs, the mask (or None), and initial states (or None).

    Inputs are random at valid steps and large at masked ones; the masks
    keep them out.
    """
    valid = np.ones([case.batch, case.time], bool)
    if case.valid is not None:
        valid = np.array(case.valid, bool)
    x = padded_inputs(rng, case.batch, case.time, case.depth, valid,
                      case.dtype)
    states = None
    if case.given_state:
        states = [
            rng.normal(size=[case.batch, case.units]).astype(case.dtype)
            for _ in range(state_count)
        ]
    return x, valid, states


def run_layer(layer, x, case, states, loss_rng):
    """Calls `layer` under a tape with `case`'s mask or lengths.

    Returns:
        `(outputs, gradients)` as NumPy arrays, the gradients of a random
        weighted loss over every output with respect to the inputs, the
        initial states and every weight.
    """
    x = tf.constant(x)
    states = None if states is None else [tf.constant(s) for s in states]
    call = {"initial_state": states}
    if case.valid is not None and case.as_lengths:
        call["sequence_length"] = np.sum(case.valid, axis=1, dtype=np.int32)
    elif case.valid is not None:
        call["mask"] = tf.constant(np.array(case.valid, bool))
    with tf.GradientTape() as tape:
        tape.watch([x, *(states or [])])
        outputs = layer(x, **call)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        outputs = list(outputs)
        loss_weights = [
            loss_rng.normal(size=o.shape).astype(case.dtype) for o in outputs
        ]
        loss = weighted_loss(outputs, loss_weights)
    grads = gradients(
        tape, loss, [x, *(states or []), *layer.trainable_weights]
    )
    return [np.asarray(o) for o in outputs], grads


def build_pair(reference, ours, case, rng):
    """Builds both layers and copies random weights from `reference`."""
    shape = (case.batch, case.time, case.depth)
    reference.build(shape)
    randomize(reference.weights, rng)
    ours.build(shape)
    ours.set_weights(reference.get_weights())


def layer_names(layer, outputs, states):
    """Names outputs, states and gradient sources for messages."""
    grads = ["d/d inputs"] + [f"d/d initial {s}" for s in states]
    return outputs + states, grads + [
        f"d/d {w.path}" for w in layer.trainable_weights
    ]


def keras_reference(case, x, valid, states, weights, carry):
    """Runs one Keras-semantics direction of the NumPy model.

    Returns:
        `(outputs in reading order, last output, h, c)`.
    """
    if states is None:
        states = [np.zeros([case.batch, case.units])] * 2
    h0, c0 = states
    if case.go_backwards:
        x, valid = x[:, ::-1], valid[:, ::-1]
    activation = KERAS_NUMPY_ACTIVATIONS[case.options["activation"]]
    outputs, c, h = reference_rnn(
        x, valid, c0, h0, weights, {"forget_bias": 0.0}, activation,
        carry_output=carry,
    )
    return outputs, outputs[:, -1], h, c


def check_keras_lstm(case):
    """Compares `lstmkit.layers.LSTM` with `keras.layers.LSTM` and NumPy."""
    rng = np.random.default_rng(case.seed)
    arguments = layer_arguments(case)
    arguments["go_backwards"] = case.go_backwards
    reference = keras.layers.LSTM(case.units, **arguments)
    ours = lstmkit.layers.LSTM(case.units, **arguments)
    build_pair(reference, ours, case, rng)
    x, valid, states = layer_inputs(case, rng, 2)

    with lstmkit.kernels.use(case.kernel):
        actual = run_layer(ours, x, case, states, np.random.default_rng(1))
    expected = run_layer(reference, x, case, states,
                         np.random.default_rng(1))
    chosen = lstmkit.kernels.explain(ours.cell).kernel
    assert chosen == case.kernel, f"ran {chosen}, not {case.kernel}"

    outputs, grads = layer_names(ours, ["output"], ["h", "c"])
    if not case.given_state:
        grads = grads[:1] + grads[3:]
    assert_all_close(actual[0], expected[0], outputs, case.dtype, "values",
                     "vs Keras")
    assert_all_close(actual[1], expected[1], grads, case.dtype, "gradients",
                     "vs Keras")

    weights = keras_numpy_weights(reference.get_weights())
    sequence, last, h, c = keras_reference(
        case, x, valid, states, weights, not case.zero_output_for_mask
    )
    output = sequence if case.return_sequences else last
    assert_all_close(actual[0], [output, h, c], outputs, case.dtype,
                     "reference", "vs NumPy")


def check_keras_bidirectional(case):
    """Compares `lstmkit.layers.Bidirectional` with Keras' and NumPy.

    `case.go_backwards` is not used: Keras 3.15 rejects a wrapped layer
    that reads backward unless a backward layer is given too.
    """
    rng = np.random.default_rng(case.seed)
    arguments = layer_arguments(case)
    # Without its own dtype, Keras' wrapper casts the merged output to
    # float32 even when the wrapped layers compute in float64.
    reference = keras.layers.Bidirectional(
        keras.layers.LSTM(case.units, **arguments),
        merge_mode=case.merge_mode,
        dtype=case.dtype,
    )
    ours = lstmkit.layers.Bidirectional(
        lstmkit.layers.LSTM(case.units, **arguments),
        merge_mode=case.merge_mode,
        dtype=case.dtype,
    )
    build_pair(reference, ours, case, rng)
    x, valid, states = layer_inputs(case, rng, 4)

    with lstmkit.kernels.use(case.kernel):
        actual = run_layer(ours, x, case, states, np.random.default_rng(1))
    expected = run_layer(reference, x, case, states,
                         np.random.default_rng(1))
    for layer in (ours.forward_layer, ours.backward_layer):
        chosen = lstmkit.kernels.explain(layer.cell).kernel
        assert chosen == case.kernel, f"ran {chosen}, not {case.kernel}"

    merged = ["output"] if case.merge_mode else ["output_fw", "output_bw"]
    state_names = ["h_fw", "c_fw", "h_bw", "c_bw"]
    outputs, grads = layer_names(ours, merged, state_names)
    if not case.given_state:
        grads = grads[:1] + grads[5:]
    assert_all_close(actual[0], expected[0], outputs, case.dtype, "values",
                     "vs Keras")
    assert_all_close(actual[1], expected[1], grads, case.dtype, "gradients",
                     "vs Keras")

    # Keras' Bidirectional sets zero_output_for_mask to return_sequences
    # in both copies.
    carry = not case.return_sequences
    halves = []
    for index, layer in enumerate((reference.forward_layer,
                                   reference.backward_layer)):
        direction_case = dataclasses.replace(case, go_backwards=index == 1)
        given = None if states is None else states[2 * index:2 * index + 2]
        weights = keras_numpy_weights(layer.get_weights())
        halves.append(keras_reference(
            direction_case, x, valid, given, weights, carry
        ))
    (seq_fw, last_fw, h_fw, c_fw), (seq_bw, last_bw, h_bw, c_bw) = halves
    if case.return_sequences:
        output = merge(seq_fw, seq_bw[:, ::-1], case.merge_mode)
    else:
        output = merge(last_fw, last_bw, case.merge_mode)
    assert_all_close(actual[0], output + [h_fw, c_fw, h_bw, c_bw], outputs,
                     case.dtype, "reference", "vs NumPy")


# Regression: with zero_output_for_mask and without return_sequences,
# Keras returns zeros for a row whose last step in reading order is
# masked, not the last valid output. Keras' Bidirectional also resets
# zero_output_for_mask to return_sequences in both copies.
ZERO_LAST_OUTPUT_CASE = strategies.LayerCase(
    batch=3, time=4, depth=2, units=3, dtype="float32",
    valid=(
        (True, True, True, False),
        (False, True, True, True),
        (True, False, True, False),
    ),
    as_lengths=False, given_state=True, return_sequences=False,
    go_backwards=False, zero_output_for_mask=True, merge_mode="concat",
    options={"activation": "tanh"}, kernel="fused_lstm", seed=4,
)


@CI_SETTINGS
@given(case=strategies.layer_cases())
@example(case=ZERO_LAST_OUTPUT_CASE)
@example(case=dataclasses.replace(
    ZERO_LAST_OUTPUT_CASE, go_backwards=True, kernel="derived"
))
def test_keras_lstm_matches_references(case):
    check_keras_lstm(case)


@CI_SETTINGS
@given(case=strategies.layer_cases())
@example(case=dataclasses.replace(ZERO_LAST_OUTPUT_CASE, merge_mode=None))
def test_keras_bidirectional_matches_references(case):
    check_keras_bidirectional(case)


@pytest.mark.slow
@SLOW_SETTINGS
@given(case=strategies.layer_cases())
def test_keras_lstm_matches_references_slow(case):
    check_keras_lstm(case)


@pytest.mark.slow
@SLOW_SETTINGS
@given(case=strategies.layer_cases())
def test_keras_bidirectional_matches_references_slow(case):
    check_keras_bidirectional(case)


# --- Layers with "tf1" semantics --------------------------------------------


def make_tf1_layer(case, bidirectional, rng):
    """Builds a "tf1"-semantics layer and v1 cells sharing random weights.

    Returns:
        `(layer, v1_cells)`, one v1 cell per direction.
    """
    options = cell_options(case.options)
    layer = lstmkit.layers.LSTM(
        case.units,
        semantics="tf1",
        return_sequences=case.return_sequences,
        return_state=True,
        dtype=case.dtype,
        **options,
    )
    if bidirectional:
        layer = lstmkit.layers.Bidirectional(
            layer, merge_mode=case.merge_mode, dtype=case.dtype
        )
    layer.build((case.batch, case.time, case.depth))
    v1_cells = []
    for _ in range(2 if bidirectional else 1):
        cell = build_v1_cell(case.depth, case.units, case.dtype, **options)
        randomize(cell.weights, rng)
        v1_cells.append(cell)
    layer.set_weights([w for cell in v1_cells for w in cell.get_weights()])
    return layer, v1_cells


def layer_results(case, halves, finals):
    """Arranges results as a "tf1" layer returns them.

    Args:
        halves: per direction, the output sequence.
        finals: per direction, the final `(h, c)`.

    Returns:
        The merged output (two with merge mode `None`), then h and c of
        each direction.
    """
    if not case.return_sequences:
        halves = [h for h, _ in finals]
    if len(halves) == 2:
        halves = merge(*halves, case.merge_mode)
    return list(halves) + [part for final in finals for part in final]


def run_v1_as_layer(case, v1_cells, x, states, loss_rng):
    """Runs the v1 driver and arranges its results as the layer's.

    Returns:
        `(results, gradients)` as in `run_layer`, the gradients of the
        initial states in Keras' order `[h, c]` per direction.
    """
    directions = len(v1_cells)
    lengths = np.sum(case.valid, axis=1, dtype=np.int32)
    v1_states = [None] * directions
    if states is not None:
        # Keras' order [h, c] per direction to v1's (c, h).
        v1_states = [
            V1LSTMStateTuple(
                tf.constant(states[2 * d + 1]), tf.constant(states[2 * d])
            )
            for d in range(directions)
        ]
    x = tf.constant(x)
    sources = [x] + [part for s in v1_states if s is not None for part in s]
    with tf.GradientTape() as tape:
        tape.watch(sources)
        if directions == 2:
            outputs, finals = tf.compat.v1.nn.bidirectional_dynamic_rnn(
                *v1_cells, x, sequence_length=lengths,
                initial_state_fw=v1_states[0], initial_state_bw=v1_states[1],
                dtype=case.dtype,
            )
        else:
            output, final = tf.compat.v1.nn.dynamic_rnn(
                v1_cells[0], x, sequence_length=lengths,
                initial_state=v1_states[0], dtype=case.dtype,
            )
            outputs, finals = [output], [final]
        results = layer_results(
            case, outputs, [(final.h, final.c) for final in finals]
        )
        loss_weights = [
            loss_rng.normal(size=r.shape).astype(case.dtype) for r in results
        ]
        loss = weighted_loss(results, loss_weights)
    weights = [w for cell in v1_cells for w in cell.trainable_weights]
    grads = gradients(tape, loss, sources + weights)
    if states is not None:
        # v1's (c, h) gradients back to Keras' [h, c] order.
        for d in range(directions):
            index = 1 + 2 * d
            grads[index], grads[index + 1] = grads[index + 1], grads[index]
    return [np.asarray(r) for r in results], grads


def reference_tf1_layer(case, v1_cells, x, states):
    """Runs a "tf1" layer case on the NumPy model, arranged as the layer's."""
    directions = len(v1_cells)
    output_size = v1_cells[0].output_size
    valid = np.array(case.valid, bool)
    activation = V1_NUMPY_ACTIVATIONS[case.options.get("activation")]
    weights = [v1_numpy_weights(c, case.depth, case.options) for c in v1_cells]
    numpy_states = [(np.zeros([case.batch, case.units]),
                     np.zeros([case.batch, output_size]))] * directions
    if states is not None:
        numpy_states = [(states[2 * d + 1], states[2 * d])
                        for d in range(directions)]
    if directions == 2:
        sequences, parts = reference_bidirectional(
            x, valid, numpy_states, weights, case.options, activation
        )
    else:
        sequence, c, h = reference_rnn(
            x, valid, *numpy_states[0], weights[0], case.options, activation
        )
        sequences, parts = [sequence], [c, h]
    finals = [(parts[2 * d + 1], parts[2 * d]) for d in range(directions)]
    return layer_results(case, sequences, finals)


def check_tf1_layer(case, bidirectional):
    """Compares "tf1"-semantics layers with the v1 drivers and NumPy."""
    rng = np.random.default_rng(case.seed)
    layer, v1_cells = make_tf1_layer(case, bidirectional, rng)
    output_size = v1_cells[0].output_size
    valid = np.array(case.valid, bool)
    x = padded_inputs(rng, case.batch, case.time, case.depth, valid,
                      case.dtype)
    states = None
    if case.given_state:
        sizes = [output_size, case.units] * len(v1_cells)
        states = [
            rng.normal(size=[case.batch, size]).astype(case.dtype)
            for size in sizes
        ]

    with lstmkit.kernels.use(case.kernel):
        actual = run_layer(layer, x, case, states, np.random.default_rng(2))
    expected = run_v1_as_layer(case, v1_cells, x, states,
                               np.random.default_rng(2))
    numpy_results = reference_tf1_layer(case, v1_cells, x, states)

    output_names = ["output"]
    if bidirectional and case.merge_mode is None:
        output_names = ["output_fw", "output_bw"]
    state_names = ["h", "c"]
    if bidirectional:
        state_names = ["h_fw", "c_fw", "h_bw", "c_bw"]
    names, grad_names = layer_names(layer, output_names, state_names)
    if states is None:
        grad_names = grad_names[:1] + grad_names[1 + len(state_names):]
    assert_all_close(actual[0], expected[0], names, case.dtype, "values",
                     "vs v1")
    assert_all_close(actual[1], expected[1], grad_names, case.dtype,
                     "gradients", "vs v1")
    assert_all_close(actual[0], numpy_results, names, case.dtype,
                     "reference", "vs NumPy")


@pytest.mark.parametrize("bidirectional", [False, True])
@settings(CI_SETTINGS, max_examples=3)
@given(data=st.data())
def test_tf1_layers_match_references(bidirectional, data):
    case = data.draw(strategies.layer_cases("tf1"), label="case")
    check_tf1_layer(case, bidirectional)


@pytest.mark.slow
@pytest.mark.parametrize("bidirectional", [False, True])
@SLOW_SETTINGS
@given(data=st.data())
def test_tf1_layers_match_references_slow(bidirectional, data):
    case = data.draw(strategies.layer_cases("tf1"), label="case")
    check_tf1_layer(case, bidirectional)


def test_v1_gru_hard_sigmoid_matches_v1():
    """V1GRUCell reads activation names as the v1 GRUCell does."""
    from tf_keras.src.layers.rnn.legacy_cells import GRUCell as V1GRUCell

    rng = np.random.default_rng(5)
    x = tf.constant(rng.normal(size=[2, 3, 4]), tf.float32)
    with warnings.catch_warnings():
        # The v1 cell warns on every construction that it is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        v1 = V1GRUCell(3, activation="hard_sigmoid")
    v1(x[:, 0], v1.zero_state(2, tf.float32))
    randomize(v1.weights, rng)
    ours = lstmkit.V1GRUCell(3, activation="hard_sigmoid")
    ours.build((4,))
    ours.set_weights(v1.get_weights())

    expected, _ = tf.compat.v1.nn.dynamic_rnn(v1, x, dtype=tf.float32)
    actual, _ = lstmkit.dynamic_rnn(ours, x)

    assert_all_close([actual], [expected], ["outputs"], "float32", "values",
                     "V1GRUCell hard_sigmoid vs v1")
