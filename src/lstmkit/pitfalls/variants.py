"""The pitfall variants: RNN back ends that each make one known mistake.

Each class below changes one method of the correct
`lstmkit.compare.backends.LstmkitBackend`. A variant's `applies_to`
returns whether the mistake changes the numbers of a model and task.
"""

from typing import Any

import tensorflow as tf

import lstmkit
from lstmkit.compare.backends import LstmkitBackend

# Standard deviation of the hand-written initialization, a common choice
# in tutorials: tf.random.normal(shape, stddev=0.1) for every weight.
NORMAL_INIT_STDDEV = 0.1


class CorrectBackend(LstmkitBackend):
    """lstmkit as shipped: the baseline of the experiment."""

    name = "correct"
    description = "lstmkit: v1 initialization, forget bias, lengths, reversal"

    @staticmethod
    def applies_to(model: str, tagging: bool, has_lengths: bool) -> bool:
        return True

    def reinitialize(self, cells: list[Any], seed: int) -> None:
        """Changes the cells' initial weights after the shared copy."""


class NormalInitBackend(CorrectBackend):
    """Every cell weight drawn from N(0, 0.1) instead of v1's Glorot uniform.

    The bias stays zero and the forget bias stays, so initialization is the
    only difference.
    """

    name = "normal_init"
    description = (
        f"kernel from tf.random.normal(stddev={NORMAL_INIT_STDDEV}) "
        "instead of Glorot uniform"
    )

    def reinitialize(self, cells: list[Any], seed: int) -> None:
        for index, cell in enumerate(cells):
            shape = cell.kernel.shape
            values = tf.random.stateless_normal(
                shape, seed=[seed, index], stddev=NORMAL_INIT_STDDEV
            )
            cell.kernel.assign(values)


class NoForgetBiasBackend(CorrectBackend):
    """The forget gate gets no +1: `forget_bias=0` with a zero bias."""

    name = "no_forget_bias"
    description = "forget_bias=0 (no +1 on the forget gate)"

    def make_cell(self, units: int, input_depth: int) -> Any:
        cell = lstmkit.LSTMCell(units, forget_bias=0.0)
        cell.build((input_depth,))
        return cell


class PaddingIgnoredBackend(CorrectBackend):
    """Lengths are never passed: padded steps are processed as data."""

    name = "padding_ignored"
    description = "sequence_length not passed; padding read as data"

    @staticmethod
    def applies_to(model: str, tagging: bool, has_lengths: bool) -> bool:
        return has_lengths

    def run(
        self, cells: list[Any], x: tf.Tensor, lengths: tf.Tensor | None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return super().run(cells, x, None)


class NoReverseBackBackend(CorrectBackend):
    """The backward outputs stay in reversed order when returned.

    Inputs are reversed per row with `tf.reverse_sequence`, as they should
    be, but the outputs are not reversed back, so `output_bw[:, t]` belongs
    to input step `length - 1 - t`.
    """

    name = "no_reverse_back"
    description = "backward outputs not reversed back to input order"

    @staticmethod
    def applies_to(model: str, tagging: bool, has_lengths: bool) -> bool:
        # Only per-step outputs are misaligned; final states are right.
        return model == "bilstm" and tagging

    def bidirectional(self, cell_fw, cell_bw, x, lengths):
        forward, state_fw = self.unidirectional(cell_fw, x, lengths)
        reversed_x = _reverse_rows(x, lengths)
        backward, state_bw = self.unidirectional(cell_bw, reversed_x, lengths)
        return (forward, backward), (state_fw, state_bw)


class WholeAxisReverseBackend(CorrectBackend):
    """`tf.reverse` over the whole time axis instead of per-row reversal.

    The backward direction then reads the padding first, and its outputs
    are flipped back over the whole axis.
    """

    name = "whole_axis_reverse"
    description = "tf.reverse over the whole time axis, padding read first"

    @staticmethod
    def applies_to(model: str, tagging: bool, has_lengths: bool) -> bool:
        return model == "bilstm" and has_lengths

    def bidirectional(self, cell_fw, cell_bw, x, lengths):
        forward, state_fw = self.unidirectional(cell_fw, x, lengths)
        flipped, state_bw = self.unidirectional(
            cell_bw, tf.reverse(x, axis=[1]), lengths
        )
        backward = tf.reverse(flipped, axis=[1])
        return (forward, backward), (state_fw, state_bw)


class LastPaddedStepBackend(CorrectBackend):
    """The final state is read as `outputs[:, -1]`, the last padded step.

    With lengths, outputs past a row's length are zero, so every row
    shorter than the batch's longest gets zeros instead of its final `h`.
    """

    name = "last_padded_step"
    description = "final h read at outputs[:, -1] instead of the length"

    @staticmethod
    def applies_to(model: str, tagging: bool, has_lengths: bool) -> bool:
        return has_lengths and not tagging

    def run(self, cells, x, lengths):
        outputs, _ = super().run(cells, x, lengths)
        return outputs, outputs[:, -1]


def _reverse_rows(x: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
    if lengths is None:
        return tf.reverse(x, axis=[1])
    return tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)


VARIANTS = {
    backend.name: backend
    for backend in (
        CorrectBackend,
        NormalInitBackend,
        NoForgetBiasBackend,
        PaddingIgnoredBackend,
        NoReverseBackBackend,
        WholeAxisReverseBackend,
        LastPaddedStepBackend,
    )
}


def variants_for(model: str, tagging: bool, has_lengths: bool) -> list[str]:
    """Names of the variants whose mistake changes this model's numbers."""
    return [
        name
        for name, backend in VARIANTS.items()
        if backend.applies_to(model, tagging, has_lengths)
    ]


__all__ = ["VARIANTS", "variants_for"]
