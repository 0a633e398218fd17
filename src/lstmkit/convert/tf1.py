"""v1 `LSTMCell` objects and TF1 checkpoints to and from `V1Weights`.

A TF1 checkpoint written by `tf.compat.v1.train.Saver` after
`tf.compat.v1.nn.dynamic_rnn` with the v1 `LSTMCell` stores the variables

    rnn/lstm_cell/kernel           [input_depth + h_depth, 4 * num_units]
    rnn/lstm_cell/bias             [4 * num_units]
    rnn/lstm_cell/w_f_diag         [num_units], with use_peepholes
    rnn/lstm_cell/w_i_diag         [num_units], with use_peepholes
    rnn/lstm_cell/w_o_diag         [num_units], with use_peepholes
    rnn/lstm_cell/projection/kernel  [num_units, num_proj], with num_proj

and `bidirectional_dynamic_rnn` writes the same names under
`bidirectional_rnn/fw/lstm_cell/` and `bidirectional_rnn/bw/lstm_cell/`.
Other scopes (a `tf.compat.v1.variable_scope`, a cell `name`, a
`MultiRNNCell`'s `multi_rnn_cell/cell_0/`) change the prefix, so every
reader takes one.

The checkpoint stores neither `forget_bias` nor `cell_clip`, `proj_clip` or
the activation, because they are constructor arguments of the cell. The
caller passes the values the model was built with: a wrong `forget_bias`
shifts every forget gate and changes the outputs without any error.
"""

import logging
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lstmkit.cells import LSTMCell
from lstmkit.convert.layouts import (
    GATE_ORDER_KERAS,
    GATE_ORDER_TF1,
    V1Weights,
    reorder_gates,
)
from lstmkit.keras_cell import KerasLSTMCell

logger = logging.getLogger(__name__)

# Max number of variables listed in a "not found" error. The rest are
# counted.
_MAX_LISTED_VARIABLES = 60

# Exceptions that TensorFlow's checkpoint reader raises for corrupt files
# (TF 2.21): OpError subclasses such as DataLossError, IndexError for a
# truncated file, and MemoryError (std::bad_alloc) when a corrupt length
# field requests a huge buffer. The failed allocation leaves the process
# usable.
_CORRUPT_CHECKPOINT_ERRORS = (tf.errors.OpError, IndexError, MemoryError)


def v1_cell_options(cell: Any) -> dict[str, Any]:
    """Reads the constructor options of an lstmkit or v1 `LSTMCell`.

    Args:
        cell: an `lstmkit.LSTMCell` or a v1 `LSTMCell` (from tf_keras or
            `tf.compat.v1.nn.rnn_cell`).

    Returns:
        `num_units`, `use_peepholes`, `cell_clip`, `num_proj`, `proj_clip`,
        `forget_bias` and `activation`. The activation is a Keras name such
        as "tanh" when the cell's function is a Keras built-in, else the
        function itself.

    Raises:
        TypeError: `cell` is neither kind of LSTM cell.
    """
    if isinstance(cell, LSTMCell):
        return {
            "num_units": cell.num_units,
            "use_peepholes": cell.use_peepholes,
            "cell_clip": cell.cell_clip,
            "num_proj": cell.num_proj,
            "proj_clip": cell.proj_clip,
            "forget_bias": cell.forget_bias,
            "activation": activation_spec(cell.activation),
        }

    if _is_v1_lstm_cell(cell):
        return {
            "num_units": cell._num_units,
            "use_peepholes": bool(cell._use_peepholes),
            "cell_clip": cell._cell_clip,
            "num_proj": cell._num_proj,
            "proj_clip": cell._proj_clip,
            "forget_bias": float(cell._forget_bias),
            "activation": activation_spec(cell._activation),
        }

    raise TypeError(
        "Expected an lstmkit.LSTMCell or a v1 LSTMCell; got "
        f"{type(cell).__name__}. For arrays, build a V1Weights instead."
    )


def activation_spec(function: Any) -> str | Any:
    """Returns the Keras name of an activation function, or the function.

    `tf.tanh`, the v1 cell's default, and the Keras and tf_keras built-ins
    map to their Keras names, so that Keras layers and lstmkit cells
    created from them serialize.
    """
    name = getattr(function, "__name__", None)
    if not isinstance(name, str):
        return function
    try:
        builtin = keras.activations.get(name)
    except ValueError:
        return function
    if getattr(builtin, "__name__", None) != name:
        return function
    return name


