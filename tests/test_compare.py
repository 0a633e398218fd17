"""`lstmkit compare` end to end, on real data, in-process and as a command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstmkit.cli.main import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# After one epoch on identical batches the two models' logits differ only by
# float32 rounding (about 1e-5 measured); 1e-3 leaves room for other CPUs.
MAX_LOGIT_DIFF_ONE_EPOCH = 1e-3


def run_compare(args: list[str]) -> int:
    return main(["compare", "--no-progress", *args])


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def assert_report_layout(report: dict, epochs: int) -> None:
    assert set(report["models"]) == {"lstmkit", "builtin"}
    for name, history in report["models"].items():
        for key in ("train_loss", "test_accuracy", "seconds"):
            assert len(history[key]) == epochs, f"{name}.{key}"
        for accuracy in history["test_accuracy"]:
            assert 0.0 <= accuracy <= 1.0, f"{name} accuracy {accuracy}"
        assert all(s > 0 for s in history["seconds"]), name
    assert "max_abs_logit_diff" in report
    assert report["versions"]["tensorflow"].startswith("2.21")
    assert report["settings"]["epochs"] == epochs


def test_compare_mnist_subset_models_agree(shared_data, tmp_path):
    out = tmp_path / "mnist"
    status = run_compare([
        "--task", "mnist",
        "--data-dir", str(shared_data / "mnist"),
        "--limit", "2000",
        "--epochs", "1",
        "--units", "64",
        "--out", str(out),
    ])

    assert status == 0
    report = read_report(out)
    assert_report_layout(report, epochs=1)
    assert report["settings"]["train_examples"] == 2000
    assert report["settings"]["test_examples"] == 10000
    ours = report["models"]["lstmkit"]
    builtin = report["models"]["builtin"]
    assert report["max_abs_logit_diff"] < MAX_LOGIT_DIFF_ONE_EPOCH
    assert ours["train_loss"][0] == pytest.approx(
        builtin["train_loss"][0], rel=1e-5
    )
    # At most one of 10,000 test predictions may flip on a near tie.
    assert abs(ours["test_accuracy"][0] - builtin["test_accuracy"][0]) <= 1e-4
    # Chance is 0.1; one epoch on 2,000 images measured 0.31 with 64 units.
    assert ours["test_accuracy"][0] > 0.2, "one epoch should beat chance"
    assert (out / "learning_curves.png").read_bytes()[:8] == PNG_SIGNATURE


def test_compare_digits_bilstm_agrees(tmp_path):
    out = tmp_path / "digits"
    status = run_compare([
        "--model", "bilstm",
        "--epochs", "2",
        "--units", "16",
        "--limit", "300",
        "--seed", "3",
        "--out", str(out),
    ])

    assert status == 0
    report = read_report(out)
    assert_report_layout(report, epochs=2)
    assert report["settings"]["model"] == "bilstm"
    assert report["settings"]["test_examples"] == 360
    assert report["max_abs_logit_diff"] < MAX_LOGIT_DIFF_ONE_EPOCH
    np.testing.assert_allclose(
        report["models"]["lstmkit"]["train_loss"],
        report["models"]["builtin"]["train_loss"],
        rtol=1e-5,
    )


def test_compare_refuses_existing_report(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "report.json").write_text('{"keep": true}')

    status = run_compare(["--epochs", "1", "--out", str(out)])

    assert status == 2
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text()) == {"keep": True}


def test_compare_missing_mnist_names_places(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LSTMKIT_DATA", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()

    status = run_compare([
        "--task", "mnist", "--data-dir", str(empty),
        "--out", str(tmp_path / "out"),
    ])

    error = capsys.readouterr().err
    assert status == 2
    assert str(empty) in error
    assert "train-images-idx3-ubyte.gz" in error


def test_compare_mnist_without_data_dir_lists_search(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "nowhere"))

    status = run_compare(["--task", "mnist", "--out", str(tmp_path / "o")])

    error = capsys.readouterr().err
    assert status == 2
    assert "LSTMKIT_DATA" in error
    assert "mnist.npz" in error


def test_compare_digits_rejects_data_dir(tmp_path, capsys):
    status = run_compare([
        "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
    ])

    assert status == 2
    assert "--data-dir" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--epochs", "0"),
        ("--units", "-3"),
        ("--batch-size", "many"),
        ("--learning-rate", "0"),
        ("--limit", "1.5"),
    ],
)
def test_compare_rejects_bad_number(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_compare([flag, value])

    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert flag in error
    assert value in error


def test_console_script_help_runs():
    script = Path(sys.executable).with_name("lstmkit")
    command = [str(script)] if script.exists() else [
        sys.executable, "-m", "lstmkit.cli.main"
    ]
    result = subprocess.run(
        [*command, "compare", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "LSTMKIT_LOG_LEVEL": "WARNING"},
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "--task" in result.stdout
    assert "digits" in result.stdout


@pytest.mark.parametrize(
    "task, model, metrics",
    [
        ("vowels", "lstm", {"test_accuracy"}),
        ("chunking", "bilstm", {"test_accuracy", "test_f1"}),
        ("pos", "bilstm", {"test_accuracy"}),
    ],
)
def test_compare_variable_length_task_agrees(
    task, model, metrics, shared_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("LSTMKIT_DATA", str(shared_data))
    out = tmp_path / task

    status = run_compare([
        "--task", task, "--epochs", "1", "--limit", "150",
        "--units", "16", "--out", str(out),
    ])

    assert status == 0
    report = read_report(out)
    assert_report_layout(report, epochs=1)
    assert report["settings"]["model"] == model
    for name, history in report["models"].items():
        assert metrics <= set(history), f"{name} lacks {metrics}"
    assert report["max_abs_logit_diff"] < MAX_LOGIT_DIFF_ONE_EPOCH
    for metric in metrics:
        ours = report["models"]["lstmkit"][metric][0]
        builtin = report["models"]["builtin"][metric][0]
        assert ours == pytest.approx(builtin, abs=1e-3), metric


@pytest.mark.parametrize(
    "task, model", [("vowels", "bilstm"), ("chunking", "bilstm")]
)
def test_compare_keras_reference_agrees(
    task, model, shared_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("LSTMKIT_DATA", str(shared_data))
    out = tmp_path / task

    status = run_compare([
        "--task", task, "--model", model, "--reference", "keras",
        "--epochs", "1", "--limit", "120", "--units", "8",
        "--out", str(out),
    ])

    assert status == 0
    report = read_report(out)
    assert report["settings"]["reference"].startswith("keras.layers")
    assert report["max_abs_logit_diff"] < MAX_LOGIT_DIFF_ONE_EPOCH
    np.testing.assert_allclose(
        report["models"]["lstmkit"]["train_loss"],
        report["models"]["builtin"]["train_loss"],
        rtol=1e-5,
    )


def test_compare_no_bucketing_only_for_tagging(tmp_path, capsys):
    status = run_compare(["--no-bucketing", "--out", str(tmp_path / "o")])

    assert status == 2
    assert "--no-bucketing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists(), "a failed run left its folder"


@pytest.mark.parametrize(
    "cell", ["layer_norm", "cifg", "gru", "zoneout", "dropconnect", "dropout"]
)
def test_compare_cell_variant_runs(cell, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMKIT_DATA", str(shared_data))
    out = tmp_path / cell

    status = run_compare([
        "--task", "vowels", "--cell", cell, "--epochs", "1",
        "--limit", "60", "--units", "8", "--out", str(out),
    ])

    assert status == 0
    report = read_report(out)
    assert report["settings"]["cell"] == cell
    ours = report["models"]["lstmkit"]["train_loss"][0]
    builtin = report["models"]["builtin"]["train_loss"][0]
    assert ours != pytest.approx(builtin, rel=1e-6), "cell was not used"


def test_compare_cell_rejects_keras_reference(tmp_path, capsys):
    status = run_compare([
        "--cell", "gru", "--reference", "keras", "--epochs", "1",
        "--out", str(tmp_path / "o"),
    ])

    assert status == 2
    assert "--reference keras" in capsys.readouterr().err
