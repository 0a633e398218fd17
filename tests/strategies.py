"""Hypothesis strategies for the property-based parity tests.

Each strategy draws one frozen case: sizes, lengths or a step mask, dtype,
layout, initial states, cell options and the time-loop kernel. Array values
(inputs, weights, states) are not drawn element by element. They come from
a NumPy generator seeded by the case's `seed`, so a failing case stays
small to print and shrinks to seed 0.
"""

import dataclasses

from hypothesis import strategies as st

# Kept small: XLA compiles the fused and derived kernels once per new
# shape and cell, and compilation dominates the run time.
BATCH_SIZES = st.integers(1, 4)
TIME_STEPS = st.integers(1, 6)
INPUT_DEPTHS = st.integers(1, 5)
UNITS = st.integers(1, 5)
DTYPES = st.sampled_from(["float32", "float64"])
SEEDS = st.integers(0, 2**16)

KERNELS = ("fused_lstm", "derived", "autodiff")

# Activation names that mean the same function to the v1 cell (tf_keras)
# and to lstmkit, plus one callable. The fused kernel runs only tanh.
V1_ACTIVATIONS = (None, "tanh", "softsign", "sigmoid", "hard_sigmoid",
                  "tf.nn.softsign")
TANH_ACTIVATIONS = (None, "tanh")
# `activation` of keras.layers.LSTM; the gates stay sigmoid.
KERAS_ACTIVATIONS = ("tanh", "softsign", "sigmoid", "hard_sigmoid")

MERGE_MODES = ("concat", "sum", "ave", "mul", None)


@dataclasses.dataclass(frozen=True)
class RnnCase:
    """One draw for `lstmkit.dynamic_rnn` or `bidirectional_dynamic_rnn`.

    Attributes:
        batch, time, depth, units: sizes; inputs are `[batch, time, depth]`
            (`[time, batch, depth]` when `time_major`).
        dtype: "float32" or "float64", of inputs, weights and states.
        time_major: layout of inputs and outputs.
        lengths: `sequence_length` as a tuple, or `None` to pass none.
        lengths_dtype: "int32" or "int64".
        given_states: per direction, whether an initial state is passed.
        options: `LSTMCell` constructor options, the same for both cells.
        dtype_from_inputs: create the lstmkit cell without `dtype=`, so that
            it takes the dtype of its first inputs.
        traced: run lstmkit inside `tf.function` instead of eagerly.
        kernel: the kernel lstmkit must run, a name from `KERNELS`.
        via_auto: pass `implementation="auto"`, which must choose
            `kernel`, instead of naming the kernel.
        seed: seed of the NumPy generator for every array of the case.
    """

    batch: int
    time: int
    depth: int
    units: int
    dtype: str
    time_major: bool
    lengths: tuple | None
    lengths_dtype: str
    given_states: tuple
    options: dict
    dtype_from_inputs: bool
    traced: bool
    kernel: str
    via_auto: bool
    seed: int


@dataclasses.dataclass(frozen=True)
class LayerCase:
    """One draw for the Keras layers `lstmkit.layers.LSTM`/`Bidirectional`.

    Attributes:
        batch, time, depth, units, dtype: as in `RnnCase`.
        valid: `[batch][time]` tuple of bools, True at valid steps, or
            `None` for no mask.
        as_lengths: pass `valid` as `sequence_length` (it is then right
            padding) instead of `mask`.
        given_state: whether an initial state is passed.
        return_sequences, go_backwards, zero_output_for_mask: the layer
            arguments of the same names. The Bidirectional and "tf1"
            tests leave `go_backwards` unused, and the "tf1" tests also
            `zero_output_for_mask`, which "tf1" semantics ignores.
        merge_mode: `Bidirectional`'s merge mode.
        options: cell options; for "keras" semantics only `activation`,
            for "tf1" semantics every `LSTMCell` option.
        kernel: the kernel forced with `lstmkit.kernels.use`.
        seed: as in `RnnCase`.
    """

    batch: int
    time: int
    depth: int
    units: int
    dtype: str
    valid: tuple | None
    as_lengths: bool
    given_state: bool
    return_sequences: bool
    go_backwards: bool
    zero_output_for_mask: bool
    merge_mode: str | None
    options: dict
    kernel: str
    seed: int


def lengths(batch: int, time: int) -> st.SearchStrategy:
    """Draws `batch` lengths in `[0, time]`, with 0 and `time` favoured."""
    length = st.one_of(st.just(0), st.just(time), st.integers(0, time))
    return st.tuples(*[length] * batch)


def step_masks(batch: int, time: int) -> st.SearchStrategy:
    """Draws a `[batch][time]` bool mask: right, left padding or any."""
    row = st.lists(st.booleans(), min_size=time, max_size=time).map(tuple)
    right = lengths(batch, time).map(
        lambda sizes: tuple(
            tuple(t < size for t in range(time)) for size in sizes
        )
    )
    left = right.map(lambda mask: tuple(row[::-1] for row in mask))
    holes = st.tuples(*[row] * batch)
    return st.one_of(right, left, holes)