def v1_weights_from_cell(cell: Any) -> V1Weights:
    """Copies the weights of a built lstmkit or v1 `LSTMCell`.

    Args:
        cell: a built `lstmkit.LSTMCell` or v1 `LSTMCell`. An
            `lstmkit.KerasLSTMCell` (the cell of `lstmkit.layers.LSTM` with
            `semantics="keras"`) is converted from the Keras layout.

    Returns:
        `V1Weights` with copies of the cell's arrays and its
        `forget_bias`: kernel `[input_depth + h_depth, 4 * num_units]`,
        bias `[4 * num_units]`, peepholes `[num_units]` and projection
        `[num_units, num_proj]` where the cell has them. `cell_clip`,
        `proj_clip` and the activation are options, not weights: read them
        with `v1_cell_options`.

    Raises:
        TypeError: `cell` is not an LSTM cell of either kind.
        ValueError: the cell is not built yet.
    """
    options = v1_cell_options(cell)
    if not cell.built:
        raise ValueError(
            f"Cell {cell.name!r} has no weights yet because it is not built. "
            "Run it once on inputs (or call cell.build((input_depth,))) "
            "before reading its weights."
        )

    # lstmkit keeps each variable in an attribute of the same name. The v1
    # cell adds a leading underscore and names the projection _proj_kernel.
    if isinstance(cell, LSTMCell):
        attribute_prefix, projection_attribute = "", "projection_kernel"
    else:
        attribute_prefix, projection_attribute = "_", "_proj_kernel"

    variables = {
        "kernel": getattr(cell, attribute_prefix + "kernel"),
        "bias": getattr(cell, attribute_prefix + "bias"),
    }
    if options["use_peepholes"]:
        for name in ("w_f_diag", "w_i_diag", "w_o_diag"):
            variables[name] = getattr(cell, attribute_prefix + name)
    if options["num_proj"] is not None:
        variables["projection"] = getattr(cell, projection_attribute)

    arrays = {
        name: _variable_to_numpy(variable)
        for name, variable in variables.items()
    }
    if isinstance(cell, KerasLSTMCell):
        _keras_cell_arrays_to_v1(arrays, cell.recurrent_kernel)
    return V1Weights(forget_bias=options["forget_bias"], **arrays)


def _keras_cell_arrays_to_v1(
    arrays: dict[str, np.ndarray], recurrent_kernel: Any
) -> None:
    """Rewrites a `KerasLSTMCell`'s kernel and bias in the v1 layout.

    The Keras layout keeps the x rows (`kernel`) and the h rows
    (`recurrent_kernel`) in two matrices with gate blocks i, f, c, o. The
    cell adds its `forget_bias` at run time as the v1 cell does, so the
    bias moves over unchanged apart from the block order.
    """
    stacked = np.concatenate(
        [arrays["kernel"], _variable_to_numpy(recurrent_kernel)], axis=0
    )
    arrays["kernel"] = reorder_gates(stacked, GATE_ORDER_KERAS, GATE_ORDER_TF1)
    arrays["bias"] = reorder_gates(
        arrays["bias"], GATE_ORDER_KERAS, GATE_ORDER_TF1
    )


def v1_weights_and_options(
    source: Any,
) -> tuple[V1Weights, dict[str, Any]]:
    """Returns the weights and the options of a cell or of `V1Weights`.

    Args:
        source: a built lstmkit or v1 `LSTMCell`, or `V1Weights`. For
            `V1Weights` the options that are not weights take the v1
            defaults: no clipping and tanh.

    Returns:
        `(weights, options)` with options as in `v1_cell_options`.
    """
    if not isinstance(source, V1Weights):
        return v1_weights_from_cell(source), v1_cell_options(source)

    options = {
        "num_units": source.num_units,
        "use_peepholes": source.use_peepholes,
        "cell_clip": None,
        "num_proj": source.num_proj,
        "proj_clip": None,
        "forget_bias": source.forget_bias,
        "activation": "tanh",
    }
    return source, options


