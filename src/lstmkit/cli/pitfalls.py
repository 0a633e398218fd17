"""`lstmkit pitfalls`: measure what each common LSTM mistake costs."""

import argparse
import logging
import pathlib
import shlex
import sys
from typing import Any

from lstmkit.cli.arguments import (
    apply_bucketing,
    check_out_dir,
    default_out_dir,
    make_out_dir,
    positive_float,
    positive_int,
)

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `pitfalls` subcommand."""
    from lstmkit.compare.tasks import TASKS
    from lstmkit.pitfalls.variants import VARIANTS

    variants = "; ".join(
        f"{name}: {backend.description}" for name, backend in VARIANTS.items()
    )
    parser = subparsers.add_parser(
        "pitfalls",
        help="train the correct LSTM beside deliberately broken variants",
        description=(
            "Train lstmkit's correct model and one variant per common "
            "mistake on the same task, from the same weights and batches, "
            "over several seeds. Writes pitfalls.json, pitfalls.md (a table "
            "of the final metric per variant) and pitfalls.png (learning "
            f"curves) to --out. Variants: {variants}."
        ),
    )
    parser.add_argument(
        "--task", choices=sorted(TASKS), default="vowels",
        help="data set (default: vowels)",
    )
    parser.add_argument(
        "--model", choices=("lstm", "bilstm"), default=None,
        help="model kind (default: the task's)",
    )
    parser.add_argument(
        "--variants", nargs="+", choices=sorted(VARIANTS), default=None,
        help="variants to train (default: every variant whose mistake "
        "changes this model's numbers)",
    )
    parser.add_argument(
        "--seeds", type=positive_int, default=3,
        help="number of seeds, 0 to N-1 (default: 3)",
    )
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="passes over the training set (default: "
                        "the task's)")
    parser.add_argument("--units", type=positive_int, default=None,
                        help="LSTM units per direction (default: the task's)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="examples per step (default: the task's)")
    parser.add_argument("--learning-rate", type=positive_float, default=1e-3,
                        help="Adam learning rate (default: 0.001)")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="use only the first N training examples")
    parser.add_argument("--data-dir", type=pathlib.Path, default=None,
                        help="folder that contains the data files themselves")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="output folder (default: "
                        "runs/pitfalls-<task>-<time>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the reports in an existing --out")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar")
    parser.add_argument(
        "--no-bucketing", action="store_true",
        help="tagging tasks: batch random sentences together instead of "
        "sentences of similar length, so batches hold more padding",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Runs the experiment; returns 0, or 2 on bad input or missing data."""
    from lstmkit.data import DataFormatError, DataNotFoundError
    from lstmkit.pitfalls.report import JSON_NAME

    try:
        out = args.out or default_out_dir("pitfalls", args.task)
        check_out_dir(out, JSON_NAME, args.overwrite)
        task_data, variants = _prepare(args)
        make_out_dir(out)
    except (DataNotFoundError, DataFormatError, ValueError) as error:
        print(f"lstmkit pitfalls: error: {error}", file=sys.stderr)
        return 2
    _run_and_report(args, task_data, variants, out)
    return 0


def _prepare(args: argparse.Namespace) -> tuple[Any, list[str]]:
    from lstmkit.compare.tasks import TASKS
    from lstmkit.pitfalls.variants import variants_for

    task = TASKS[args.task]
    args.model = args.model or task.model
    args.epochs = args.epochs or task.epochs
    args.units = args.units or task.units
    args.batch_size = args.batch_size or task.batch_size
    task_data = task.prepare(args.data_dir, 0, args.limit)
    apply_bucketing(args, task_data)

    tagging = getattr(task_data, "is_tagging", False)
    applicable = variants_for(args.model, tagging, task_data.uses_lengths)
    variants = args.variants or applicable
    useless = [v for v in variants if v not in applicable]
    if useless:
        raise ValueError(
            f"variants {', '.join(useless)} change nothing for a "
            f"{args.model} on --task {args.task}; choose from "
            f"{', '.join(applicable)}."
        )
    return task_data, variants


def _run_and_report(
    args: argparse.Namespace,
    task_data: Any,
    variants: list[str],
    out: pathlib.Path,
) -> None:
    from lstmkit.pitfalls.experiment import run_pitfalls
    from lstmkit.pitfalls.report import format_table, write_reports

    seeds = list(range(args.seeds))
    print(
        f"Training {len(set(variants) | {'correct'})} variants of a "
        f"{args.model} on {args.task} over {len(seeds)} seed(s), "
        f"{args.epochs} epochs each.",
        flush=True,
    )
    result = run_pitfalls(
        task_data,
        args.model,
        variants,
        seeds,
        epochs=args.epochs,
        units=args.units,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        progress=not args.no_progress,
    )
    settings = {
        "task": args.task,
        "model": args.model,
        "variants": list(result.histories),
        "seeds": seeds,
        "epochs": args.epochs,
        "units": args.units,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "limit": args.limit,
        "command": "lstmkit " + shlex.join(sys.argv[1:]),
        **task_data.settings(),
    }
    title = f"Pitfalls on {args.task} ({args.model}, {args.units} units)"
    write_reports(result, settings, out, title)
    print(format_table(result))
    print(f"\nReports in {out}")
