"""`lstmkit compare` checkpoints, `--resume` after real signals, determinism.

A run of three epochs is killed with SIGKILL in its second epoch, resumed,
stopped with SIGTERM in its third epoch, and resumed again. With
`--deterministic` its final weights must equal an uninterrupted run's bit
for bit, and its report must equal that run's apart from the timings.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lstmkit.cli.main import main
from lstmkit.compare.checkpoints import CHECKPOINT_DIR, load_weights
from lstmkit.compare.report import write_json

# 400 examples in batches of 16 give 25 steps per epoch, so an epoch lasts
# long enough for a signal sent at its start to arrive before its end.
EPOCHS = 3
TRAINING = [
    "--task", "digits", "--units", "8", "--limit", "400",
    "--batch-size", "16", "--epochs", str(EPOCHS), "--seed", "2",
    "--deterministic", "--no-progress",
]
RUN_TIMEOUT = 300


def compare_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lstmkit.cli.main", "compare", *args]


def environment() -> dict[str, str]:
    variables = dict(os.environ)
    variables.pop("TF_CONFIG", None)
    # DEBUG makes the training loop log the start of every epoch.
    variables["LSTMKIT_LOG_LEVEL"] = "DEBUG"
    return variables


def run_to_end(out: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        compare_command(*TRAINING, "--out", str(out), *args),
        capture_output=True,
        text=True,
        env=environment(),
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def signal_at_epoch_start(
    out: Path, epoch: int, signum: int, *args: str
) -> tuple[int, str]:
    """Starts a run, sends `signum` once `epoch` has started, and waits.

    Returns:
        The exit status and the whole stderr.
    """
    process = subprocess.Popen(
        compare_command(*TRAINING, "--out", str(out), *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in process.stderr],
        daemon=True,
    )
    reader.start()
    marker = f"Epoch {epoch} of {EPOCHS} started"
    seen = []
    try:
        while True:
            line = lines.get(timeout=RUN_TIMEOUT)
            seen.append(line)
            if marker in line:
                break
        process.send_signal(signum)
        status = process.wait(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    return status, "".join(seen)


def latest_epoch(out: Path) -> int:
    path = tf.train.latest_checkpoint(str(out / CHECKPOINT_DIR))
    return int(path.rsplit("-", 1)[1])


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def without_timings(report: dict) -> dict:
    report = json.loads(json.dumps(report))
    for history in report["models"].values():
        del history["seconds"]
    return report


def assert_weights_equal(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected) == {"lstmkit", "builtin"}
    for name in expected:
        assert len(actual[name]) == len(expected[name]), name
        for index, (ours, theirs) in enumerate(
            zip(actual[name], expected[name])
        ):
            np.testing.assert_array_equal(
                ours, theirs, err_msg=f"{name} weight {index}"
            )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_to_end(out)
    return out


def test_resume_after_kill_and_term(uninterrupted, tmp_path):
    out = tmp_path / "interrupted"

    status, _ = signal_at_epoch_start(out, 2, signal.SIGKILL)

    assert status == -signal.SIGKILL
    assert latest_epoch(out) == 1, "the kill should land inside epoch 2"
    assert len(read_report(out)["max_abs_logit_diff_per_epoch"]) == 1

    status, stderr = signal_at_epoch_start(out, 3, signal.SIGTERM, "--resume")

    assert status == 128 + signal.SIGTERM, stderr[-3000:]
    assert "stopped by SIGTERM after epoch 2" in stderr
    assert "--resume" in stderr
    assert latest_epoch(out) == 2
    assert len(read_report(out)["max_abs_logit_diff_per_epoch"]) == 2
    assert not list(out.glob(".*.tmp")), "a temporary report was left"

    run_to_end(out, "--resume")

    assert latest_epoch(out) == EPOCHS
    assert_weights_equal(
        load_weights(out / CHECKPOINT_DIR),
        load_weights(uninterrupted / CHECKPOINT_DIR),
    )
    assert without_timings(read_report(out)) == without_timings(
        read_report(uninterrupted)
    )


def test_seeded_runs_write_equal_reports(uninterrupted, tmp_path):
    out = tmp_path / "again"

    run_to_end(out)

    first, second = read_report(uninterrupted), read_report(out)
    assert without_timings(second) == without_timings(first)
    assert second["models"]["lstmkit"]["seconds"] != first["models"][
        "lstmkit"
    ]["seconds"], "timings are measured, not copied"
    assert_weights_equal(
        load_weights(out / CHECKPOINT_DIR),
        load_weights(uninterrupted / CHECKPOINT_DIR),
    )


def test_resume_rejects_other_settings(uninterrupted, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(uninterrupted, out)

    status = main(["compare", *TRAINING, "--units", "16", "--out", str(out),
                   "--resume"])

    assert status == 2
    error = capsys.readouterr().err
    assert "units (checkpoint: 8, now: 16)" in error
    assert latest_epoch(out) == EPOCHS


def test_resume_rejects_fewer_epochs(uninterrupted, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(uninterrupted, out)

    # argparse keeps the last --epochs.
    status = main(["compare", *TRAINING, "--epochs", "1", "--out", str(out),
                   "--resume"])

    assert status == 2
    assert "--epochs 1 is below" in capsys.readouterr().err


def test_resume_without_checkpoint_fails(tmp_path, capsys):
    status = main(["compare", "--resume", "--out", str(tmp_path)])

    assert status == 2
    assert "no checkpoint found" in capsys.readouterr().err


def test_resume_needs_out(capsys):
    status = main(["compare", "--resume"])

    assert status == 2
    assert "--resume needs --out" in capsys.readouterr().err


def test_old_checkpoints_need_flag(uninterrupted, tmp_path, capsys):
    out = tmp_path / "stale"
    out.mkdir()
    shutil.copytree(uninterrupted / CHECKPOINT_DIR, out / CHECKPOINT_DIR)

    status = main(["compare", "--epochs", "1", "--out", str(out)])

    assert status == 2
    error = capsys.readouterr().err
    assert "--resume" in error
    assert "--overwrite" in error


def test_write_json_keeps_old_on_error(tmp_path):
    path = tmp_path / "report.json"
    write_json({"epochs": 1}, path)

    with pytest.raises(TypeError):
        write_json({"epochs": 2, "bad": object()}, path)

    assert json.loads(path.read_text()) == {"epochs": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