def reject_options(
    options: dict[str, Any], names: Sequence[str], target: str
) -> None:
    """Raises if any option in `names` is set, naming each one.

    Args:
        options: cell options as returned by `v1_cell_options`.
        names: options that `target` cannot reproduce. `activation` counts
            as set unless it is "tanh", the others unless None or False.
        target: the layer named in the message, such as "Keras LSTM".

    Raises:
        ValueError: one or more of the options are set.
    """
    found = []
    for name in names:
        value = options[name]
        if name == "activation":
            is_set = value != "tanh"
        else:
            is_set = value is not None and value is not False
        if is_set:
            found.append(f"{name}={value!r}")
    if found:
        raise ValueError(
            f"{target} has no counterpart for {', '.join(found)}, so it "
            "cannot reproduce this cell. Run the cell with lstmkit instead, "
            "or train a cell without these options."
        )


def v1_weights_to_cell(
    weights: V1Weights, cell: LSTMCell | None = None, **cell_options: Any
) -> LSTMCell:
    """Loads `weights` into an lstmkit `LSTMCell`, creating one if needed.

    Args:
        weights: the weights to load.
        cell: an `lstmkit.LSTMCell` whose structure (`num_units`,
            `use_peepholes`, `num_proj`, `forget_bias` and, when built, the
            input depth) matches `weights`. It is built if needed. When
            None, a new cell with the structure and dtype of `weights` is
            created.
        **cell_options: further `lstmkit.LSTMCell` arguments for a new cell,
            such as `cell_clip`, `proj_clip`, `activation` or `name`. They
            are not stored in `weights`, so they default to the cell's
            defaults. Not allowed together with `cell`.

    Returns:
        The built cell holding `weights`, ready for `lstmkit.dynamic_rnn`
        on inputs `[batch, time, weights.input_depth]`.

    Raises:
        ValueError: `cell` does not match `weights`, or `cell_options` are
            given with `cell`.
    """
    if cell is None:
        cell = LSTMCell(
            weights.num_units,
            use_peepholes=weights.use_peepholes,
            num_proj=weights.num_proj,
            forget_bias=weights.forget_bias,
            dtype=cell_options.pop("dtype", weights.dtype.name),
            **cell_options,
        )
    elif cell_options:
        raise ValueError(
            f"cell_options {sorted(cell_options)} only apply to a new cell. "
            "Set those options on the cell you pass instead."
        )

    _check_cell_matches(cell, weights)
    if not cell.built:
        cell.build((weights.input_depth,))
    cell.set_weights(_weight_list(weights))
    return cell


def _weight_list(weights: V1Weights) -> list[np.ndarray]:
    """Lists the arrays in `lstmkit.LSTMCell.weights` order."""
    arrays = [weights.kernel, weights.bias]
    if weights.use_peepholes:
        arrays += [weights.w_f_diag, weights.w_i_diag, weights.w_o_diag]
    if weights.projection is not None:
        arrays.append(weights.projection)
    return arrays


def _check_cell_matches(cell: LSTMCell, weights: V1Weights) -> None:
    if not isinstance(cell, LSTMCell):
        raise ValueError(
            f"cell must be an lstmkit.LSTMCell; got {type(cell).__name__}."
        )

    expected = {
        "num_units": weights.num_units,
        "use_peepholes": weights.use_peepholes,
        "num_proj": weights.num_proj,
        "forget_bias": weights.forget_bias,
    }
    if cell.built:
        expected["input_depth"] = weights.input_depth

    mismatches = [
        f"{name}={getattr(cell, name)!r} (weights: {value!r})"
        for name, value in expected.items()
        if getattr(cell, name) != value
    ]
    if mismatches:
        raise ValueError(
            f"Cell {cell.name!r} does not match the weights: "
            f"{', '.join(mismatches)}. Pass cell=None to create a matching "
            "cell, or create the cell with the values in brackets."
        )


