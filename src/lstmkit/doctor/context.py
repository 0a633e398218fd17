"""Shared state of one diagnosis: the probe instance, sizes and findings.

Every probe sets its own weights and inputs on one instance of the user's
code, created once at the probe size. Findings that several checks need
(the gate order, the structure of a BiLSTM's outputs) are computed once
and cached here, together with the error that stopped them, if any.
"""

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from lstmkit.doctor import adapters

logger = logging.getLogger(__name__)

# Probe sizes: input_depth, units, input_depth + units and 4 * units all
# differ, so weight shapes tell their roles apart.
INPUT_DEPTH = 3
UNITS = 4
BATCH = 4
TIME = 6
# One full row, two padded rows and an empty row.
LENGTHS = (6, 4, 2, 0)
# Scale of random weights: large enough that each gate matters.
WEIGHT_SCALE = 0.5


class ProbeContext:
    """One diagnosis in progress.

    Args:
        adapter: the user's code.
        seed: seed of every random number the probes draw.

    Raises:
        UserCodeError: the code could not be created or run once.
    """

    def __init__(self, adapter: adapters.Adapter, seed: int = 0):
        self.adapter = adapter
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.instance = adapter.create(INPUT_DEPTH, UNITS)
        self.units = UNITS
        self.input_depth = INPUT_DEPTH
        self.bidirectional = adapter.bidirectional
        self.dtype = self.instance.dtype.as_numpy_dtype
        self._cache: dict[str, Any] = {}

        # One plain run, so that code which cannot run at all is reported
        # before any check.
        self.run(self.inputs(TIME), np.full([BATCH], TIME))

    @property
    def directions(self) -> int:
        """1 for an LSTM, 2 for a BiLSTM."""
        return 2 if self.bidirectional else 1

    @property
    def custom_cell(self) -> bool:
        """Whether the code implements another cell than the LSTM."""
        return self.adapter.reference_cell is not None

    def inputs(self, time: int, batch: int = BATCH) -> np.ndarray:
        """Random inputs `[batch, time, input_depth]`."""
        shape = [batch, time, self.input_depth]
        return self.rng.normal(0.0, 1.0, shape).astype(self.dtype)

    def randomize_weights(self) -> None:
        """Gives every weight of the instance new random values."""
        for variable in self.instance.variables:
            shape = tuple(variable.shape)
            value = self.rng.normal(0.0, WEIGHT_SCALE, shape)
            variable.assign(value.astype(numpy_dtype(variable)))

    def run(
        self, inputs: np.ndarray, lengths: Any
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Runs the user's code and returns NumPy outputs and states."""
        outputs, states = self.instance.run(
            inputs, np.asarray(lengths, np.int32)
        )
        return outputs.numpy(), [state.numpy() for state in states]

    def half(self, outputs: np.ndarray, index: int) -> np.ndarray:
        """Slices the outputs `[batch, time, units]` of half 0 or 1."""
        return outputs[..., index * self.units : (index + 1) * self.units]

    def gradients(
        self,
        inputs: np.ndarray,
        lengths: Any,
        loss_fn: Callable[[tf.Tensor, list[tf.Tensor]], tf.Tensor],
        variables: list[Any] | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Differentiates a loss of the code's outputs.

        Args:
            inputs: `[batch, time, input_depth]`.
            lengths: `[batch]`.
            loss_fn: `loss_fn(outputs, states) -> scalar`.
            variables: weights to differentiate, all of them by default.

        Returns:
            `(weight_gradients, input_gradient)`, zeros where a weight does
            not affect the loss.
        """
        variables = variables or self.instance.variables
        x = tf.constant(inputs)
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs, states = self.instance.run(
                x, np.asarray(lengths, np.int32)
            )
            loss = loss_fn(outputs, states)
        gradients = adapters.call_user(
            lambda: tape.gradient(loss, [*variables, x]),
            f"{self.adapter.name} (gradient)",
        )
        dense = []
        for gradient, target in zip(gradients, [*variables, x]):
            if gradient is None:
                dense.append(np.zeros(tuple(target.shape)))
            else:
                dense.append(tf.convert_to_tensor(gradient).numpy())
        return dense[:-1], dense[-1]

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """Computes a finding once and caches it, a `UserCodeError` too."""
        if key not in self._cache:
            try:
                self._cache[key] = compute()
            except adapters.UserCodeError as error:
                self._cache[key] = error
        value = self._cache[key]
        if isinstance(value, adapters.UserCodeError):
            raise value
        return value


def numpy_dtype(variable: Any) -> np.dtype:
    """Returns the NumPy dtype of a TensorFlow or Keras variable."""
    return np.dtype(tf.as_dtype(variable.dtype).as_numpy_dtype)


def max_abs(array: Any) -> float:
    """Largest absolute value, 0.0 for an empty array, inf with NaN."""
    array = np.asarray(array, np.float64)
    if array.size == 0:
        return 0.0
    if not np.all(np.isfinite(array)):
        return float("inf")
    return float(np.max(np.abs(array)))


def tolerance(dtype: Any) -> float:
    """Largest difference that counts as equal for results of `dtype`.

    Two correct float32 LSTMs that sum in another order differ by about
    1e-7 at these sizes.
    """
    return 1e-10 if np.dtype(dtype) == np.float64 else 2e-5
