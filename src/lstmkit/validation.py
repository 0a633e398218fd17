"""Checks on the arguments of the sequence drivers, with errors that name
the bad value and the fix.

Eagerly every check runs at once and raises `ValueError` or `TypeError`.
Inside `tf.function`, checks on values known at trace time (static shapes,
constant lengths) still raise at trace time, and checks on run-time values
become assertions that raise `tf.errors.InvalidArgumentError` when the graph
runs. XLA (`jit_compile=True`) drops run-time assertions, so there only the
trace-time checks apply; out-of-range lengths that reach the loop are
clamped to `[0, time]`, as the v1 built-in does.
"""

import logging
from typing import Any

import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)

_INT_DTYPES = (tf.int32, tf.int64)

# Number of lengths that a run-time length error prints. TensorFlow's
# default of 3 hides a bad length in any later row.
_MAX_LENGTHS_SHOWN = 1000


def as_inputs(inputs: Any, time_major: bool) -> tf.Tensor:
    """Converts `inputs` to a float tensor of rank 3 and checks it.

    Args:
        inputs: `[batch, time, depth]`, or `[time, batch, depth]` when
            `time_major`.
        time_major: layout of `inputs`, used in messages only.

    Returns:
        The inputs as a `tf.Tensor`.

    Raises:
        TypeError: ragged, sparse, non-numeric or integer inputs.
        ValueError: inputs whose rank is not 3, or whose depth is 0.
    """
    layout = "[time, batch, depth]" if time_major else "[batch, time, depth]"
    if isinstance(inputs, tf.RaggedTensor):
        raise TypeError(
            "inputs is a tf.RaggedTensor; pass a dense tensor and its lengths "
            "instead: inputs.to_tensor() and "
            "sequence_length=inputs.row_lengths()."
        )
    if isinstance(inputs, tf.SparseTensor):
        raise TypeError(
            "inputs is a tf.SparseTensor; convert it with "
            "tf.sparse.to_dense(inputs) first."
        )
    try:
        tensor = tf.convert_to_tensor(inputs)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"inputs could not be converted to a tensor ({error}); pass a "
            f"float tensor or array of shape {layout}."
        ) from error

    if not tensor.dtype.is_floating:
        raise TypeError(
            f"inputs must be a floating-point tensor; got dtype "
            f"{tensor.dtype.name}. Cast it first, for example "
            "tf.cast(inputs, tf.float32)."
        )
    if tensor.shape.rank != 3:
        raise ValueError(
            f"inputs must have rank 3, {layout}; got shape {tensor.shape}."
        )
    if tensor.shape[-1] == 0:
        raise ValueError(
            f"inputs have depth 0 (shape {tensor.shape}), so the cell would "
            "read no features. Pass inputs with at least one feature per "
            "time step."
        )
    return tensor


def check_input_depth(cell: Any, inputs: tf.Tensor) -> None:
    """Checks that a built cell accepts the depth of `inputs`.

    Raises:
        ValueError: the depth is unknown or differs from the cell's.
    """
    depth = inputs.shape[-1]
    if depth is None:
        raise ValueError(
            f"The depth (last dimension) of the inputs must be known when "
            f"the graph is built; got shape {inputs.shape}. Give the "
            "tf.function an input_signature with a fixed last dimension."
        )
    expected = getattr(cell, "input_depth", None)
    if cell.built and expected is not None and depth != expected:
        raise ValueError(
            f"inputs have depth {depth} but cell {cell.name!r} was built "
            f"for depth {expected}. Use a new cell for inputs of depth "
            f"{depth}."
        )


def check_dtype(cell: Any, inputs: tf.Tensor, dtype: Any) -> tf.DType:
    """Checks the dtypes of inputs, the `dtype` argument and the cell.

    Returns:
        The dtype in which the loop runs (that of the inputs).

    Raises:
        TypeError: any two of them differ.
    """
    if dtype is not None:
        dtype = tf.as_dtype(dtype)
        if dtype != inputs.dtype:
            raise TypeError(
                f"dtype={dtype.name} differs from the inputs' dtype "
                f"{inputs.dtype.name}; cast the inputs or drop the dtype "
                "argument."
            )
    if cell.built and cell.compute_dtype != inputs.dtype.name:
        raise TypeError(
            f"inputs are {inputs.dtype.name} but cell {cell.name!r} computes "
            f"in {cell.compute_dtype}; cast the inputs, or create the cell "
            f"with dtype={inputs.dtype.name!r}."
        )
    return inputs.dtype


