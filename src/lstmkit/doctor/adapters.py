"""The adapter contract: how the doctor creates, fills and runs user code.

The doctor never imports a user's LSTM directly. An adapter wraps it in
one of three common shapes and creates `Instance`s, each a fresh copy with
its own weights as TensorFlow variables that the doctor can overwrite and
differentiate:

* `FunctionAdapter`: `fn(inputs, lengths, weights) -> (outputs, state)`,
  a function over explicit weight tensors, with an optional
  `init(input_depth, units) -> weights` that creates them.
* `KerasLayerAdapter`: `factory(input_depth, units) -> layer`, a Keras
  layer called as `layer(inputs, mask=mask)` that returns
  `[outputs, *states]` (`return_sequences=True, return_state=True`).
* `ModuleAdapter`: `factory(input_depth, units) -> module`, a `tf.Module`
  (or any object) called as `module(inputs, lengths)` that returns
  `(outputs, state)`.

In every shape `inputs` is `[batch, time, input_depth]`, `lengths` is
`[batch]` int32, `outputs` is `[batch, time, units]` (`2 * units` for a
BiLSTM, forward half first) and `state` contains two `[batch, units]` tensors
per direction, in the declared `state_order`.
"""

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from lstmkit.doctor import conventions

logger = logging.getLogger(__name__)

STATE_ORDERS = ("ch", "hc")

# Variable names that mark the backward direction of a BiLSTM, such as
# Keras' "backward_lstm", PyTorch's "_reverse" suffix or "cell_bw".
_BACKWARD_NAME = re.compile(r"(^|[^a-z])(bw|backward|reverse)([^a-z]|$)")

# Weight names and shapes of a function adapter created without `init`,
# per storage format ("D" is input_depth, "U" units).
_DEFAULT_WEIGHTS = {
    "v1": {"kernel": ("D+U", "4U"), "bias": ("4U",)},
    "keras": {
        "kernel": ("D", "4U"),
        "recurrent_kernel": ("U", "4U"),
        "bias": ("4U",),
    },
    "torch": {
        "weight_ih": ("4U", "D"),
        "weight_hh": ("4U", "U"),
        "bias_ih": ("4U",),
        "bias_hh": ("4U",),
    },
}


class UserCodeError(Exception):
    """The user's implementation raised, or returned the wrong structure."""


