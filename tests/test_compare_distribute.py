"""`lstmkit compare --strategy`: tf.distribute runs equal a one-device run.

Each run is a real `lstmkit compare` process, because logical CPU devices
and the collective ops of MultiWorkerMirroredStrategy can only be set up
before TensorFlow starts. The multi-worker test starts two worker
processes that talk over gRPC on ports of 127.0.0.1 chosen here.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstmkit.cli.main import main
from lstmkit.compare.checkpoints import CHECKPOINT_DIR, load_weights

# 150 examples in global batches of 45 give batches of 45, 45, 45 and 15
# rows, so two replicas get unequal slices (22 and 23, 7 and 8 rows).
TRAINING = [
    "--task", "digits", "--model", "bilstm", "--units", "8",
    "--limit", "150", "--batch-size", "45", "--epochs", "2",
    "--seed", "5", "--deterministic", "--no-progress",
]
# Final weights after 8 Adam steps, distributed against one device. The
# replicas sum their gradients in another order than one device sums the
# rows of a batch, so they differ by float32 rounding: measured at most
# 3e-8 (mirrored, 2 logical CPUs) on a 2-core x86 machine.
WEIGHT_ATOL = 1e-6
RUN_TIMEOUT = 300


def compare_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lstmkit.cli.main", "compare", *args]


def cpu_environment(**extra: str) -> dict[str, str]:
    environment = {
        key: value for key, value in os.environ.items() if key != "TF_CONFIG"
    }
    # The strategies must replicate over CPU devices even on a GPU machine.
    environment["CUDA_VISIBLE_DEVICES"] = ""
    environment["LSTMKIT_LOG_LEVEL"] = "WARNING"
    environment.update(extra)
    return environment


def run_compare_process(out: Path, *args: str) -> None:
    result = subprocess.run(
        compare_command(*TRAINING, "--out", str(out), *args),
        capture_output=True,
        text=True,
        env=cpu_environment(),
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        sockets.append(listener)
    ports = [listener.getsockname()[1] for listener in sockets]
    for listener in sockets:
        listener.close()
    return ports


def assert_weights_close(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected) == {"lstmkit", "builtin"}
    for name in expected:
        assert len(actual[name]) == len(expected[name]), name
        for index, (ours, theirs) in enumerate(
            zip(actual[name], expected[name])
        ):
            np.testing.assert_allclose(
                ours, theirs, rtol=0, atol=WEIGHT_ATOL,
                err_msg=f"{name} weight {index}",
            )


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def single_device(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    run_compare_process(out)
    return out


def test_mirrored_two_cpus_matches(single_device, tmp_path):
    out = tmp_path / "mirrored"

    run_compare_process(out, "--strategy", "mirrored", "--cpu-devices", "2")

    report = read_report(out)
    assert report["settings"]["strategy"] == "mirrored"
    assert report["settings"]["replicas"] == 2
    assert_weights_close(
        load_weights(out / CHECKPOINT_DIR),
        load_weights(single_device / CHECKPOINT_DIR),
    )
    expected = read_report(single_device)["models"]
    for name, history in report["models"].items():
        np.testing.assert_allclose(
            history["train_loss"], expected[name]["train_loss"], rtol=1e-5,
            err_msg=name,
        )


def test_multiworker_two_processes_matches(single_device, tmp_path):
    out = tmp_path / "multiworker"
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        task = {"type": "worker", "index": index}
        config = {"cluster": cluster, "task": task}
        workers.append(subprocess.Popen(
            compare_command(
                *TRAINING, "--out", str(out), "--strategy", "multiworker"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cpu_environment(TF_CONFIG=json.dumps(config)),
        ))
    try:
        outputs = [
            worker.communicate(timeout=RUN_TIMEOUT) for worker in workers
        ]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    for index, (worker, (_, stderr)) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}: {stderr[-3000:]}"
    report = read_report(out)
    assert report["settings"]["strategy"] == "multiworker"
    assert report["settings"]["replicas"] == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "learning_curves.png", "report.json"
    ], "only the chief writes to --out"
    assert_weights_close(
        load_weights(out / CHECKPOINT_DIR),
        load_weights(single_device / CHECKPOINT_DIR),
    )


def test_multiworker_without_tf_config_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)

    status = main([
        "compare", "--strategy", "multiworker", "--out", str(tmp_path / "o"),
    ])

    assert status == 2
    error = capsys.readouterr().err
    assert "TF_CONFIG" in error
    assert not (tmp_path / "o").exists()


def test_multiworker_bad_tf_config_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')

    status = main([
        "compare", "--strategy", "multiworker", "--out", str(tmp_path / "o"),
    ])

    assert status == 2
    assert "cluster.worker" in capsys.readouterr().err


def test_cpu_devices_needs_mirrored(tmp_path, capsys):
    status = main([
        "compare", "--cpu-devices", "2", "--out", str(tmp_path / "o"),
    ])

    assert status == 2
    assert "--strategy mirrored" in capsys.readouterr().err
