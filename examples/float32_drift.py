"""Measure how far two float32 trainings drift when they differ by one ulp.

Trains the v1 built-in twice on the same MNIST batches from the same
weights, except that one recurrent entry of the second copy's kernel (the
last row, which multiplies `h`) is moved by one float32 ulp
(`np.nextafter`). An input row would not do: MNIST's border pixels are
always zero, so their kernel rows never change any result.

Each printed row gives both accuracies and the largest test-logit
difference, like `lstmkit compare`, so the drift of lstmkit against the
built-in can be set beside the drift of the built-in against itself.

Usage:
    python examples/float32_drift.py --data-dir ../shared/data/mnist
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lstmkit.compare.backends import BuiltinBackend  # noqa: E402
from lstmkit.compare.models import copy_weights, make_model  # noqa: E402
from lstmkit.compare.tasks import TASKS  # noqa: E402
from lstmkit.compare.training import train_side_by_side  # noqa: E402


def main() -> None:
    """Parses the options, trains both copies and prints one row per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model", default="lstm", choices=("lstm", "bilstm"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    task_data = TASKS["mnist"].prepare(args.data_dir, args.seed, None)
    reference = make_model(task_data, BuiltinBackend(args.model), 128)
    perturbed = make_model(task_data, BuiltinBackend(args.model), 128)
    copy_weights(perturbed, reference)

    kernel = perturbed.cells[0].weights[0]
    values = kernel.numpy()
    values[-1, 0] = np.nextafter(values[-1, 0], np.float32(np.inf))
    kernel.assign(values)

    def report(epoch, result):
        cells = [f"{epoch:>3}"]
        for name, history in result.histories.items():
            accuracy = 100 * history.metrics["test_accuracy"][-1]
            cells.append(f"{name} {accuracy:6.2f}%")
        cells.append(f"max |dlogit| {result.logit_diffs[-1]:.2e}")
        print("  ".join(cells), flush=True)

    train_side_by_side(
        {"builtin": reference, "builtin+1ulp": perturbed},
        task_data,
        epochs=args.epochs,
        batch_size=128,
        learning_rate=1e-3,
        seed=args.seed,
        on_epoch_end=report,
        progress=False,
    )


if __name__ == "__main__":
    main()