class Instance:
    """One fresh copy of the user's implementation with its own weights.

    Attributes:
        units: number of units per direction.
        input_depth: depth of the inputs it was created for.
        bidirectional: whether the outputs contain a forward and a backward
            half.
        state_order: declared order of each direction's state pair.
        variables_fw: the forward direction's weights (all weights of a
            unidirectional LSTM).
        variables_bw: the backward direction's weights, or an empty list.
        labels: a name per variable of `variables_fw + variables_bw`.
    """

    def __init__(
        self,
        call: Callable[[tf.Tensor, tf.Tensor], Any],
        variables: list[tuple[str, Any]],
        input_depth: int,
        units: int,
        bidirectional: bool,
        state_order: str,
        description: str,
    ):
        self._call = call
        self._description = description
        self.input_depth = input_depth
        self.units = units
        self.bidirectional = bidirectional
        self.state_order = state_order
        self.variables_fw, self.variables_bw, self.labels = _split_directions(
            variables, bidirectional, description
        )
        if not self.variables_fw:
            raise UserCodeError(
                f"{description} created no weights (no trainable "
                "variables were found), so the doctor cannot set or "
                "check them. Create the weights as tf.Variable or Keras "
                "weights."
            )

    @property
    def variables(self) -> list[Any]:
        """All weights, forward direction first."""
        return self.variables_fw + self.variables_bw

    @property
    def dtype(self) -> tf.DType:
        """Dtype of the first weight, used for the probe inputs."""
        return tf.as_dtype(self.variables_fw[0].dtype)

    def directions(self) -> list[list[Any]]:
        """Returns the weights of each direction: `[fw]` or `[fw, bw]`."""
        if self.bidirectional:
            return [self.variables_fw, self.variables_bw]
        return [self.variables_fw]

    def run(
        self, inputs: Any, lengths: Any
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Runs the user's code on one batch and checks what it returns.

        Args:
            inputs: `[batch, time, input_depth]`.
            lengths: `[batch]` int32.

        Returns:
            `(outputs, states)`: outputs `[batch, time, width]` and the
            flat list of state tensors `[batch, units]`, two per direction.

        Raises:
            UserCodeError: the code raised, or returned the wrong shapes.
        """
        inputs = tf.convert_to_tensor(inputs, self.dtype)
        lengths = tf.convert_to_tensor(lengths, tf.int32)
        result = call_user(
            lambda: self._call(inputs, lengths), self._description
        )
        return self._check_result(result, inputs.shape)

    def _check_result(
        self, result: Any, input_shape: tf.TensorShape
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        if not isinstance(result, Sequence) or len(result) < 2:
            raise UserCodeError(
                f"{self._description} returned {_describe(result)}; "
                "expected a pair (outputs, state)."
            )
        outputs = tf.convert_to_tensor(result[0])
        states = [tf.convert_to_tensor(s) for s in tf.nest.flatten(result[1:])]

        batch, time = int(input_shape[0]), int(input_shape[1])
        directions = 2 if self.bidirectional else 1
        expected = (batch, time, directions * self.units)
        if tuple(outputs.shape) != expected:
            if self.bidirectional:
                layout = "[batch, time, 2 * units] for a BiLSTM"
            else:
                layout = "[batch, time, units] for an LSTM"
            raise UserCodeError(
                f"{self._description} returned outputs of shape "
                f"{tuple(outputs.shape)}; expected {expected} = {layout} "
                f"with units={self.units}. Return the outputs of every "
                "step (return_sequences=True). A BiLSTM concatenates the "
                "forward and backward outputs."
            )
        shapes = [tuple(state.shape) for state in states]
        if len(states) != 2 * directions or any(
            shape != (batch, self.units) for shape in shapes
        ):
            raise UserCodeError(
                f"{self._description} returned a final state with "
                f"{len(states)} tensor(s) of shapes {shapes}; expected "
                f"{2 * directions} tensors of shape {(batch, self.units)}"
                " (c and h of each direction)."
            )
        return outputs, states


class Adapter:
    """Base of the three adapters: how to create and run user code.

    Args:
        bidirectional: the code is a BiLSTM whose outputs concatenate the
            forward and backward directions.
        convention: the convention the code claims to follow, "v1",
            "keras" or "torch". None lets the doctor infer it.
        state_order: "ch" when each direction's state is `(c, h)`, "hc"
            when it is `(h, c)`.
        reference_cell: for code that implements another lstmkit cell than
            the LSTM, a callable `units -> lstmkit.RecurrentCell` (such as
            `lstmkit.LayerNormLSTMCell`). The code's weights must then be
            the cell's `get_weights()` in order, one set per direction.
        name: name shown in the report. Defaults to the wrapped object's
            name.

    Raises:
        ValueError: `convention` or `state_order` is not a known value.
    """

    kind = "adapter"
    # Whether `create` runs the user's own initialization.
    has_constructor = True

    def __init__(
        self,
        *,
        bidirectional: bool = False,
        convention: str | None = None,
        state_order: str = "ch",
        reference_cell: Callable[[int], Any] | None = None,
        name: str | None = None,
    ):
        conventions.get_convention(convention)
        if state_order not in STATE_ORDERS:
            raise ValueError(
                f"state_order must be 'ch' (state is (c, h)) or 'hc' "
                f"(state is (h, c)); got {state_order!r}."
            )
        self.bidirectional = bool(bidirectional)
        self.convention = convention
        self.state_order = state_order
        self.reference_cell = reference_cell
        self.name = name or self.kind

    def create(self, input_depth: int, units: int) -> Instance:
        """Creates a fresh instance with new weights.

        Raises:
            UserCodeError: the user's constructor raised.
        """
        raise NotImplementedError

    def _instance(
        self,
        call: Callable[[tf.Tensor, tf.Tensor], Any],
        variables: list[tuple[str, Any]],
        input_depth: int,
        units: int,
    ) -> Instance:
        return Instance(
            call,
            variables,
            input_depth,
            units,
            self.bidirectional,
            self.state_order,
            self.name,
        )


class FunctionAdapter(Adapter):
    """A function over explicit weight tensors.

    Args:
        fn: `fn(inputs, lengths, weights) -> (outputs, state)`.
        init: optional `init(input_depth, units) -> weights`, the user's own
            initialization: a dict or list of arrays (a pair of them, forward
            then backward, for a BiLSTM). Without it the initialization
            check is skipped.
        weight_format: without `init`, the weights the function expects:
            "v1" (`kernel`, `bias`), "keras" (`kernel`, `recurrent_kernel`,
            `bias`) or "torch" (`weight_ih`, `weight_hh`, `bias_ih`,
            `bias_hh`), as a dict (a pair of dicts for a BiLSTM).
        **kwargs: the `Adapter` arguments.

    Raises:
        ValueError: neither `init` nor a known `weight_format` is given.
    """

    kind = "function"

    def __init__(
        self,
        fn: Callable[..., Any],
        init: Callable[[int, int], Any] | None = None,
        weight_format: str | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("name", getattr(fn, "__name__", self.kind))
        super().__init__(**kwargs)
        if init is None and weight_format not in _DEFAULT_WEIGHTS:
            raise ValueError(
                f"FunctionAdapter needs init= or weight_format= (one of "
                f"{', '.join(_DEFAULT_WEIGHTS)}); got weight_format="
                f"{weight_format!r}."
            )
        self.fn = fn
        self.init = init
        self.weight_format = weight_format

    @property
    def has_constructor(self) -> bool:
        """Whether the user's own initialization is available."""
        return self.init is not None

    def create(self, input_depth: int, units: int) -> Instance:
        if self.init is not None:
            structure = call_user(
                lambda: self.init(input_depth, units), f"{self.name} init"
            )
        else:
            structure = _default_weights(
                self.weight_format, input_depth, units, self.bidirectional
            )
        variables, packed = _to_variables(structure, self.bidirectional)

        def call(inputs: tf.Tensor, lengths: tf.Tensor) -> Any:
            return self.fn(inputs, lengths, packed)

        return self._instance(call, variables, input_depth, units)


class KerasLayerAdapter(Adapter):
    """A Keras layer (for example a `keras.layers.Layer` subclass).

    Args:
        factory: `factory(input_depth, units) -> layer`. The layer is
            called as `layer(inputs, mask=mask)` (or with
            `sequence_length=lengths`, see `call_with`) and returns
            `[outputs, *states]`, as `keras.layers.LSTM(units,
            return_sequences=True, return_state=True)` does.
        call_with: "mask" passes `mask=tf.sequence_mask(lengths, time)`,
            "sequence_length" passes `sequence_length=lengths`.
        **kwargs: the `Adapter` arguments. `state_order` defaults to "hc",
            Keras' order.

    Raises:
        ValueError: `call_with` is not "mask" or "sequence_length".
    """

    kind = "keras layer"

    def __init__(
        self,
        factory: Callable[[int, int], Any],
        call_with: str = "mask",
        **kwargs: Any,
    ):
        kwargs.setdefault("state_order", "hc")
        kwargs.setdefault("name", getattr(factory, "__name__", self.kind))
        super().__init__(**kwargs)
        if call_with not in ("mask", "sequence_length"):
            raise ValueError(
                "call_with must be 'mask' or 'sequence_length'; got "
                f"{call_with!r}."
            )
        self.factory = factory
        self.call_with = call_with

    def create(self, input_depth: int, units: int) -> Instance:
        layer = call_user(
            lambda: self.factory(input_depth, units), f"{self.name} factory"
        )

        def call(inputs: tf.Tensor, lengths: tf.Tensor) -> Any:
            if self.call_with == "mask":
                mask = tf.sequence_mask(lengths, tf.shape(inputs)[1])
                result = layer(inputs, mask=mask)
            else:
                result = layer(inputs, sequence_length=lengths)
            if isinstance(result, Sequence) and len(result) > 2:
                return result[0], list(result[1:])
            return result

        # Build the layer (it creates its weights on the first call).
        probe = tf.zeros([1, 1, input_depth])
        call_user(
            lambda: call(probe, tf.ones([1], tf.int32)),
            f"{self.name} (first call, which builds the layer)",
        )
        variables = [(_variable_label(w), w) for w in layer.weights]
        return self._instance(call, variables, input_depth, units)


class ModuleAdapter(Adapter):
    """A `tf.Module` (or any callable object that owns its variables).

    Args:
        factory: `factory(input_depth, units) -> module`, called as
            `module(inputs, lengths) -> (outputs, state)`. Its weights are
            `module.trainable_variables` plus the weights of Keras layers
            stored as its attributes (Keras 3 variables are invisible to
            `tf.Module`).
        **kwargs: the `Adapter` arguments.
    """

    kind = "tf.Module"

    def __init__(self, factory: Callable[[int, int], Any], **kwargs: Any):
        kwargs.setdefault("name", getattr(factory, "__name__", self.kind))
        super().__init__(**kwargs)
        self.factory = factory

    def create(self, input_depth: int, units: int) -> Instance:
        module = call_user(
            lambda: self.factory(input_depth, units), f"{self.name} factory"
        )
        variables = _module_variables(module)

        def call(inputs: tf.Tensor, lengths: tf.Tensor) -> Any:
            return module(inputs, lengths)

        return self._instance(call, variables, input_depth, units)


def call_user(function: Callable[[], Any], description: str) -> Any:
    """Calls user code and turns any exception into a `UserCodeError`.

    User code may raise anything, so every exception type is caught here,
    and the message keeps its type and text without the traceback.
    """
    try:
        return function()
    except UserCodeError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of user code
        message = str(error).strip().splitlines()
        text = message[0] if message else ""
        logger.debug("%s raised", description, exc_info=True)
        raise UserCodeError(
            f"{description} raised {type(error).__name__}: {text}"
        ) from error


def _default_weights(
    weight_format: str, input_depth: int, units: int, bidirectional: bool
) -> Any:
    sizes = {
        "D": input_depth,
        "U": units,
        "D+U": input_depth + units,
        "4U": 4 * units,
    }
    weights = {
        name: np.zeros([sizes[size] for size in shape], np.float32)
        for name, shape in _DEFAULT_WEIGHTS[weight_format].items()
    }
    if bidirectional:
        return weights, {k: v.copy() for k, v in weights.items()}
    return weights


def _to_variables(
    structure: Any, bidirectional: bool
) -> tuple[list[tuple[str, tf.Variable]], Any]:
    """Turns the arrays of a weights structure into named variables."""
    if bidirectional:
        if not isinstance(structure, Sequence) or len(structure) != 2:
            raise UserCodeError(
                "init of a bidirectional FunctionAdapter returned "
                f"{_describe(structure)}; expected a pair (weights_fw, "
                "weights_bw)."
            )
        parts = [("fw", structure[0]), ("bw", structure[1])]
    else:
        parts = [("", structure)]

    variables = []
    packed = []
    for prefix, part in parts:
        paths = _leaf_paths(part)
        leaves = tf.nest.flatten(part)
        new = [
            tf.Variable(_as_float_array(leaf, prefix, path))
            for path, leaf in zip(paths, leaves)
        ]
        for path, variable in zip(paths, new):
            label = f"{prefix}/{path}" if prefix else path
            variables.append((label, variable))
        packed.append(tf.nest.pack_sequence_as(part, new))
    return variables, (tuple(packed) if bidirectional else packed[0])


def _leaf_paths(structure: Any, prefix: str = "") -> list[str]:
    """Names of the leaves of a dict or list, in `tf.nest.flatten` order."""
    if isinstance(structure, dict):
        items = [(str(key), structure[key]) for key in sorted(structure)]
    elif isinstance(structure, (list, tuple)):
        items = [(str(index), value) for index, value in enumerate(structure)]
    else:
        return [prefix or "weight"]
    paths = []
    for key, value in items:
        paths += _leaf_paths(value, f"{prefix}/{key}" if prefix else key)
    return paths


def _as_float_array(value: Any, prefix: str, path: str) -> np.ndarray:
    """Converts one weight returned by `init` to a float array.

    Raises:
        UserCodeError: the weight is not numeric (None, a string or an
            object), so it cannot be stored in a variable.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        array, reason = None, f"{type(error).__name__}: {error}"
    if array is not None and not (
        np.issubdtype(array.dtype, np.number)
        or np.issubdtype(array.dtype, np.bool_)
    ):
        array, reason = None, f"dtype {array.dtype}"
    if array is None:
        label = f"{prefix}/{path}" if prefix else path
        raise UserCodeError(
            f"init returned a weight {label!r} that is not a numeric array "
            f"({_describe(value)}, {reason}). Return a dict or list of "
            "NumPy arrays or tensors."
        )
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return array


def _module_variables(module: Any) -> list[tuple[str, Any]]:
    variables = [
        (variable.name, variable)
        for variable in getattr(module, "trainable_variables", ())
    ]
    seen = {id(variable) for _, variable in variables}
    for attribute, value in sorted(vars(module).items()):
        if isinstance(value, keras.layers.Layer):
            for weight in value.weights:
                if id(weight) not in seen:
                    label = f"{attribute}/{_variable_label(weight)}"
                    variables.append((label, weight))
                    seen.add(id(weight))
    return variables


def _variable_label(variable: Any) -> str:
    return str(getattr(variable, "path", None) or variable.name)


def _split_directions(
    variables: list[tuple[str, Any]], bidirectional: bool, description: str
) -> tuple[list[Any], list[Any], list[str]]:
    """Splits a BiLSTM's weights into forward and backward ones.

    Variables whose names mark the backward direction (bw, backward,
    reverse) go to it. When the names do not split them evenly, the first
    half is taken as forward, as Keras' `Bidirectional` orders them.
    """
    if not bidirectional:
        return [v for _, v in variables], [], [label for label, _ in variables]
    if len(variables) % 2:
        raise UserCodeError(
            f"{description} is declared bidirectional but has "
            f"{len(variables)} weights ({', '.join(l for l, _ in variables)})"
            ", which do not split into two equal directions."
        )
    backward = [
        bool(_BACKWARD_NAME.search(label.lower())) for label, _ in variables
    ]
    if sum(backward) == len(variables) // 2:
        ordered = [item for item, bw in zip(variables, backward) if not bw]
        ordered += [item for item, bw in zip(variables, backward) if bw]
    else:
        ordered = list(variables)
    half = len(ordered) // 2
    return (
        [v for _, v in ordered[:half]],
        [v for _, v in ordered[half:]],
        [label for label, _ in ordered],
    )


def _describe(value: Any) -> str:
    kind = f"an object of type {type(value).__name__}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return f"{kind} with {len(value)} items"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{kind} of shape {tuple(shape)}"
    return kind
