"""The registry of benchmarked implementations, one entry each.

`lstmkit bench --list` prints this registry. To benchmark another
implementation, add an `Implementation` to `_ENTRIES` whose `build`
returns a `BenchModel` (see `lstmkit.bench.models`). This module imports
no TensorFlow, so that listing and validating names stays fast.
"""

import dataclasses
import importlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

# Meaning of each kind: whether it is checked and how it is reported.
KINDS = {
    "lstmkit": "lstmkit's LSTM, checked against the reference",
    "variant": "lstmkit variant cell, timed only (no v1 counterpart)",
    "builtin": "built-in, checked, counted for the fastest built-in",
    "raw_op": "fused raw op, checked, reported beside the built-ins",
    "bound": "arithmetic lower bound, not an LSTM, timed only",
}

# The correctness check compares every checked implementation with this one.
REFERENCE = "v1_dynamic_rnn"


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One benchmarked implementation.

    Attributes:
        name: the name `--implementations` takes.
        description: one line for `--list` and the report.
        kind: a key of `KINDS`.
        build: creates the `BenchModel` of a case, called as
            `build(case, weights)` with one `V1Weights` per direction.
        jit_compile: compile the timed steps with XLA
            (`tf.function(jit_compile=True)`).
        per_row_lengths: whether the implementation honours a different
            length per row. Without it, variable-length cases report the
            implementation as not applicable.
    """

    name: str
    description: str
    kind: str
    build: Callable[..., Any]
    jit_compile: bool = False
    per_row_lengths: bool = True

    @property
    def checked(self) -> bool:
        """Whether the correctness check compares it with the reference."""
        return self.kind in ("lstmkit", "builtin", "raw_op")

    @property
    def builtin(self) -> bool:
        """Whether it counts for the fastest built-in."""
        return self.kind == "builtin"


def _lazy(module_name: str, class_name: str, **options: Any) -> Callable:
    """Returns a `build` that imports its model class on first use."""

    def build(case: Any, weights: list[Any]) -> Any:
        module = importlib.import_module(f"lstmkit.bench.{module_name}")
        return getattr(module, class_name)(case, weights, **options)

    return build


_ENTRIES = (
    Implementation(
        "lstmkit",
        "lstmkit.dynamic_rnn / bidirectional_dynamic_rnn with "
        "lstmkit.LSTMCell",
        "lstmkit",
        _lazy("models", "LstmkitModel"),
    ),
    Implementation(
        "lstmkit_xla",
        "lstmkit with the whole timed step under "
        "tf.function(jit_compile=True)",
        "lstmkit",
        _lazy("models", "LstmkitModel"),
        jit_compile=True,
    ),
    Implementation(
        "lstmkit_layer_norm",
        "lstmkit's drivers with lstmkit.LayerNormLSTMCell (layer norm of "
        "the gate pre-activations)",
        "variant",
        _lazy("models", "VariantModel", cell_name="LayerNormLSTMCell"),
    ),
    Implementation(
        "lstmkit_gru",
        "lstmkit's drivers with lstmkit.GRUCell (Keras GRU step, "
        "reset_after=True)",
        "variant",
        _lazy("models", "VariantModel", cell_name="GRUCell"),
    ),
    Implementation(
        REFERENCE,
        "tf.compat.v1.nn.dynamic_rnn / bidirectional_dynamic_rnn with the "
        "v1 LSTMCell from tf_keras (the reference)",
        "builtin",
        _lazy("models", "V1Model"),
    ),
    Implementation(
        "keras_lstm",
        "keras.layers.LSTM / keras.layers.Bidirectional (Keras 3), lengths "
        "as a mask",
        "builtin",
        _lazy("models", "KerasModel"),
    ),
    Implementation(
        "keras_lstm_xla",
        "keras_lstm with the timed step under tf.function(jit_compile=True)",
        "builtin",
        _lazy("models", "KerasModel"),
        jit_compile=True,
    ),
    Implementation(
        "tf_keras_lstm",
        "tf_keras.layers.LSTM / Bidirectional (Keras 2), lengths as a mask",
        "builtin",
        _lazy("models", "TfKerasModel"),
    ),
    Implementation(
        "block_lstm",
        "tf.raw_ops.BlockLSTM, cell_clip disabled; fixed lengths only",
        "raw_op",
        _lazy("raw_ops", "BlockLSTMModel"),
        per_row_lengths=False,
    ),
    Implementation(
        "block_lstm_v2",
        "tf.raw_ops.BlockLSTMV2 with BlockLSTMGradV2 as its gradient; fixed "
        "lengths only",
        "raw_op",
        _lazy("raw_ops", "BlockLSTMV2Model"),
        per_row_lengths=False,
    ),
    Implementation(
        "bound_batched_matmul",
        "lower bound: the layer's matrix products as one large product per "
        "direction (all steps at once)",
        "bound",
        _lazy("bounds", "BatchedMatmulBound"),
    ),
    Implementation(
        "bound_matmul_chain",
        "lower bound: one recurrent product per step without gate math, "
        "hand-written gradient, under XLA",
        "bound",
        _lazy("bounds", "MatmulChainBound"),
        jit_compile=True,
    ),
)

REGISTRY = {entry.name: entry for entry in _ENTRIES}


def select(names: Iterable[str] | None = None) -> list[Implementation]:
    """Returns the named implementations in registry order.

    Args:
        names: names from `REGISTRY`, or None for all of them.

    Raises:
        ValueError: a name is not in the registry.
    """
    if names is None:
        return list(REGISTRY.values())
    names = set(names)
    unknown = sorted(names - set(REGISTRY))
    if unknown:
        raise ValueError(
            f"unknown implementation {', '.join(map(repr, unknown))}: choose "
            f"from {', '.join(REGISTRY)} (lstmkit bench --list describes "
            "them)"
        )
    return [entry for entry in REGISTRY.values() if entry.name in names]


def format_registry() -> str:
    """Formats the registry as one line per implementation, by kind."""
    width = max(len(name) for name in REGISTRY)
    lines = []
    for kind, meaning in KINDS.items():
        lines.append(f"{kind}: {meaning}")
        for entry in REGISTRY.values():
            if entry.kind == kind:
                lines.append(f"  {entry.name:<{width}}  {entry.description}")
    return "\n".join(lines)