def clip_values(low: float, high: float) -> st.SearchStrategy:
    """Draws a clip value with two decimals, so repr stays readable."""
    return st.floats(low, high).map(lambda value: round(value, 2))


@st.composite
def lstm_options(draw, kernel: str = "autodiff") -> dict:
    """Draws `LSTMCell` options that `kernel` accepts.

    Options at their default value are left out, so a printed case lists
    only what differs. "fused_lstm" accepts only tanh without peepholes,
    clipping or projection, so only `forget_bias` varies for it.
    """
    options = {}
    forget_bias = draw(st.sampled_from([1.0, 0.0, 0.5, -1.5]))
    if forget_bias != 1.0:
        options["forget_bias"] = forget_bias
    if kernel == "fused_lstm":
        activation = draw(st.sampled_from(TANH_ACTIVATIONS))
    else:
        activation = draw(st.sampled_from(V1_ACTIVATIONS))
    if activation is not None:
        options["activation"] = activation
    if kernel == "fused_lstm":
        return options

    if draw(st.booleans()):
        options["use_peepholes"] = True
    if draw(st.booleans()):
        options["cell_clip"] = draw(clip_values(0.05, 2.0))
    if draw(st.booleans()):
        options["num_proj"] = draw(st.integers(1, 4))
        if draw(st.booleans()):
            options["proj_clip"] = draw(clip_values(0.05, 1.0))
    return options


@st.composite
def rnn_cases(draw, directions: int = 1):
    """Draws an `RnnCase` with a kernel and options that the kernel runs.

    With `via_auto` the options are those that "auto" runs on the kernel:
    fused_lstm's for "fused_lstm", and for "derived" at least one option
    that fused_lstm rejects. "auto" never chooses "autodiff" for a float32
    or float64 LSTM, so that kernel is always named.

    Args:
        directions: 1 for `dynamic_rnn`, 2 for `bidirectional_dynamic_rnn`.
    """
    batch = draw(BATCH_SIZES)
    time = draw(TIME_STEPS)
    with_lengths = draw(st.booleans())
    kernel = draw(st.sampled_from(KERNELS))
    via_auto = kernel != "autodiff" and draw(st.booleans())
    options = draw(lstm_options(kernel))
    if via_auto and kernel == "derived" and fused_accepts(options):
        options["use_peepholes"] = True
    return RnnCase(
        batch=batch,
        time=time,
        depth=draw(INPUT_DEPTHS),
        units=draw(UNITS),
        dtype=draw(DTYPES),
        time_major=draw(st.booleans()),
        lengths=draw(lengths(batch, time)) if with_lengths else None,
        lengths_dtype=draw(st.sampled_from(["int32", "int64"])),
        given_states=tuple(draw(st.booleans()) for _ in range(directions)),
        options=options,
        dtype_from_inputs=draw(st.booleans()),
        traced=draw(st.booleans()),
        kernel=kernel,
        via_auto=via_auto,
        seed=draw(SEEDS),
    )


def fused_accepts(options: dict) -> bool:
    """Returns whether the fused_lstm kernel runs a cell with `options`."""
    rejected = {"use_peepholes", "cell_clip", "num_proj"}
    tanh = options.get("activation") in TANH_ACTIVATIONS
    return tanh and rejected.isdisjoint(options)


@st.composite
def layer_cases(draw, semantics: str = "keras"):
    """Draws a `LayerCase` for layers with `semantics` "keras" or "tf1".

    With "tf1" the step mask is always right padding given as
    `sequence_length`, the form `tf.compat.v1.nn.dynamic_rnn` takes.
    """
    batch = draw(BATCH_SIZES)
    time = draw(TIME_STEPS)
    kernel = draw(st.sampled_from(KERNELS))
    if semantics == "tf1":
        sizes = draw(lengths(batch, time))
        valid = tuple(tuple(t < size for t in range(time)) for size in sizes)
        as_lengths = True
        options = draw(lstm_options(kernel))
    else:
        valid = draw(st.one_of(st.none(), step_masks(batch, time)))
        as_lengths = False
        activations = KERAS_ACTIVATIONS
        if kernel == "fused_lstm":
            activations = ("tanh",)
        options = {"activation": draw(st.sampled_from(activations))}
    return LayerCase(
        batch=batch,
        time=time,
        depth=draw(INPUT_DEPTHS),
        units=draw(UNITS),
        dtype=draw(DTYPES),
        valid=valid,
        as_lengths=as_lengths,
        given_state=draw(st.booleans()),
        return_sequences=draw(st.booleans()),
        go_backwards=draw(st.booleans()),
        zero_output_for_mask=draw(st.booleans()),
        merge_mode=draw(st.sampled_from(MERGE_MODES)),
        options=options,
        kernel=kernel,
        seed=draw(SEEDS),
    )
