"""Time-loop kernels behind the sequence drivers, and how one is chosen.

Three kernels run a cell over a sequence with the same results:

* `fused_lstm`: the standard LSTM step with a hand-written backward pass,
  both loops compiled by XLA (`lstmkit.kernels.fused_lstm`).
* `derived`: any cell whose step is deterministic; the backward pass is
  derived from the cell's own `step`, both loops compiled by XLA
  (`lstmkit.kernels.derived`).
* `autodiff`: a `tf.while_loop` differentiated by TensorFlow, without
  XLA. It runs every cell, including cells that draw new random numbers at
  every step.

All three run float16, bfloat16, float32 and float64 loops, including
the loops of a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`).
`implementation="auto"` (the default) takes the first of these that can
run the cell. `explain(cell)` returns the last choice made for a cell, and
the choice is logged once per cell at INFO level, with the reason why the
faster kernels were not used.
"""

import contextlib
import logging
import os
import weakref
from typing import Any, Iterator, NamedTuple

import tensorflow as tf

logger = logging.getLogger(__name__)

KERNELS = ("fused_lstm", "derived", "autodiff")
IMPLEMENTATIONS = ("auto",) + KERNELS
ENVIRONMENT_VARIABLE = "LSTMKIT_KERNEL"

# XLA on CPU compiles all four (TensorFlow 2.21). tests/test_precision.py
# checks the half-precision loops against float32 on CPU only.
_XLA_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
_FUSED_WEIGHTS = {"kernel_h", "h_dropout_mask"}

_default = None
_choices: "weakref.WeakKeyDictionary[Any, KernelChoice]" = (
    weakref.WeakKeyDictionary()
)
_logged: "weakref.WeakKeyDictionary[Any, set]" = weakref.WeakKeyDictionary()


class KernelChoice(NamedTuple):
    """The kernel that ran a cell, and the reasons for the choice.

    Attributes:
        kernel: one of `KERNELS`.
        reason: why this kernel was used.
        rejected: for each faster kernel that was not used, why not.
    """

    kernel: str
    reason: str
    rejected: dict

    def describe(self) -> str:
        """Returns the choice as one line of text."""
        text = f"kernel {self.kernel} ({self.reason})"
        if self.kernel != "autodiff" and tf.config.list_logical_devices("GPU"):
            # NOTE: there is no cuDNN kernel; on a GPU the XLA kernels are
            # compiled for the device the ops are placed on.
            text += ", compiled by XLA for the device it is placed on"
        if self.rejected:
            skipped = "; ".join(
                f"{name}: {why}" for name, why in self.rejected.items()
            )
            text += f"; not used: {skipped}"
        return text


def default_implementation() -> str:
    """Returns the implementation used when a driver is given none.

    It is the value set by `set_default_implementation`, else the
    `LSTMKIT_KERNEL` environment variable, else `"auto"`.
    """
    if _default is not None:
        return _default
    return check_implementation(
        os.environ.get(ENVIRONMENT_VARIABLE, "auto"), ENVIRONMENT_VARIABLE
    )


def set_default_implementation(implementation: str | None) -> None:
    """Sets the implementation of every later driver call.

    Args:
        implementation: one of `IMPLEMENTATIONS`, or `None` to go back to
            the environment variable or `"auto"`.
    """
    global _default
    if implementation is not None:
        implementation = check_implementation(implementation)
    _default = implementation


@contextlib.contextmanager
def use(implementation: str) -> Iterator[None]:
    """Sets the default implementation inside a `with` block.

    The choice is made while a function is traced, so a `tf.function`
    traced inside the block keeps that kernel afterwards.
    """
    global _default
    previous = _default
    set_default_implementation(implementation)
    try:
        yield
    finally:
        _default = previous


def check_implementation(value: Any, name: str = "implementation") -> str:
    """Returns `value` if it names an implementation.

    Raises:
        ValueError: it does not.
    """
    if value not in IMPLEMENTATIONS:
        choices = ", ".join(repr(choice) for choice in IMPLEMENTATIONS)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}.")
    return value


