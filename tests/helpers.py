"""Shared test helpers: paired v1 and lstmkit cells, float64 NumPy
references of the v1 LSTM, and the tolerances used to compare them."""

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tf_keras.src.layers.rnn.legacy_cells import (  # noqa: E402
    LSTMCell as V1LSTMCell,
)
from tf_keras.src.layers.rnn.legacy_cells import (  # noqa: E402
    LSTMStateTuple as V1LSTMStateTuple,
)

import lstmkit  # noqa: E402

# With Keras 3 installed, tf.compat.v1.nn.rnn_cell.LSTMStateTuple raises
# AttributeError, so V1LSTMStateTuple is imported from tf_keras. It is the
# class that the v1 cell itself returns.

# Max abs difference of float32 outputs and states against the v1 built-in.
# lstmkit computes x @ W_x + h @ W_h where v1 multiplies concat([x, h]) by the
# whole kernel, so the float32 sums round in a different order.
FLOAT32_ATOL = 1e-6
# Float32 gradients against the v1 built-in: relative, plus an absolute
# floor for elements near zero, where a relative bound means nothing.
FLOAT32_GRAD_RTOL = 1e-5
FLOAT32_GRAD_ATOL = 1e-6
# Float64 outputs, states and gradients, against the v1 built-in in float64
# and against the NumPy reference.
FLOAT64_ATOL = 1e-12

# Constructor options shared by the parity and cell tests. Each clip is
# small enough to be hit by the random weights of make_cell_pair.
OPTION_CASES = {
    "default": {},
    "peepholes": {"use_peepholes": True},
    "cell_clip": {"cell_clip": 0.3},
    "num_proj": {"num_proj": 3},
    "proj_clip": {"num_proj": 3, "proj_clip": 0.2},
    "forget_bias_0": {"forget_bias": 0.0},
    "activation": {"activation": "softsign"},
    "all": {
        "use_peepholes": True,
        "cell_clip": 0.5,
        "num_proj": 3,
        "proj_clip": 0.4,
        "forget_bias": 0.5,
        "activation": "softsign",
    },
}

NUMPY_ACTIVATIONS = {
    None: np.tanh,
    "tanh": np.tanh,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
}

# Largest difference seen per category, filled by assert_close. A script
# can run pytest in-process and print it after the run.
MEASURED_MAX = {}


def weight_names(options: dict) -> list[str]:
    """Returns the variable names of an LSTM cell, in `cell.weights` order."""
    names = ["kernel", "bias"]
    if options.get("use_peepholes"):
        names += ["w_f_diag", "w_i_diag", "w_o_diag"]
    if options.get("num_proj") is not None:
        names.append("projection_kernel")
    return names


def build_v1_cell(input_depth, num_units, dtype="float32", **options):
    """Creates a v1 cell and builds it by running one step on zeros."""
    with warnings.catch_warnings():
        # The v1 cell warns on every construction that it is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        cell = V1LSTMCell(num_units, **options)
    cell(tf.zeros([1, input_depth], dtype), cell.zero_state(1, dtype))
    return cell


def randomize_weights(cell, seed):
    """Assigns random values to every weight of a built v1 cell.

    Every element is drawn from +-[0.1, 0.8] with a random sign, so no
    weight (the bias included) is zero or close to it and a missing or
    misplaced term changes the result.
    """
    rng = np.random.default_rng(seed)
    for variable in cell.weights:
        shape = variable.shape
        magnitude = rng.uniform(0.1, 0.8, size=shape)
        sign = rng.choice([-1.0, 1.0], size=shape)
        values = magnitude * sign
        variable.assign(values.astype(variable.dtype.as_numpy_dtype))