def read_tf1_checkpoint(
    path: str | os.PathLike,
    prefix: str = "rnn/lstm_cell",
    forget_bias: float = 1.0,
) -> V1Weights:
    """Reads one v1 `LSTMCell`'s variables from a TF1 checkpoint.

    Args:
        path: checkpoint prefix (such as `.../model.ckpt`, the name before
            `.index`) or a directory with a `checkpoint` file.
        prefix: variable scope of the cell, without a trailing slash:
            "rnn/lstm_cell" after `dynamic_rnn`,
            "bidirectional_rnn/fw/lstm_cell" for a forward cell, and so on.
        forget_bias: the `forget_bias` the cell was created with (1.0 is the
            v1 default). The checkpoint does not store it.

    Returns:
        `V1Weights` with kernel `[input_depth + h_depth, 4 * num_units]`,
        bias `[4 * num_units]`, and the peepholes `[num_units]` and
        projection `[num_units, num_proj]` when the checkpoint has them.

    Raises:
        ValueError: `prefix/kernel` or `prefix/bias` is missing (the message
            lists the checkpoint's variables), only some peepholes exist,
            the shapes are inconsistent, or the checkpoint's files are
            truncated or corrupt.
        TypeError: a variable does not hold floating-point numbers.
        tf.errors.NotFoundError: no checkpoint at `path`.
    """
    prefix = prefix.rstrip("/")
    reader = open_tf1_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()

    required = [f"{prefix}/kernel", f"{prefix}/bias"]
    missing = [name for name in required if name not in shapes]
    if missing:
        raise ValueError(_not_found_message(path, prefix, missing, shapes))

    def optional(name: str) -> np.ndarray | None:
        full_name = f"{prefix}/{name}"
        if full_name not in shapes:
            return None
        return _read_tensor(reader, full_name, path)

    weights = V1Weights(
        kernel=_read_tensor(reader, f"{prefix}/kernel", path),
        bias=_read_tensor(reader, f"{prefix}/bias", path),
        forget_bias=forget_bias,
        w_f_diag=optional("w_f_diag"),
        w_i_diag=optional("w_i_diag"),
        w_o_diag=optional("w_o_diag"),
        projection=optional("projection/kernel"),
    )
    logger.debug(
        "Read %s from %s: num_units=%d, input_depth=%d, peepholes=%s, "
        "num_proj=%s.",
        prefix,
        path,
        weights.num_units,
        weights.input_depth,
        weights.use_peepholes,
        weights.num_proj,
    )
    return weights


def read_tf1_bidirectional_checkpoint(
    path: str | os.PathLike,
    prefix: str = "bidirectional_rnn",
    forget_bias: float = 1.0,
    cell_name: str = "lstm_cell",
) -> tuple[V1Weights, V1Weights]:
    """Reads the two cells of a v1 `bidirectional_dynamic_rnn` checkpoint.

    Args:
        path: checkpoint prefix or directory, as in `read_tf1_checkpoint`.
        prefix: scope of the bidirectional RNN. The cells are read from
            `{prefix}/fw/{cell_name}` and `{prefix}/bw/{cell_name}`.
        forget_bias: the `forget_bias` both cells were created with. The
            checkpoint does not store it.
        cell_name: scope of each cell, "lstm_cell" unless the cells were
            created with a `name`.

    Returns:
        `(weights_fw, weights_bw)`, each as in `read_tf1_checkpoint`.

    Raises:
        ValueError, tf.errors.NotFoundError: as `read_tf1_checkpoint`.
    """
    prefix = prefix.rstrip("/")
    weights_fw = read_tf1_checkpoint(
        path, f"{prefix}/fw/{cell_name}", forget_bias
    )
    weights_bw = read_tf1_checkpoint(
        path, f"{prefix}/bw/{cell_name}", forget_bias
    )
    return weights_fw, weights_bw