def as_lengths(
    sequence_length: Any, batch: Any, time: Any
) -> tf.Tensor | None:
    """Converts and checks `sequence_length`.

    Args:
        sequence_length: `[batch]` int32 or int64 lengths, or `None`.
        batch: batch size, a Python int or a scalar tensor.
        time: number of time steps, a Python int or a scalar tensor.

    Returns:
        `[batch]` int32 lengths, clamped to `[0, time]` after the checks,
        or `None`.

    Raises:
        TypeError: lengths that are not integers.
        ValueError: lengths of the wrong shape, negative, or longer than
            `time`, when known eagerly or at trace time.
        tf.errors.InvalidArgumentError: the same, found when a graph runs.
    """
    if sequence_length is None:
        return None
    lengths = _convert_lengths(sequence_length)
    _check_lengths_shape(lengths, batch)

    static = tf.get_static_value(lengths)
    static_batch = _static_int(batch)
    static_time = _static_int(time)
    if static is not None and static_time is not None:
        _check_length_values(np.asarray(static), static_time)
    elif not tf.executing_eagerly():
        lengths = _assert_lengths(lengths, batch, time)

    # Clip before narrowing to int32, so that a huge int64 length clamps to
    # `time` instead of wrapping around.
    lengths = tf.clip_by_value(lengths, 0, tf.cast(time, lengths.dtype))
    lengths = tf.cast(lengths, tf.int32)
    # With a static batch size, EnsureShape checks the count when a graph
    # runs. Grappler's constant folding drops the count assertion of
    # _assert_lengths once a consumer such as tf.reverse_sequence implies
    # [batch] lengths (TF 2.21), and a wrong count then fails later in an
    # unrelated op. EnsureShape is kept and names both counts.
    return tf.ensure_shape(lengths, [static_batch])


def _convert_lengths(sequence_length: Any) -> tf.Tensor:
    if isinstance(sequence_length, (tf.RaggedTensor, tf.SparseTensor)):
        raise TypeError(
            f"sequence_length is a {type(sequence_length).__name__}; pass a "
            "dense [batch] vector of int32 or int64 lengths, such as "
            "inputs.row_lengths() of ragged inputs."
        )
    if tf.is_tensor(sequence_length) or isinstance(
        sequence_length, tf.Variable
    ):
        lengths = tf.convert_to_tensor(sequence_length)
    else:
        array = np.asarray(sequence_length)
        if array.size == 0 and array.dtype.kind == "f":
            # An empty list converts to float64; it is an empty batch.
            array = array.astype(np.int64)
        if array.dtype.kind == "u" and array.size and array.max() > 2**62:
            raise ValueError(
                f"sequence_length contains {int(array.max())}, which does not "
                "fit int64; lengths count time steps."
            )
        if array.dtype.kind not in "iu":
            raise TypeError(
                f"sequence_length must hold integers; got dtype "
                f"{array.dtype}: {_preview(array)}. Pass int32 or int64 "
                "lengths."
            )
        lengths = tf.constant(array.astype(np.int64))
    if lengths.dtype not in _INT_DTYPES:
        raise TypeError(
            f"sequence_length must be int32 or int64; got "
            f"{lengths.dtype.name}. Cast it with tf.cast(lengths, tf.int32)."
        )
    return lengths


def _check_lengths_shape(lengths: tf.Tensor, batch: Any) -> None:
    if lengths.shape.rank is not None and lengths.shape.rank != 1:
        raise ValueError(
            f"sequence_length must be a vector [batch]; got shape "
            f"{lengths.shape}."
        )
    static_batch = _static_int(batch)
    size = lengths.shape[0] if lengths.shape.rank == 1 else None
    if static_batch is not None and size is not None and size != static_batch:
        raise ValueError(
            f"sequence_length has {size} entries but the batch has "
            f"{static_batch} rows; give one length per row."
        )


def _check_length_values(lengths: np.ndarray, time: int) -> None:
    bad = np.flatnonzero((lengths < 0) | (lengths > time))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"sequence_length[{row}] = {int(lengths[row])} is outside "
            f"[0, {time}], the number of time steps; {bad.size} row(s) "
            f"are out of range: {_preview(lengths[bad])}. Lengths count "
            "the valid steps of each row."
        )