def make_cell_pair(
    input_depth,
    num_units,
    seed=0,
    dtype="float32",
    ours_dtype="argument",
    **options,
):
    """Builds a v1 cell and an lstmkit cell that share random weights.

    Args:
        input_depth: depth of the inputs the cells are built for.
        num_units: `num_units` of both cells.
        seed: seed of the random weights.
        dtype: dtype of the variables of both cells.
        ours_dtype: "argument" creates the lstmkit cell with `dtype=dtype`;
            "inputs" creates it without `dtype=` and lets
            `lstmkit.dynamic_rnn` build it from inputs of `dtype`.
        **options: `LSTMCell` options passed to both constructors.

    Returns:
        `(v1_cell, lstmkit_cell)`, both built.
    """
    v1 = build_v1_cell(input_depth, num_units, dtype=dtype, **options)
    randomize_weights(v1, seed)
    if ours_dtype == "argument":
        ours = lstmkit.LSTMCell(num_units, dtype=dtype, **options)
        ours.build((input_depth,))
    elif ours_dtype == "inputs":
        ours = lstmkit.LSTMCell(num_units, **options)
        lstmkit.dynamic_rnn(ours, tf.zeros([1, 1, input_depth], dtype))
    else:
        raise ValueError(f"unknown ours_dtype={ours_dtype!r}")
    ours.set_weights(v1.get_weights())
    return v1, ours


def cell_weights_by_name(cell, options) -> dict:
    """Returns a cell's weights as float64 arrays keyed by variable name."""
    arrays = [np.asarray(w, np.float64) for w in cell.get_weights()]
    return dict(zip(weight_names(options), arrays))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm_step(x, c, h, weights, options):
    """Runs one step of the v1 LSTMCell in float64.

    Args:
        x: `[batch, input_depth]`.
        c, h: previous state, `[batch, num_units]` and `[batch, h_depth]`.
        weights: arrays keyed by variable name, see `cell_weights_by_name`.
        options: the cell's constructor options.

    Returns:
        `(output, c_new, h_new)`; output and h_new are the same array.
    """
    activation = NUMPY_ACTIVATIONS[options.get("activation")]
    forget_bias = options.get("forget_bias", 1.0)
    z = np.concatenate([x, h], axis=1) @ weights["kernel"] + weights["bias"]
    i, j, f, o = np.split(z, 4, axis=1)
    if options.get("use_peepholes"):
        f = f + weights["w_f_diag"] * c
        i = i + weights["w_i_diag"] * c
    c_new = sigmoid(f + forget_bias) * c + sigmoid(i) * activation(j)
    cell_clip = options.get("cell_clip")
    if cell_clip is not None:
        c_new = np.clip(c_new, -cell_clip, cell_clip)
    if options.get("use_peepholes"):
        # The output gate's peephole reads the new, clipped cell state.
        o = o + weights["w_o_diag"] * c_new
    m = sigmoid(o) * activation(c_new)
    if options.get("num_proj") is not None:
        m = m @ weights["projection_kernel"]
        proj_clip = options.get("proj_clip")
        if proj_clip is not None:
            m = np.clip(m, -proj_clip, proj_clip)
    return m, c_new, m


def numpy_dynamic_rnn(
    x, weights, options, lengths=None, initial_state=None, time_major=False
):
    """Runs the v1 `dynamic_rnn` in float64.

    Steps at `t >= length` output zeros and keep the previous state.

    Returns:
        `(outputs, (c, h))` with outputs in the layout of `x`.
    """
    x = np.asarray(x, np.float64)
    if not time_major:
        x = x.transpose(1, 0, 2)
    time, batch, _ = x.shape
    num_units = weights["bias"].shape[0] // 4
    h_depth = weights["kernel"].shape[0] - x.shape[2]
    if initial_state is None:
        c = np.zeros([batch, num_units])
        h = np.zeros([batch, h_depth])
    else:
        c, h = (np.asarray(part, np.float64) for part in initial_state)
    if lengths is None:
        lengths = np.full([batch], time)
    lengths = np.asarray(lengths)

    outputs = np.zeros([time, batch, h_depth])
    for t in range(time):
        output, c_new, h_new = numpy_lstm_step(x[t], c, h, weights, options)
        live = (t < lengths)[:, None]
        outputs[t] = np.where(live, output, 0.0)
        c = np.where(live, c_new, c)
        h = np.where(live, h_new, h)
    if not time_major:
        outputs = outputs.transpose(1, 0, 2)
    return outputs, (c, h)