def cells_from_tf1_checkpoint(
    path: str | os.PathLike,
    prefixes: str | Sequence[str] = "rnn/lstm_cell",
    forget_bias: float = 1.0,
    **cell_options: Any,
) -> list[LSTMCell]:
    """Creates built lstmkit cells from the v1 cells in a TF1 checkpoint.

    Args:
        path: checkpoint prefix or directory, as in `read_tf1_checkpoint`.
        prefixes: one cell scope or a sequence of them, for example
            `["bidirectional_rnn/fw/lstm_cell",
            "bidirectional_rnn/bw/lstm_cell"]` for a bidirectional RNN.
        forget_bias: the `forget_bias` the cells were created with. The
            checkpoint does not store it.
        **cell_options: options that the checkpoint does not store either,
            passed to every new `lstmkit.LSTMCell`: `cell_clip`,
            `proj_clip`, `activation`, `dtype`.

    Returns:
        One built `lstmkit.LSTMCell` per prefix, in the order given.

    Raises:
        ValueError, tf.errors.NotFoundError: as `read_tf1_checkpoint`.
    """
    if isinstance(prefixes, str):
        prefixes = [prefixes]

    cells = []
    for prefix in prefixes:
        weights = read_tf1_checkpoint(path, prefix, forget_bias)
        cells.append(v1_weights_to_cell(weights, **cell_options))
    return cells


def open_tf1_checkpoint(path: str | os.PathLike) -> Any:
    """Opens a checkpoint for reading, as `tf.train.load_checkpoint` does.

    Raises:
        ValueError: the checkpoint's files are truncated or corrupt.
        tf.errors.NotFoundError: no checkpoint at `path`.
    """
    try:
        return tf.train.load_checkpoint(os.fspath(path))
    except tf.errors.NotFoundError as error:
        raise tf.errors.NotFoundError(
            None,
            None,
            f"No TF1 checkpoint at {path}: {error.message}. Pass the "
            "checkpoint prefix (the name before .index), or a folder with "
            "a 'checkpoint' file.",
        ) from error
    except _CORRUPT_CHECKPOINT_ERRORS as error:
        raise ValueError(_corrupt_message(path, error)) from error


def _read_tensor(reader: Any, name: str, path: Any) -> np.ndarray:
    try:
        return reader.get_tensor(name)
    except _CORRUPT_CHECKPOINT_ERRORS as error:
        raise ValueError(_corrupt_message(path, error, name)) from error


def _corrupt_message(path: Any, error: Exception, name: str = "") -> str:
    reason = getattr(error, "message", None) or str(error)
    variable = f" variable {name} of" if name else ""
    return (
        f"Could not read{variable} TF1 checkpoint {path}: "
        f"{reason.strip()}. Its .index or .data files are truncated or "
        "corrupt. Write the checkpoint again with "
        "tf.compat.v1.train.Saver, or pass another one."
    )


def object_checkpoint_hint(names: Any) -> str:
    """Returns a hint when the variable names are those of an object-based
    checkpoint (`tf.train.Checkpoint`, `model.save_weights`), else ""."""
    if not any(".ATTRIBUTES/VARIABLE_VALUE" in name for name in names):
        return ""
    return (
        " These names come from an object-based checkpoint written by "
        "tf.train.Checkpoint or save_weights, not by "
        "tf.compat.v1.train.Saver. Restore it into the model that wrote "
        "it and convert that model's LSTM layer with from_keras_lstm or "
        "from_keras_bidirectional."
    )


def _not_found_message(
    path: Any, prefix: str, missing: list[str], shapes: dict[str, list[int]]
) -> str:
    names = sorted(shapes)
    listed = names[:_MAX_LISTED_VARIABLES]
    listing = "\n".join(f"  {name} {shapes[name]}" for name in listed)
    if len(names) > len(listed):
        listing += f"\n  ... and {len(names) - len(listed)} more"

    candidates = sorted(
        name.removesuffix("/kernel")
        for name in names
        if name.endswith("/kernel")
        and name.removesuffix("kernel") + "bias" in shapes
    )
    hint = object_checkpoint_hint(names)
    if candidates:
        hint = f" Prefixes with a kernel and a bias: {', '.join(candidates)}."
    return (
        f"Variables {', '.join(missing)} not found in checkpoint {path} "
        f"(prefix {prefix!r}).{hint} Pass the cell's variable scope as "
        f"prefix. The checkpoint has {len(names)} variables:\n{listing}"
    )


def _is_v1_lstm_cell(cell: Any) -> bool:
    # The v1 cell keeps its options in private attributes, and among the v1
    # cells only LSTMCell has these two.
    return hasattr(cell, "_num_units") and hasattr(cell, "_use_peepholes")


def _variable_to_numpy(variable: Any) -> np.ndarray:
    return np.array(keras.ops.convert_to_numpy(variable))
