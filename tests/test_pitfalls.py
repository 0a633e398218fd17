"""The pitfall variants make exactly their one mistake, and the command runs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lstmkit.cli.main import main
from lstmkit.compare.models import copy_weights
from lstmkit.pitfalls import variants

BATCH, TIME, DEPTH, UNITS = 4, 6, 3, 5
LENGTHS = np.array([6, 4, 1, 3], np.int32)


def padded_inputs(seed: int = 0) -> tf.Tensor:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, TIME, DEPTH)).astype(np.float32)
    x[np.arange(TIME)[None, :] >= LENGTHS[:, None]] = 0.0
    return tf.constant(x)


def run_backend(name: str, model: str, lengths=LENGTHS):
    correct = variants.VARIANTS["correct"](model)
    backend = variants.VARIANTS[name](model)
    cells_correct = correct.make_cells(UNITS, DEPTH)
    cells = backend.make_cells(UNITS, DEPTH)
    for ours, reference in zip(cells, cells_correct):
        for target, source in zip(ours.weights, reference.weights):
            target.assign(source)
    x = padded_inputs()
    lengths = None if lengths is None else tf.constant(lengths)
    expected = correct.run(cells_correct, x, lengths)
    return expected, backend.run(cells, x, lengths)


def test_no_reverse_back_leaves_backward_reversed():
    (expected, _), (outputs, _) = run_backend("no_reverse_back", "bilstm")

    backward = outputs[:, :, UNITS:]
    realigned = tf.reverse_sequence(
        backward, LENGTHS, seq_axis=1, batch_axis=0
    )
    np.testing.assert_allclose(realigned, expected[:, :, UNITS:], atol=1e-6)
    assert np.abs(backward - expected[:, :, UNITS:]).max() > 1e-3


def test_whole_axis_reverse_wrong_only_for_short_rows():
    (expected, expected_h), (outputs, final_h) = run_backend(
        "whole_axis_reverse", "bilstm"
    )

    full = LENGTHS == TIME
    np.testing.assert_allclose(outputs[full], expected[full], atol=1e-6)
    assert np.abs(final_h[~full] - expected_h[~full]).max() > 1e-3


def test_padding_ignored_changes_final_state_of_short_rows():
    (_, expected_h), (_, final_h) = run_backend("padding_ignored", "lstm")

    full = LENGTHS == TIME
    np.testing.assert_allclose(final_h[full], expected_h[full], atol=1e-6)
    assert np.abs(final_h[~full] - expected_h[~full]).max() > 1e-3


def test_last_padded_step_reads_zeros_for_short_rows():
    (_, expected_h), (_, final_h) = run_backend("last_padded_step", "lstm")

    full = LENGTHS == TIME
    np.testing.assert_array_equal(final_h[~full], 0.0)
    np.testing.assert_allclose(final_h[full], expected_h[full], atol=1e-6)


def test_no_forget_bias_cell_has_zero_forget_bias():
    backend = variants.VARIANTS["no_forget_bias"]("lstm")

    cell = backend.make_cell(UNITS, DEPTH)

    assert cell.forget_bias == 0.0


def test_normal_init_redraws_kernel_with_stddev():
    from lstmkit.compare.backends import LstmkitBackend

    backend = variants.VARIANTS["normal_init"]("lstm")
    cells = LstmkitBackend("lstm").make_cells(200, 300)

    backend.reinitialize(cells, seed=0)

    kernel = cells[0].kernel.numpy()
    assert kernel.std() == pytest.approx(variants.NORMAL_INIT_STDDEV, rel=0.02)
    np.testing.assert_array_equal(cells[0].bias.numpy(), 0.0)


@pytest.mark.parametrize(
    "model, tagging, has_lengths, expected",
    [
        ("lstm", False, False, {"correct", "normal_init", "no_forget_bias"}),
        (
            "lstm", False, True,
            {"correct", "normal_init", "no_forget_bias", "padding_ignored",
             "last_padded_step"},
        ),
        (
            "bilstm", True, True,
            {"correct", "normal_init", "no_forget_bias", "padding_ignored",
             "no_reverse_back", "whole_axis_reverse"},
        ),
    ],
)
def test_variants_for_lists_mistakes_that_matter(
    model, tagging, has_lengths, expected
):
    assert set(variants.variants_for(model, tagging, has_lengths)) == expected


def test_public_api_does_not_import_pitfalls():
    code = (
        "import sys, lstmkit, tensorflow as tf\n"
        "lstmkit.dynamic_rnn(lstmkit.LSTMCell(2), tf.zeros([1, 2, 3]))\n"
        "print('lstmkit.pitfalls' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_copy_weights_rejects_other_structure():
    from lstmkit.compare.backends import LstmkitBackend
    from lstmkit.compare.models import SequenceClassifier

    small = SequenceClassifier(LstmkitBackend("lstm"), 4, 3, 2)
    bidirectional = SequenceClassifier(LstmkitBackend("bilstm"), 4, 3, 2)

    with pytest.raises(ValueError, match="differ in structure"):
        copy_weights(small, bidirectional)


def test_pitfalls_command_writes_reports(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMKIT_DATA", str(shared_data))
    out = tmp_path / "pitfalls"

    status = main([
        "pitfalls", "--task", "vowels", "--seeds", "2", "--epochs", "1",
        "--units", "8", "--limit", "60", "--no-progress", "--out", str(out),
    ])

    assert status == 0
    document = json.loads((out / "pitfalls.json").read_text())
    names = {row["variant"] for row in document["summary"]}
    assert names == set(variants.variants_for("lstm", False, True))
    for name, runs in document["histories"].items():
        assert len(runs) == 2, name
    assert "| last_padded_step |" in (out / "pitfalls.md").read_text()
    assert (out / "pitfalls.png").stat().st_size > 1000


def test_pitfalls_rejects_variant_without_effect(tmp_path, capsys):
    status = main([
        "pitfalls", "--task", "digits", "--variants", "no_reverse_back",
        "--out", str(tmp_path / "o"),
    ])

    assert status == 2
    assert "no_reverse_back" in capsys.readouterr().err