def _assert_lengths(lengths: tf.Tensor, batch: Any, time: Any) -> tf.Tensor:
    time = tf.cast(time, lengths.dtype)
    checks = [
        tf.debugging.assert_equal(
            tf.size(lengths, out_type=tf.int32),
            tf.cast(batch, tf.int32),
            message="sequence_length must have one entry per batch row",
        ),
        tf.debugging.assert_non_negative(
            lengths,
            message="sequence_length must not be negative",
            summarize=_MAX_LENGTHS_SHOWN,
        ),
        tf.debugging.assert_less_equal(
            lengths,
            time,
            message=(
                "sequence_length must not exceed the number of time steps"
            ),
            summarize=_MAX_LENGTHS_SHOWN,
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(lengths)


def check_state(
    cell: Any, state: Any, batch: Any, dtype: tf.DType, name: str
) -> Any:
    """Converts an initial state to the cell's structure and checks it.

    Args:
        cell: the cell that receives the state.
        state: the user's initial state.
        batch: batch size of the inputs.
        dtype: dtype of the inputs.
        name: argument name for messages.

    Returns:
        The state in the cell's structure.

    Raises:
        ValueError: wrong structure or shapes.
        TypeError: wrong dtype.
    """
    try:
        state = cell.normalize_state(state)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: {error}") from error

    static_batch = _static_int(batch)
    sizes = tf.nest.flatten(cell.state_size)
    parts = tf.nest.flatten(state)
    dtypes = _state_dtypes(cell, dtype)
    for index, (part, size) in enumerate(zip(parts, sizes)):
        field = _field_name(state, index)
        parts[index] = part = _as_state_dtype(
            part, dtypes[index], dtype, f"{name}.{field}"
        )
        expected = [static_batch, size]
        if part.shape.rank != 2 or not part.shape.is_compatible_with(
            expected
        ):
            shown = "batch" if static_batch is None else static_batch
            raise ValueError(
                f"{name}.{field} has shape {part.shape}; expected "
                f"[{shown}, {size}]."
            )
    state = tf.nest.pack_sequence_as(state, parts)
    if static_batch is None or any(p.shape[0] is None for p in parts):
        state = _assert_state_batch(state, batch, name)
    return state


def _state_dtypes(cell: Any, dtype: tf.DType) -> list[tf.DType]:
    """Returns the flat dtypes the cell keeps its state parts in."""
    state_dtypes = getattr(cell, "state_dtypes", None)
    if state_dtypes is None:
        return [dtype] * len(tf.nest.flatten(cell.state_size))
    return tf.nest.flatten(state_dtypes(dtype))


def _as_state_dtype(
    part: tf.Tensor, expected: tf.DType, dtype: tf.DType, name: str
) -> tf.Tensor:
    """Returns a state part in `expected`, the dtype the cell keeps it in.

    Under mixed precision an LSTM keeps c in float32 while the inputs are
    float16 or bfloat16. A c in the inputs' dtype is then widened, which
    loses nothing; Keras layers cast every state they are given to the
    compute dtype.

    Raises:
        TypeError: any other dtype.
    """
    if part.dtype == expected:
        return part
    widening = expected.is_floating and expected.size > dtype.size
    if part.dtype == dtype and widening:
        return tf.cast(part, expected)
    if expected == dtype:
        raise TypeError(
            f"{name} is {part.dtype.name} but the inputs are "
            f"{dtype.name}; cast the state to {dtype.name}."
        )
    raise TypeError(
        f"{name} is {part.dtype.name} but the cell keeps it in "
        f"{expected.name} (the inputs are {dtype.name}); cast the state to "
        f"{expected.name}."
    )


def _assert_state_batch(state: Any, batch: Any, name: str) -> Any:
    """Checks at run time that every state part has `batch` rows."""

    def check(part: tf.Tensor) -> tf.Tensor:
        if tf.executing_eagerly():
            return part
        assertion = tf.debugging.assert_equal(
            tf.shape(part)[0],
            tf.cast(batch, tf.int32),
            message=f"{name} must have one row per batch row of the inputs",
        )
        with tf.control_dependencies([assertion]):
            return tf.identity(part)

    return tf.nest.map_structure(check, state)


def check_cell(cell: Any, name: str = "cell") -> None:
    """Checks that `cell` is an lstmkit cell the drivers can run.

    Raises:
        TypeError: `cell` lacks `project_inputs` and `step`, for example a
            Keras or v1 cell.
    """
    required = ("project_inputs", "step", "recurrent_weights", "built")
    missing = [attr for attr in required if not hasattr(cell, attr)]
    if missing:
        raise TypeError(
            f"{name} must be an lstmkit cell such as lstmkit.LSTMCell; got "
            f"{type(cell).__module__}.{type(cell).__name__}, which has no "
            f"{', '.join(missing)}. Copy a Keras or v1 cell's weights into "
            "an lstmkit.LSTMCell with set_weights."
        )


def _field_name(state: Any, index: int) -> str:
    fields = getattr(state, "_fields", None)
    return fields[index] if fields else f"[{index}]"


def _static_int(value: Any) -> int | None:
    static = tf.get_static_value(value)
    return None if static is None else int(static)


def _preview(array: np.ndarray, limit: int = 8) -> str:
    values = np.asarray(array).ravel()
    shown = ", ".join(str(v) for v in values[:limit])
    more = ", ..." if values.size > limit else ""
    return f"[{shown}{more}]"
