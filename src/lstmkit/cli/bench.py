"""`lstmkit bench`: time lstmkit against the built-ins in one process."""

import argparse
import datetime
import logging
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

from lstmkit.bench import cases
from lstmkit.cli.arguments import (
    check_out_dir,
    default_out_dir,
    make_out_dir,
    positive_int,
    seed_int,
)

logger = logging.getLogger(__name__)

DEFAULT_REPEATS = 10
DEFAULT_WARMUP = 1
QUICK_REPEATS = 3


def non_negative_int(text: str) -> int:
    """Parses a command-line integer that must be 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer of 0 or more, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected an integer of 0 or more, got {value}"
        )
    return value


def _comma_list(text: str, parse: Callable[[str], Any]) -> list[Any]:
    """Parses comma-separated values, dropping repeats, keeping the order."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(
            f"empty item in {text!r}: separate the values by single commas, "
            "without spaces"
        )
    values = []
    for item in items:
        try:
            value = parse(item)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if value not in values:
            values.append(value)
    return values


def _choices(label: str, allowed: tuple[str, ...]) -> Callable[[str], Any]:
    """Returns an argument type for comma-separated values of `allowed`."""

    def parse_one(item: str) -> str:
        if item not in allowed:
            raise ValueError(
                f"invalid {label} {item!r}: choose from {', '.join(allowed)}, "
                f"comma-separated, such as {','.join(allowed)}"
            )
        return item

    def parse(text: str) -> list[str]:
        return _comma_list(text, parse_one)

    return parse


def shape_list(text: str) -> list[cases.Shape]:
    """Parses `--shapes`: preset names or `BxTxIxU`, comma-separated."""
    return _comma_list(text, cases.parse_shape)


def implementation_list(text: str) -> list[str]:
    """Parses `--implementations`: registry names, comma-separated."""
    from lstmkit.bench import implementations

    def parse_one(item: str) -> str:
        implementations.select([item])
        return item

    return _comma_list(text, parse_one)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `bench` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="time lstmkit, the built-ins and the fused raw ops",
        description=(
            "Time every implementation on the same inputs and weights, in "
            "one process, round-robin, after checking that each LSTM "
            "matches tf.compat.v1.nn.dynamic_rnn. Prints tables of ratios "
            "to the fastest built-in and of absolute times, and writes "
            "bench.json, bench.csv and bench.md to --out. List the "
            "implementations with --list."
        ),
    )
    _add_case_arguments(parser)
    _add_run_arguments(parser)
    parser.set_defaults(handler=run)


