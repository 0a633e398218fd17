"""`lstmkit compare`: train lstmkit and the built-in side by side."""

import argparse
import logging
import pathlib
import sys
from typing import Any

from lstmkit.cli.arguments import (
    apply_bucketing,
    check_out_dir,
    default_out_dir,
    make_out_dir,
    positive_float,
    positive_int,
    seed_int,
)

logger = logging.getLogger(__name__)

DEFAULT_TASK = "digits"
REFERENCE_NAMES = {
    "v1": "tf.compat.v1.nn with the v1 LSTMCell (tf_keras)",
    "keras": "keras.layers.LSTM / keras.layers.Bidirectional (Keras 3)",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `compare` subcommand."""
    from lstmkit.compare.backends import CELLS
    from lstmkit.compare.models import MODELS
    from lstmkit.compare.tasks import TASKS

    tasks = ", ".join(f"{t.name} ({t.description})" for t in TASKS.values())
    parser = subparsers.add_parser(
        "compare",
        help="train lstmkit and the TensorFlow built-in side by side",
        description=(
            "Train the same classifier twice, from identical initial weights "
            "on identical batches: once on lstmkit and once on "
            "tf.compat.v1.nn.dynamic_rnn (or bidirectional_dynamic_rnn) with "
            "the v1 LSTMCell. Writes report.json and learning_curves.png "
            f"to --out. Tasks: {tasks}."
        ),
    )
    parser.add_argument(
        "--task", choices=sorted(TASKS), default=DEFAULT_TASK,
        help=f"data set to train on (default: {DEFAULT_TASK})",
    )
    parser.add_argument(
        "--model", choices=MODELS, default=None,
        help="lstm: one direction; bilstm: both directions, concatenated "
        "(default: bilstm for tagging tasks, lstm otherwise)",
    )
    parser.add_argument(
        "--data-dir", type=pathlib.Path, default=None,
        help="folder that contains the data files themselves; without it "
        "lstmkit looks in $LSTMKIT_DATA/<task> and then in Keras' cache",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=None,
        help="passes over the training set (default: per task, "
        + ", ".join(f"{t.name} {t.epochs}" for t in TASKS.values())
        + ")",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None,
        help="examples per training step (default: per task, "
        + ", ".join(f"{t.name} {t.batch_size}" for t in TASKS.values())
        + ")",
    )
    parser.add_argument(
        "--units", type=positive_int, default=None,
        help="LSTM units per direction (default: per task, "
        + ", ".join(f"{t.name} {t.units}" for t in TASKS.values())
        + ")",
    )
    parser.add_argument(
        "--learning-rate", type=positive_float, default=1e-3,
        help="Adam learning rate (default: 0.001)",
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None,
        help="use only the first N training examples; the test set stays "
        "whole",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0,
        help="seeds weights, data split and shuffling (default: 0)",
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=None,
        help="output folder (default: runs/<task>-<model>-<time>)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace the report in an --out folder that already has one",
    )
    parser.add_argument(
        "--no-progress", action="store_true",
        help="hide the progress bar",
    )
    parser.add_argument(
        "--reference", choices=("v1", "keras"), default="v1",
        help="v1: lstmkit's cell and drivers against tf.compat.v1.nn with "
        "the v1 LSTMCell; keras: lstmkit.layers against keras.layers.LSTM "
        "and Bidirectional (default: v1)",
    )
    parser.add_argument(
        "--cell", choices=sorted(CELLS), default="lstm",
        help="lstmkit's cell; anything but lstm trains that variant beside "
        "the v1 built-in LSTM, sharing only embeddings and head "
        "(default: lstm)",
    )
    parser.add_argument(
        "--no-bucketing", action="store_true",
        help="tagging tasks: batch random sentences together instead of "
        "sentences of similar length, so batches hold more padding",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Runs the comparison; returns 0, or 2 on bad input or missing data."""
    from lstmkit.compare.report import REPORT_NAME
    from lstmkit.data import DataFormatError, DataNotFoundError

    try:
        if args.cell != "lstm" and args.reference != "v1":
            raise ValueError(
                f"--cell {args.cell} compares with the v1 built-in LSTM; "
                "drop --reference keras."
            )
        _apply_task_defaults(args)
        out = args.out or default_out_dir(args.task, args.model)
        check_out_dir(out, REPORT_NAME, args.overwrite)
        task_data = _prepare_task(args)
        make_out_dir(out)
    except (DataNotFoundError, DataFormatError, ValueError) as error:
        print(f"lstmkit compare: error: {error}", file=sys.stderr)
        return 2
    _train_and_report(args, task_data, out)
    return 0


def _apply_task_defaults(args: argparse.Namespace) -> None:
    from lstmkit.compare.tasks import TASKS

    task = TASKS[args.task]
    if args.epochs is None:
        args.epochs = task.epochs
    if args.model is None:
        args.model = task.model
    if args.units is None:
        args.units = task.units
    if args.batch_size is None:
        args.batch_size = task.batch_size


def _prepare_task(args: argparse.Namespace) -> Any:
    from lstmkit.compare.tasks import TASKS

    task_data = TASKS[args.task].prepare(args.data_dir, args.seed, args.limit)
    apply_bucketing(args, task_data)
    return task_data


def _train_and_report(
    args: argparse.Namespace, task_data: Any, out: pathlib.Path
) -> None:
    import keras

    from lstmkit.compare import report
    from lstmkit.compare.models import make_twin_models
    from lstmkit.compare.training import train_side_by_side

    keras.utils.set_random_seed(args.seed)
    models = make_twin_models(
        task_data, args.model, args.units, args.reference, args.cell
    )
    settings = _settings(args, task_data)
    title = (
        f"{args.task}, {args.model}, {args.units} units, "
        f"{settings['train_examples']} training examples"
    )
    print(
        f"Training {args.model} on {args.task} "
        f"({settings['data_source']}): {settings['train_examples']} train / "
        f"{settings['test_examples']} test, {args.epochs} epochs.\n"
        f"Both models start from identical weights.\n"
    )
    header_printed = False

    def on_epoch_end(epoch: int, result: Any) -> None:
        nonlocal header_printed
        if not header_printed:
            print(report.table_header(result), flush=True)
            header_printed = True
        print(report.format_epoch_row(epoch, result), flush=True)
        document = report.build_report(result, settings)
        report.write_json(document, out / report.REPORT_NAME)
        report.plot_learning_curves(document, out / report.PLOT_NAME, title)

    result = train_side_by_side(
        models,
        task_data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        on_epoch_end=on_epoch_end,
        progress=not args.no_progress,
    )
    print(
        f"\nLargest absolute difference of the test logits after the last "
        f"epoch: {result.logit_diffs[-1]:.3g}\n"
        f"Report: {out / report.REPORT_NAME}\n"
        f"Plot:   {out / report.PLOT_NAME}"
    )


def _settings(args: argparse.Namespace, task_data: Any) -> dict[str, Any]:
    return {
        "task": args.task,
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "units": args.units,
        "learning_rate": args.learning_rate,
        "limit": args.limit,
        "seed": args.seed,
        "optimizer": "adam",
        **task_data.settings(),
        "reference": REFERENCE_NAMES[args.reference],
        "cell": args.cell,
    }
