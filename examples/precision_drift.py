"""Measures how far low-precision LSTM loops drift from float64.

Runs one set of float64 weights over long random sequences in several
precisions and prints the largest error of the final cell state c and the
mean error of h over the last tenth of the steps, both against float64:

* `float32`: the whole loop in float32.
* `float16`, `bfloat16`: a cell created with that dtype, so every value,
  c included, is rounded to it (the v1 cell's behaviour in that dtype).
* `mixed_float16`, `mixed_bfloat16`: lstmkit under the Keras policy. The
  matrix products and h are low precision, and the gates and c float32.
* `mixed_*, c rounded`: as the mixed policy, but c is rounded to the low
  dtype after every step, which isolates the effect of storing c.

With `--forget-bias 8` and recurrent weights scaled down (`--recurrent-scale
0.2`), the forget gate stays near 1, so c sums its inputs over hundreds of
steps while the dynamics stay stable: the regime where rounding of c and of
the forget gate accumulates. docs/precision.md records the output.

    python examples/precision_drift.py --steps 100 1000 4000
"""

import argparse

import numpy as np
import tensorflow as tf

import lstmkit


class RoundedCellStateLSTMCell(lstmkit.LSTMCell):
    """The mixed-precision LSTM step with c rounded to the compute dtype."""

    def step(self, projected, state, weights=None):
        output, (c, h) = super().step(projected, state, weights)
        rounded = tf.cast(tf.cast(c, self.compute_dtype), c.dtype)
        return output, lstmkit.LSTMStateTuple(rounded, h)


VARIANTS = {
    "float32": (lstmkit.LSTMCell, "float32"),
    "float16": (lstmkit.LSTMCell, "float16"),
    "mixed_float16": (lstmkit.LSTMCell, "mixed_float16"),
    "mixed_float16, c rounded": (RoundedCellStateLSTMCell, "mixed_float16"),
    "bfloat16": (lstmkit.LSTMCell, "bfloat16"),
    "mixed_bfloat16": (lstmkit.LSTMCell, "mixed_bfloat16"),
    "mixed_bfloat16, c rounded": (RoundedCellStateLSTMCell, "mixed_bfloat16"),
}


def reference_weights(args: argparse.Namespace, depth: int) -> list:
    """Returns float64 weights with the recurrent rows scaled down."""
    cell = lstmkit.LSTMCell(
        args.units,
        forget_bias=args.forget_bias,
        dtype="float64",
        initializer=tf.keras.initializers.GlorotUniform(seed=args.seed),
    )
    cell.build([depth])
    kernel, bias = cell.get_weights()
    kernel[depth:] *= args.recurrent_scale
    return [kernel, bias]


def run(cell_class, policy, weights, x, args):
    """Returns `(outputs, final c)` as float64 arrays."""
    cell = cell_class(args.units, forget_bias=args.forget_bias, dtype=policy)
    cell.build([x.shape[-1]])
    cell.set_weights(weights)
    inputs = tf.cast(x, cell.compute_dtype)
    outputs, state = lstmkit.dynamic_rnn(cell, inputs)
    return (
        tf.cast(outputs, tf.float64).numpy(),
        tf.cast(state.c, tf.float64).numpy(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--forget-bias", type=float, default=8.0)
    parser.add_argument("--recurrent-scale", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    weights = reference_weights(args, args.depth)
    for steps in args.steps:
        x = rng.standard_normal((args.batch, steps, args.depth))
        reference_h, reference_c = run(
            lstmkit.LSTMCell, "float64", weights, x, args
        )
        tail = max(1, steps // 10)
        print(
            f"steps {steps}, forget_bias {args.forget_bias}, max |c| "
            f"{np.abs(reference_c).max():.1f}"
        )
        for name, (cell_class, policy) in VARIANTS.items():
            h, c = run(cell_class, policy, weights, x, args)
            c_error = np.abs(c - reference_c).max()
            h_error = np.abs(h - reference_h)[:, -tail:].mean()
            print(
                f"  {name:27s} max |c error| {c_error:.2e}   "
                f"mean |h error| (last tenth) {h_error:.2e}"
            )


if __name__ == "__main__":
    main()