def _add_case_arguments(parser: argparse.ArgumentParser) -> None:
    presets = ", ".join(
        f"{shape.name} {shape.dims}" for shape in cases.SHAPES.values()
    )
    parser.add_argument(
        "--shapes", type=shape_list, default=None,
        help="comma-separated shapes: preset names or BxTxIxU (batch x "
        f"time x input depth x units). Presets: {presets} (default: all "
        f"three; with --quick: {cases.QUICK_SHAPE.dims})",
    )
    parser.add_argument(
        "--modes", type=_choices("mode", cases.MODES),
        default=list(cases.MODES),
        help="forward: outputs only; train: outputs and all gradients "
        "(default: forward,train)",
    )
    parser.add_argument(
        "--lengths", type=_choices("length mode", cases.LENGTH_MODES),
        default=list(cases.LENGTH_MODES),
        help="fixed: every row has all steps, no lengths passed; variable: "
        "seeded random lengths from 1 to time (default: fixed,variable)",
    )
    parser.add_argument(
        "--directions", type=_choices("direction", cases.DIRECTIONS),
        default=list(cases.DIRECTIONS),
        help="uni: one LSTM; bi: forward and backward LSTM, outputs "
        "concatenated (default: uni,bi)",
    )
    parser.add_argument(
        "--implementations", type=implementation_list, default=None,
        help="comma-separated names from --list (default: all)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repeats", type=positive_int, default=None,
        help=f"timed calls per implementation and case (default: "
        f"{DEFAULT_REPEATS}; with --quick: {QUICK_REPEATS})",
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=DEFAULT_WARMUP,
        help="untimed calls after the first call, which is timed apart "
        f"(default: {DEFAULT_WARMUP})",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0,
        help="seeds inputs, lengths and weights (default: 0)",
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=None,
        help="output folder (default: runs/bench-<time>)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace the report in an --out folder that already has one",
    )
    parser.add_argument(
        "--memory", action="store_true",
        help="also measure the peak memory of one step per implementation "
        "and case, each in a child process (slow: seconds per child)",
    )
    parser.add_argument(
        "--no-progress", action="store_true",
        help="hide the progress bar",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"smoke run: shape {cases.QUICK_SHAPE.dims} and "
        f"{QUICK_REPEATS} repeats unless --shapes or --repeats are given",
    )
    parser.add_argument(
        "--list", action="store_true",
        help="print the implementations with a description each and exit",
    )


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark; returns 0, or 2 on an invalid output folder."""
    from lstmkit.bench import report

    if args.list:
        from lstmkit.bench.implementations import format_registry

        print(format_registry())
        return 0

    _apply_defaults(args)
    out = args.out or default_out_dir("bench")
    try:
        check_out_dir(out, report.REPORT_NAME, args.overwrite)
        make_out_dir(out)
    except ValueError as error:
        print(f"lstmkit bench: error: {error}", file=sys.stderr)
        return 2
    _benchmark(args, out)
    return 0


def _apply_defaults(args: argparse.Namespace) -> None:
    if args.shapes is None:
        args.shapes = (
            [cases.QUICK_SHAPE] if args.quick else list(cases.SHAPES.values())
        )
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS


def command_line(args: argparse.Namespace) -> str:
    """Spells out the command with every default resolved, without --out."""
    parts = [
        "lstmkit bench",
        "--shapes " + ",".join(shape.name for shape in args.shapes),
        "--modes " + ",".join(args.modes),
        "--lengths " + ",".join(args.lengths),
        "--directions " + ",".join(args.directions),
        f"--repeats {args.repeats}",
        f"--warmup {args.warmup}",
        f"--seed {args.seed}",
    ]
    if args.implementations:
        parts.append("--implementations " + ",".join(args.implementations))
    if args.memory:
        parts.append("--memory")
    return " ".join(parts)


def _benchmark(args: argparse.Namespace, out: pathlib.Path) -> None:
    from lstmkit.bench import environment, implementations, report, runner
    from lstmkit.bench import tables

    selected = implementations.select(args.implementations)
    case_list = cases.make_cases(
        args.shapes, args.modes, args.lengths, args.directions
    )
    settings = runner.Settings(
        repeats=args.repeats,
        warmup=args.warmup,
        seed=args.seed,
        memory=args.memory,
    )
    metadata = _metadata(args, environment)
    print(
        f"Benchmarking {len(selected)} implementations on {len(case_list)} "
        f"cases, {args.repeats} timed calls each. Writing to {out}.",
        flush=True,
    )

    start = time.perf_counter()

    def on_case_done(results: list[Any]) -> None:
        metadata["elapsed_s"] = time.perf_counter() - start
        report.write_reports(results, metadata, out)

    results = _run_with_progress(
        args, case_list, selected, settings, on_case_done
    )

    metadata["finished_at"] = _now()
    metadata["source_at_end"] = environment.source_state()
    _warn_if_source_changed(metadata["source"], metadata["source_at_end"])
    rows = report.write_reports(results, metadata, out)
    print()
    print(tables.format_tables(rows))
    for name in (report.REPORT_NAME, report.CSV_NAME, report.TABLES_NAME):
        print(f"Wrote {out / name}")


def _run_with_progress(
    args: argparse.Namespace,
    case_list: list[cases.Case],
    selected: list[Any],
    settings: Any,
    on_case_done: Callable[[list[Any]], None],
) -> list[Any]:
    from tqdm import tqdm

    from lstmkit.bench import runner

    total = runner.count_calls(case_list, selected, settings)
    with tqdm(
        total=total,
        file=sys.stderr,
        disable=args.no_progress,
        unit="call",
        dynamic_ncols=True,
    ) as progress:
        return runner.run(
            case_list, selected, settings, progress, on_case_done
        )


def _warn_if_source_changed(
    start: dict[str, Any], end: dict[str, Any]
) -> None:
    if start == end:
        return
    changed = sorted(
        set(start["changed_files"] or []) ^ set(end["changed_files"] or [])
    )
    details = []
    if start["commit"] != end["commit"]:
        details.append(
            f"new commits (git diff {start['commit']} {end['commit']} "
            "lists them)"
        )
    if changed:
        details.append(
            "files whose uncommitted state changed: " + ", ".join(changed)
        )
    logger.warning(
        "the lstmkit source changed during the run: %s. Modules already "
        "imported kept their old code. The report records both states; "
        "rerun for results from one state.",
        "; ".join(details),
    )


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _metadata(args: argparse.Namespace, environment: Any) -> dict[str, Any]:
    return {
        "command": command_line(args),
        "settings": {
            "shapes": [
                {
                    "name": shape.name,
                    "batch": shape.batch,
                    "time": shape.time,
                    "input_depth": shape.input_depth,
                    "units": shape.units,
                }
                for shape in args.shapes
            ],
            "modes": args.modes,
            "lengths": args.lengths,
            "directions": args.directions,
            "implementations": args.implementations,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
            "memory": args.memory,
            "quick": args.quick,
        },
        "versions": environment.versions(),
        "hardware": environment.hardware(),
        "source": environment.source_state(),
        "started_at": _now(),
        "finished_at": None,
        "elapsed_s": None,
    }