def explain(cell: Any) -> KernelChoice | None:
    """Returns the last kernel choice made for `cell`, or `None`."""
    return _choices.get(cell)


def choose(
    cell: Any, dtype: tf.DType, weights: Any, implementation: str = "auto"
) -> KernelChoice:
    """Chooses the kernel that runs `cell` and records the choice.

    Args:
        cell: a built `RecurrentCell`.
        dtype: the dtype the loop computes in.
        weights: the cell's `recurrent_weights()`.
        implementation: `"auto"` or the name of a kernel to force.

    Returns:
        The choice, also available afterwards from `explain(cell)`.

    Raises:
        ValueError: a forced kernel cannot run this cell; the message gives
            the reason.
    """
    implementation = check_implementation(implementation)
    rejected = {}
    for kernel in KERNELS:
        why_not = _why_not(kernel, cell, dtype, weights)
        if why_not is None and implementation in ("auto", kernel):
            choice = KernelChoice(kernel, _REASONS[kernel], rejected)
            _record(cell, choice)
            return choice
        if implementation == kernel:
            raise ValueError(
                f"implementation={kernel!r} cannot run {cell.name}: "
                f"{why_not}. Use implementation='auto' to fall back."
            )
        rejected[kernel] = why_not or "not requested"
    raise AssertionError("the autodiff kernel runs every cell")


_REASONS = {
    "fused_lstm": "standard LSTM step, hand-written backward under XLA",
    "derived": "backward derived from the cell's step, under XLA",
    "autodiff": "TensorFlow differentiates the loop",
}


def _why_not(kernel: str, cell: Any, dtype: tf.DType, weights: Any):
    """Returns why `kernel` cannot run `cell`, or `None` if it can."""
    if kernel == "autodiff":
        return None
    if tf.as_dtype(dtype) not in _XLA_DTYPES:
        names = "/".join(supported.name for supported in _XLA_DTYPES)
        return f"computes in {tf.as_dtype(dtype).name}, not {names}"
    if kernel == "fused_lstm":
        return fused_layout_problem(cell, weights)
    if not getattr(cell, "deterministic_step", True):
        return "the cell draws random numbers at every step"
    if weights is None:
        return "recurrent_weights() returns None, so step reads variables"
    return None


def fused_layout_problem(cell: Any, weights: Any) -> str | None:
    """Returns why the fused LSTM kernel cannot run `cell`, or `None`."""
    from lstmkit.cells import LSTMCell
    from lstmkit.keras_cell import KerasLSTMCell

    if type(cell).step is not LSTMCell.step:
        return f"{type(cell).__name__} has its own step"
    if type(cell).split_gates not in (
        LSTMCell.split_gates,
        KerasLSTMCell.split_gates,
    ):
        return f"{type(cell).__name__} has its own gate layout"
    options = {
        "use_peepholes": cell.use_peepholes,
        "cell_clip": cell.cell_clip is not None,
        "num_proj": cell.num_proj is not None,
    }
    for option, used in options.items():
        if used:
            return f"{option} is set"
    if cell.activation.__name__ != "tanh":
        return f"activation is {cell.activation.__name__}, not tanh"
    if not isinstance(weights, dict) or set(weights) - _FUSED_WEIGHTS:
        return "the recurrent weights hold more than kernel_h"
    return None


def gate_layout(cell: Any) -> Any:
    """Returns the `fused_lstm.GateLayout` of an LSTM cell."""
    from lstmkit.keras_cell import KerasLSTMCell
    from lstmkit.kernels import fused_lstm

    if type(cell).split_gates is KerasLSTMCell.split_gates:
        return fused_lstm.KERAS_LAYOUT
    return fused_lstm.TF1_LAYOUT


def _record(cell: Any, choice: KernelChoice) -> None:
    _choices[cell] = choice
    logged = _logged.setdefault(cell, set())
    if choice.kernel not in logged:
        logged.add(choice.kernel)
        logger.info("%s: %s", cell.name, choice.describe())
