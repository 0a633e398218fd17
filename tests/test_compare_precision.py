"""`lstmkit compare --precision`: mixed policies against a float32 run."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from lstmkit.cli.main import main
from lstmkit.compare.checkpoints import (
    CHECKPOINT_DIR,
    latest_checkpoint,
    load_weights,
)

TRAINING = [
    "compare", "--task", "digits", "--model", "bilstm", "--units", "8",
    "--limit", "200", "--batch-size", "25", "--epochs", "1", "--seed", "1",
    "--no-progress",
]
# Train loss of one epoch (8 steps) under a mixed policy, relative to
# float32. Measured 7e-6 (float16) and 2e-5 (bfloat16) on a 2-core x86
# machine. The bounds leave room for other CPUs and seeds.
LOSS_RTOL = {"mixed_float16": 1e-3, "mixed_bfloat16": 1e-2}
# lstmkit against Keras' LSTM under the same policy: both round to the
# compute dtype at different points (measured 5e-4 and 6e-3).
LOGIT_ATOL = {"mixed_float16": 1e-2, "mixed_bfloat16": 1e-1}
# In float32 the two models agree to about 2e-7, and a run that computed in
# float32 despite its policy would stay below this.
FLOAT32_LOGIT_ATOL = 1e-5


def run_compare(out: Path, *args: str) -> dict:
    status = main([*TRAINING, "--out", str(out), *args])
    assert status == 0
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def float32_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("float32") / "run"
    return run_compare(out, "--reference", "keras")


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_precision_matches_float32(precision, float32_report, tmp_path):
    out = tmp_path / precision

    report = run_compare(out, "--precision", precision)

    assert report["settings"]["precision"] == precision
    assert report["settings"]["reference"].startswith("keras.layers")
    assert keras.mixed_precision.global_policy().name == "float32", (
        "the command must restore the global policy"
    )
    for name, history in report["models"].items():
        ours = history["train_loss"][0]
        expected = float32_report["models"][name]["train_loss"][0]
        assert ours == pytest.approx(expected, rel=LOSS_RTOL[precision]), name
    difference = report["max_abs_logit_diff"]
    assert difference < LOGIT_ATOL[precision]
    assert difference > FLOAT32_LOGIT_ATOL, "no step ran in low precision"
    for name, weights in load_weights(out / CHECKPOINT_DIR).items():
        for index, weight in enumerate(weights):
            assert weight.dtype == np.float32, f"{name} weight {index}"
    scales = loss_scales(out)
    if precision == "mixed_float16":
        assert len(scales) == 2, "one loss scale per model"
        assert all(scale > 0 for scale in scales)
    else:
        assert scales == [], "bfloat16 needs no loss scaling"


def loss_scales(out: Path) -> list[float]:
    reader = tf.train.load_checkpoint(latest_checkpoint(out / CHECKPOINT_DIR))
    return [
        float(reader.get_tensor(key))
        for key in reader.get_variable_to_shape_map()
        if "dynamic_scale" in key
    ]


def test_precision_rejects_v1_reference(tmp_path, capsys):
    status = main([
        *TRAINING, "--precision", "mixed_float16", "--reference", "v1",
        "--out", str(tmp_path / "o"),
    ])

    assert status == 2
    assert "--reference keras" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_precision_rejects_cell_variant(tmp_path, capsys):
    status = main([
        *TRAINING, "--precision", "mixed_bfloat16", "--cell", "gru",
        "--out", str(tmp_path / "o"),
    ])

    assert status == 2
    assert "--cell gru" in capsys.readouterr().err
