"""`lstmkit compare`: train lstmkit and the built-in side by side."""

import argparse
import contextlib
import logging
import pathlib
import shutil
import sys
from collections.abc import Callable
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
            "the v1 LSTMCell. Writes report.json, learning_curves.png and "
            "a checkpoint after every epoch (checkpoints/) to --out. "
            f"Tasks: {tasks}."
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
        "--reference", choices=("v1", "keras"), default=None,
        help="v1: lstmkit's cell and drivers against tf.compat.v1.nn with "
        "the v1 LSTMCell; keras: lstmkit.layers against keras.layers.LSTM "
        "and Bidirectional (default: v1, or keras under a mixed "
        "--precision)",
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
    _add_training_arguments(parser)
    parser.set_defaults(handler=run)


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    from lstmkit.compare.distribute import STRATEGIES
    from lstmkit.compare.precision import PRECISIONS

    parser.add_argument(
        "--strategy", choices=STRATEGIES, default="default",
        help="default: one device; mirrored: tf.distribute.MirroredStrategy "
        "over all GPUs, or over the --cpu-devices logical CPUs; "
        "multiworker: MultiWorkerMirroredStrategy over the workers in "
        "$TF_CONFIG (see docs/distributed.md). --batch-size stays the "
        "global batch (default: default)",
    )
    parser.add_argument(
        "--cpu-devices", type=positive_int, default=None,
        help="with --strategy mirrored: split the CPU into N logical "
        "devices, one replica each",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="float32",
        help="Keras dtype policy of both models: float32 weights with "
        "float16 or bfloat16 computation; mixed_float16 adds dynamic loss "
        "scaling (default: float32)",
    )
    parser.add_argument(
        "--deterministic", action="store_true",
        help="enable TensorFlow's op determinism, so that two runs with one "
        "--seed write equal reports apart from timings",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in --out from its latest checkpoint (one is "
        "written after every epoch) with the same options; --epochs may "
        "be raised",
    )


def run(args: argparse.Namespace) -> int:
    """Runs the comparison.

    Returns:
        0 on success, 2 on bad input or missing data, 143 when SIGTERM
        stopped the run (resume it with `--resume`).
    """
    from lstmkit.compare.interrupt import SIGTERM_EXIT_STATUS
    from lstmkit.compare.training import TrainingInterrupted
    from lstmkit.data import DataFormatError, DataNotFoundError

    try:
        strategy = _start_strategy(args)
        _check_options(args)
        _apply_task_defaults(args)
        out = args.out or default_out_dir(args.task, args.model)
        chief = _is_chief(strategy)
        if chief:
            _check_out(args, out)
        task_data = _prepare_task(args)
        settings = _settings(args, task_data, strategy)
        if args.resume:
            _check_resume(out, settings)
        if chief:
            make_out_dir(out)
            _remove_old_checkpoints(args, out)
    except (DataNotFoundError, DataFormatError, ValueError) as error:
        print(f"lstmkit compare: error: {error}", file=sys.stderr)
        return 2
    try:
        _train_and_report(args, task_data, out, strategy, settings)
    except TrainingInterrupted as stopped:
        print(
            f"lstmkit compare: stopped by SIGTERM after epoch "
            f"{stopped.epoch}; continue with the same options and --resume.",
            file=sys.stderr,
        )
        return SIGTERM_EXIT_STATUS
    except ValueError as error:
        print(f"lstmkit compare: error: {error}", file=sys.stderr)
        return 2
    return 0


def _start_strategy(args: argparse.Namespace) -> Any:
    """Creates the strategy first: multi-worker needs a fresh TensorFlow."""
    from lstmkit.compare.distribute import make_strategy, split_cpu

    if args.cpu_devices is not None:
        if args.strategy != "mirrored":
            raise ValueError(
                "--cpu-devices applies only to --strategy mirrored; drop "
                "it or add --strategy mirrored."
            )
        split_cpu(args.cpu_devices)
    if args.strategy == "default":
        return None
    return make_strategy(args.strategy)


def _is_chief(strategy: Any) -> bool:
    from lstmkit.compare.distribute import is_chief

    return strategy is None or is_chief(strategy)


def _check_options(args: argparse.Namespace) -> None:
    from lstmkit.compare.precision import check_reference, default_reference

    if args.reference is None:
        args.reference = default_reference(args.precision)
    check_reference(args.precision, args.reference, args.cell)
    if args.cell != "lstm" and args.reference != "v1":
        raise ValueError(
            f"--cell {args.cell} compares with the v1 built-in LSTM; "
            "drop --reference keras."
        )
    if args.resume and args.out is None:
        raise ValueError(
            "--resume needs --out, the folder of the run to continue."
        )
    if args.resume and args.overwrite:
        raise ValueError(
            "--resume continues the run in --out and --overwrite replaces "
            "it; pass only one of them."
        )


def _check_out(args: argparse.Namespace, out: pathlib.Path) -> None:
    from lstmkit.compare.checkpoints import CHECKPOINT_DIR
    from lstmkit.compare.report import REPORT_NAME

    check_out_dir(out, REPORT_NAME, args.overwrite or args.resume)
    checkpoints = out / CHECKPOINT_DIR
    if args.resume or args.overwrite or not checkpoints.exists():
        return
    raise ValueError(
        f"--out {out} already contains checkpoints of an earlier run; "
        "pass --resume to continue it or --overwrite to start over."
    )


def _remove_old_checkpoints(
    args: argparse.Namespace, out: pathlib.Path
) -> None:
    # Called once the run is ready to start, so a failed start keeps them.
    from lstmkit.compare.checkpoints import CHECKPOINT_DIR

    checkpoints = out / CHECKPOINT_DIR
    if args.overwrite and checkpoints.exists():
        logger.info("Removing the checkpoints of the earlier run in %s", out)
        shutil.rmtree(checkpoints)


def _check_resume(out: pathlib.Path, settings: dict[str, Any]) -> None:
    from lstmkit.compare.checkpoints import (
        CHECKPOINT_DIR,
        check_settings,
        latest_checkpoint,
        read_state,
    )

    path = latest_checkpoint(out / CHECKPOINT_DIR)
    saved = read_state(path)
    check_settings(saved["settings"], settings)
    if saved["epoch"] > settings["epochs"]:
        raise ValueError(
            f"--epochs {settings['epochs']} is below the {saved['epoch']} "
            f"epochs that {path} has already trained; pass --epochs "
            f"{saved['epoch']} or more."
        )


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
    args: argparse.Namespace,
    task_data: Any,
    out: pathlib.Path,
    strategy: Any,
    settings: dict[str, Any],
) -> None:
    from lstmkit.compare.determinism import op_determinism
    from lstmkit.compare.interrupt import stop_on_sigterm
    from lstmkit.compare.precision import precision_policy

    with (
        precision_policy(args.precision),
        op_determinism(args.deterministic),
        stop_on_sigterm() as should_stop,
    ):
        _train(args, task_data, out, strategy, settings, should_stop)


