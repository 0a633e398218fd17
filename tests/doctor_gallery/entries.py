"""Every gallery case with the faults the doctor must name.

Each broken case plants one fault (a few plant two) in the hand-written
LSTM, in each of the three shapes of user code. The function shape
declares no convention, so the doctor infers it; the Keras layer declares
"keras" and the `tf.Module` "torch".
"""

import dataclasses
from collections.abc import Callable

from lstmkit import doctor
from . import builtins_wrapped
from .handwritten import Faults, Spec
from .shapes import SHAPES

# Convention and declared convention of each shape.
SHAPE_CONVENTIONS = {
    "function": ("v1", None),
    "keras": ("keras", "keras"),
    "module": ("torch", "torch"),
}

# A gate order with the candidate and forget blocks swapped, per convention.
_WRONG_ORDER = {"v1": "ifjo", "keras": "icfo", "torch": "igfo"}

# Forget-bias faults as (run-time, stored) per convention; PyTorch adds no
# forget bias, so "missing" is no fault there.
_FORGET_BIAS = {
    "missing": {"v1": (0.0, 0.0), "keras": (0.0, 0.0)},
    "doubled": {"v1": (1.0, 1.0), "keras": (1.0, 1.0), "torch": (1.0, 1.0)},
    "misplaced": {"v1": (0.0, 1.0), "keras": (1.0, 0.0), "torch": (1.0, 0.0)},
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One gallery case.

    Attributes:
        name: unique test id.
        make: creates the adapter.
        faults: the check ids that must report FAULT, and no others.
        warnings: the check ids that must report WARN.
    """

    name: str
    make: Callable[[], doctor.Adapter]
    faults: frozenset[str]
    warnings: frozenset[str] = frozenset()


def _broken(convention: str, case: str) -> tuple[Faults, set[str]] | None:
    """The planted faults of a case and the checks that must fail."""
    if case == "gate_order":
        return Faults(gate_order=_WRONG_ORDER[convention]), {"layout"}
    if case.startswith("forget_bias_"):
        values = _FORGET_BIAS[case.removeprefix("forget_bias_")]
        if convention not in values:
            return None
        runtime, stored = values[convention]
        faults = Faults(runtime_forget_bias=runtime, stored_forget_bias=stored)
        return faults, {"forget_bias"}
    simple = {
        "normal_init": (Faults(normal_init=True), {"initialization"}),
        "outputs_not_zeroed": (Faults(zero_outputs=False), {"padding_outputs"}),
        "state_after_padding": (Faults(copy_state=False), {"padding_state"}),
        "end_aligned": (Faults(end_aligned=True), {"padding_values"}),
        "mask_multiplied": (Faults(multiply_mask=True), {"padding_nan"}),
        "state_swapped": (Faults(swap_state=True), {"state_order"}),
        "recurrent_from_c": (Faults(recurrent_from_c=True), {"divergence"}),
        "lengths_ignored": (
            Faults(use_lengths=False),
            {"padding_outputs", "padding_state"},
        ),
        "gate_order_and_forget_bias": (
            Faults(gate_order=_WRONG_ORDER[convention],
                   runtime_forget_bias=0.0, stored_forget_bias=0.0),
            {"layout", "forget_bias"},
        ),
    }
    return simple[case]


UNIDIRECTIONAL_CASES = (
    "gate_order",
    "forget_bias_missing",
    "forget_bias_doubled",
    "forget_bias_misplaced",
    "normal_init",
    "outputs_not_zeroed",
    "state_after_padding",
    "end_aligned",
    "mask_multiplied",
    "state_swapped",
    "recurrent_from_c",
    "lengths_ignored",
)

BIDIRECTIONAL_CASES = {
    "no_reverse_back": (Faults(reverse_back=False), {"bidi_reverse_back"}),
    "whole_axis": (Faults(whole_axis=True), {"bidi_per_length"}),
    "directions_swapped": (Faults(swap_directions=True), {"bidi_order"}),
    "no_reverse_back_state_swapped": (
        Faults(reverse_back=False, swap_state=True),
        {"bidi_reverse_back", "state_order"},
    ),
}


def _adapter(shape: str, spec: Spec, bidirectional: bool, declared):
    def make() -> doctor.Adapter:
        return SHAPES[shape](spec, bidirectional=bidirectional,
                             convention=declared)

    return make


def broken_entries() -> list[Entry]:
    """One entry per shape and planted fault."""
    entries = []
    for shape, (convention, declared) in SHAPE_CONVENTIONS.items():
        for case in UNIDIRECTIONAL_CASES:
            planted = _broken(convention, case)
            if planted is None:
                continue
            faults, checks = planted
            spec = Spec(convention, faults)
            # Ignoring the lengths runs the cell on NaN padding, which
            # makes the weight gradients NaN, as in the v1 built-in.
            warnings = {"padding_nan"} if case == "lengths_ignored" else set()
            entries.append(Entry(
                f"{shape}-{case}",
                _adapter(shape, spec, False, declared),
                frozenset(checks),
                frozenset(warnings),
            ))
        for case, (faults, checks) in BIDIRECTIONAL_CASES.items():
            spec = Spec(convention, faults)
            entries.append(Entry(
                f"{shape}-bi-{case}",
                _adapter(shape, spec, True, declared),
                frozenset(checks),
            ))
    entries.append(Entry(
        "function-split_glorot",
        _adapter("function", Spec("v1", Faults(split_glorot=True)), False,
                 None),
        frozenset({"initialization"}),
    ))
    entries.append(Entry(
        "function-gate_order_and_forget_bias",
        _adapter("function", Spec("v1", _broken(
            "v1", "gate_order_and_forget_bias")[0]), False, "v1"),
        frozenset({"layout", "forget_bias"}),
    ))
    return entries


def correct_entries() -> list[Entry]:
    """Correct code, for which the doctor must report no fault."""
    nan_warning = frozenset({"padding_nan"})
    entries = [
        Entry(f"{shape}-correct", _adapter(shape, Spec(convention), False,
                                           declared), frozenset())
        for shape, (convention, declared) in SHAPE_CONVENTIONS.items()
    ]
    entries += [
        Entry("function-bi-correct",
              _adapter("function", Spec("v1"), True, None), frozenset()),
        Entry("v1-dynamic-rnn", builtins_wrapped.v1_builtin, frozenset(),
              nan_warning),
        Entry("v1-bidirectional",
              lambda: builtins_wrapped.v1_builtin(True), frozenset(),
              nan_warning),
        Entry("lstmkit-dynamic-rnn", builtins_wrapped.lstmkit_module,
              frozenset()),
        Entry("lstmkit-bidirectional",
              lambda: builtins_wrapped.lstmkit_module(True), frozenset()),
        Entry("keras-lstm", builtins_wrapped.keras_lstm, frozenset(),
              nan_warning),
        Entry("keras-bidirectional", builtins_wrapped.keras_bidirectional,
              frozenset(), nan_warning),
        Entry("lstmkit-layer-keras",
              lambda: builtins_wrapped.lstmkit_layer("keras"), frozenset()),
        Entry("lstmkit-layer-tf1",
              lambda: builtins_wrapped.lstmkit_layer("tf1"), frozenset()),
        Entry("lstmkit-layer-bidirectional",
              builtins_wrapped.lstmkit_bidirectional_layer, frozenset()),
        Entry("layer-norm-cell", builtins_wrapped.layer_norm_module,
              frozenset()),
        Entry("layer-norm-cell-bi",
              lambda: builtins_wrapped.layer_norm_module(True), frozenset()),
    ]
    return entries