def numpy_reverse_within_length(x, lengths, time_major=False):
    """Reverses `x[:length]` of each row and leaves the padding in place."""
    x = np.asarray(x)
    if not time_major:
        x = x.transpose(1, 0, 2)
    time = x.shape[0]
    lengths = np.full([x.shape[1]], time) if lengths is None else lengths
    reversed_x = x.copy()
    for row, length in enumerate(np.asarray(lengths)):
        reversed_x[:length, row] = x[:length, row][::-1]
    if not time_major:
        reversed_x = reversed_x.transpose(1, 0, 2)
    return reversed_x


def numpy_bidirectional_dynamic_rnn(
    x,
    weights_fw,
    weights_bw,
    options,
    lengths=None,
    initial_state_fw=None,
    initial_state_bw=None,
    time_major=False,
):
    """Runs the v1 `bidirectional_dynamic_rnn` in float64.

    Returns:
        `((output_fw, output_bw), (state_fw, state_bw))`.
    """
    output_fw, state_fw = numpy_dynamic_rnn(
        x, weights_fw, options, lengths, initial_state_fw, time_major
    )
    x_reversed = numpy_reverse_within_length(x, lengths, time_major)
    reversed_bw, state_bw = numpy_dynamic_rnn(
        x_reversed, weights_bw, options, lengths, initial_state_bw, time_major
    )
    output_bw = numpy_reverse_within_length(reversed_bw, lengths, time_major)
    return (output_fw, output_bw), (state_fw, state_bw)


def padding_mask(lengths, time):
    """Returns a `[batch, time]` bool array, True at padded steps."""
    return np.arange(time)[None, :] >= np.asarray(lengths)[:, None]


def make_padded_inputs(rng, batch, time, depth, lengths, padding):
    """Returns `[batch, time, depth]` float64 inputs with chosen padding.

    Args:
        rng: `np.random.Generator`.
        lengths: `[batch]` lengths; steps at `t >= length` are padding.
        padding: "zero", "junk" (large random values), or a float such as
            `np.nan` or `np.inf` written to every padded element.
    """
    x = rng.normal(size=[batch, time, depth])
    pad = padding_mask(lengths, time)[:, :, None]
    if padding == "zero":
        fill = np.zeros_like(x)
    elif padding == "junk":
        fill = rng.normal(scale=50.0, size=x.shape)
    else:
        fill = np.full_like(x, padding)
    return np.where(pad, fill, x)


def assert_close(actual, expected, label, atol, rtol=0.0, category=None):
    """Asserts `|actual - expected| <= atol + rtol * |expected|` elementwise.

    Records the max abs difference in `MEASURED_MAX[category]` and reports
    the worst element on failure.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (
        f"{label}: shape {actual.shape} differs from expected {expected.shape}"
    )
    diff = np.abs(actual - expected)
    allowed = atol + rtol * np.abs(expected)
    if category is not None and diff.size:
        MEASURED_MAX[category] = max(
            MEASURED_MAX.get(category, 0.0), float(diff.max())
        )
        ratio = float((diff / allowed).max())
        MEASURED_MAX[category + " (share of tolerance)"] = max(
            MEASURED_MAX.get(category + " (share of tolerance)", 0.0), ratio
        )
    if diff.size == 0:
        return
    worst = np.unravel_index(np.argmax(diff - allowed), diff.shape)
    assert np.all(diff <= allowed), (
        f"{label}: max abs diff {diff.max():.3g} exceeds atol={atol:g}, "
        f"rtol={rtol:g}; worst element {tuple(int(i) for i in worst)}: "
        f"{actual[worst]!r} vs expected {expected[worst]!r}"
    )


def torch_state_dict(units=4, depth=3, seed=0, dtype=np.float32) -> dict:
    """Returns random weights of a one-layer `torch.nn.LSTM` state dict."""
    rng = np.random.default_rng(seed)
    shapes = {
        "weight_ih_l0": (4 * units, depth),
        "weight_hh_l0": (4 * units, units),
        "bias_ih_l0": (4 * units,),
        "bias_hh_l0": (4 * units,),
    }
    return {
        key: rng.normal(size=shape).astype(dtype)
        for key, shape in shapes.items()
    }