def _train(
    args: argparse.Namespace,
    task_data: Any,
    out: pathlib.Path,
    strategy: Any,
    settings: dict[str, Any],
    should_stop: Callable[[], bool],
) -> None:
    import keras

    from lstmkit.compare import report
    from lstmkit.compare.models import make_twin_models
    from lstmkit.compare.precision import uses_loss_scaling
    from lstmkit.compare.training import train_side_by_side

    keras.utils.set_random_seed(args.seed)
    scope = contextlib.nullcontext()
    if strategy is not None:
        scope = strategy.scope()
    with scope:
        models = make_twin_models(
            task_data, args.model, args.units, args.reference, args.cell
        )
    chief = _is_chief(strategy)
    store = _checkpoint_store(out, settings, strategy, chief)
    title = (
        f"{args.task}, {args.model}, {args.units} units, "
        f"{settings['train_examples']} training examples"
    )
    print(
        f"Training {args.model} on {args.task} "
        f"({settings['data_source']}): {settings['train_examples']} train / "
        f"{settings['test_examples']} test, {args.epochs} epochs"
        f"{_strategy_note(settings)}.\n"
        f"Both models start from identical weights.\n",
        flush=True,
    )
    printer = _EpochPrinter(out if chief else None, settings, title)
    try:
        result = train_side_by_side(
            models,
            task_data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=args.seed,
            on_epoch_end=printer,
            progress=not args.no_progress,
            strategy=strategy,
            loss_scaling=uses_loss_scaling(args.precision),
            checkpoints=store,
            resume=args.resume,
            should_stop=should_stop,
        )
    finally:
        store.remove_write_directory()
    if not result.logit_diffs:
        return
    if chief and printer.written_epochs != len(result.logit_diffs):
        # A resumed run that had nothing left to train rewrites its report.
        printer.write(result)
    print(
        f"\nLargest absolute difference of the test logits after the last "
        f"epoch: {result.logit_diffs[-1]:.3g}\n"
        f"Report: {out / report.REPORT_NAME}\n"
        f"Plot:   {out / report.PLOT_NAME}"
    )


class _EpochPrinter:
    """Prints each epoch's table row and rewrites the reports (chief only)."""

    def __init__(
        self, out: pathlib.Path | None, settings: dict[str, Any], title: str
    ):
        self.out = out
        self.settings = settings
        self.title = title
        self.header_printed = False
        self.written_epochs = 0

    def __call__(self, epoch: int, result: Any) -> None:
        from lstmkit.compare import report

        if not self.header_printed:
            print(report.table_header(result), flush=True)
            self.header_printed = True
        print(report.format_epoch_row(epoch, result), flush=True)
        self.write(result)

    def write(self, result: Any) -> None:
        from lstmkit.compare import report

        if self.out is None:
            return
        document = report.build_report(result, self.settings)
        report.write_json(document, self.out / report.REPORT_NAME)
        report.plot_learning_curves(
            document, self.out / report.PLOT_NAME, self.title
        )
        self.written_epochs = len(result.logit_diffs)


def _checkpoint_store(
    out: pathlib.Path, settings: dict[str, Any], strategy: Any, chief: bool
) -> Any:
    from lstmkit.compare.checkpoints import (
        CHECKPOINT_DIR,
        CheckpointStore,
        temporary_write_directory,
    )
    from lstmkit.compare.distribute import worker_label

    write_directory = None
    if not chief:
        write_directory = temporary_write_directory(worker_label(strategy))
    return CheckpointStore(out / CHECKPOINT_DIR, settings, write_directory)


def _strategy_note(settings: dict[str, Any]) -> str:
    notes = []
    if settings["strategy"] != "default":
        notes.append(
            f"{settings['strategy']} strategy, {settings['replicas']} "
            "replicas"
        )
    if settings["precision"] != "float32":
        notes.append(settings["precision"])
    return f" ({', '.join(notes)})" if notes else ""


def _settings(
    args: argparse.Namespace, task_data: Any, strategy: Any
) -> dict[str, Any]:
    replicas = 1 if strategy is None else strategy.num_replicas_in_sync
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
        "strategy": args.strategy,
        "replicas": replicas,
        "precision": args.precision,
        "deterministic": args.deterministic,
    }
