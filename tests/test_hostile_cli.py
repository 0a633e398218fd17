"""The `lstmkit` command on bad input: an error message, never a traceback.

A table runs every subcommand in-process through `main` on missing,
truncated and corrupt files and invalid options, and checks the exit
status and that stderr names the bad value without a traceback. Then the
top-level handler of `lstmkit.cli.main` is checked for each error type it
catches, and two real subprocesses check the same from the outside,
including the traceback that `LSTMKIT_LOG_LEVEL=DEBUG` prints.
"""

import dataclasses
import gzip
import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lstmkit.cli import env
from lstmkit.cli.main import main
from lstmkit.data import DataFormatError

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    """Runs `main(argv)`; returns `(exit status, stdout, stderr)`.

    argparse exits with `SystemExit` on invalid options, and its code is
    returned as the status.
    """
    try:
        status = main([str(item) for item in argv])
    except SystemExit as error:
        status = error.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_clean_error(result, status, *fragments) -> None:
    """Checks the status, that stderr has the fragments and no traceback."""
    actual_status, _, stderr = result
    assert actual_status == status, f"status {actual_status}: {stderr}"
    assert "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in stderr, f"{fragment!r} not in: {stderr}"


# ------------------------------------------------------------ files


def idx(magic: int, dims: tuple[int, ...], body: bytes) -> bytes:
    header = b"".join(value.to_bytes(4, "big") for value in (magic, *dims))
    return header + body


def mnist_folder(folder: Path) -> Path:
    """Valid test files and a training images file cut short."""
    folder.mkdir()
    images = idx(0x803, (2, 28, 28), bytes(2 * 784))
    labels = idx(0x801, (2,), bytes([1, 2]))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(images[:-100])
    )
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return folder


def vowels_folder(folder: Path) -> Path:
    """A training file with Inf in a series, and a valid test file."""
    folder.mkdir()
    header = (
        "@problemName v\n@timeStamps false\n@missing false\n"
        "@univariate false\n@dimensions 2\n@equalLength false\n"
        "@classLabel true 1 2\n@data\n"
    )
    (folder / "JapaneseVowels_TRAIN.ts").write_text(header + "1,inf:3,4:1\n")
    (folder / "JapaneseVowels_TEST.ts").write_text(header + "1,2:3,4:2\n")
    return folder


def conll_folder(folder: Path) -> Path:
    """A training file whose last line is cut after two columns."""
    folder.mkdir()
    (folder / "train.txt").write_text("He PRP B-NP\nreckons VBZ\n")
    (folder / "test.txt").write_text("He PRP B-NP\n")
    return folder


def treebank_folder(folder: Path) -> Path:
    """An empty docs.tsv beside a valid sentence file."""
    folder.mkdir()
    (folder / "treebank_pos.txt").write_text("A\tDT\nb\tNN\n\n")
    (folder / "docs.tsv").write_text("")
    return folder


def truncated_checkpoint(folder: Path) -> Path:
    """A TF1 checkpoint of an LSTM whose .data file is cut after 10 bytes."""
    prefix = folder / "model.ckpt"
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.get_variable("rnn/lstm_cell/kernel", [7, 16])
        tf.compat.v1.get_variable("rnn/lstm_cell/bias", [16])
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().save(session, str(prefix))
    data = Path(f"{prefix}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:10])
    return prefix


def string_state_dict(path: Path) -> Path:
    np.savez(
        path,
        weight_ih_l0=np.full([8, 3], "w"),
        weight_hh_l0=np.full([8, 2], "w"),
    )
    return path


def keras_without_config(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    return path


def existing_file(path: Path) -> Path:
    path.write_text("not a folder")
    return path


@dataclasses.dataclass
class BadCommand:
    """A command line built in a temporary folder, and its expected error."""

    argv: Callable[[Path], list]
    fragments: tuple[str, ...]
    status: int = 2


COMMAND_CASES = {
    "no_command": BadCommand(lambda tmp: [], ("usage: lstmkit",)),
    "unknown_command": BadCommand(
        lambda tmp: ["frobnicate"], ("invalid choice: 'frobnicate'",)
    ),
    "compare_epochs_zero": BadCommand(
        lambda tmp: ["compare", "--epochs", "0"], ("--epochs",)
    ),
    "compare_missing_data": BadCommand(
        lambda tmp: [
            "compare", "--task", "mnist", "--data-dir", tmp / "absent",
            "--out", tmp / "run",
        ],
        ("lstmkit compare: error:", "absent", "folder does not exist"),
    ),
    "compare_truncated_idx": BadCommand(
        lambda tmp: [
            "compare", "--task", "mnist", "--data-dir",
            mnist_folder(tmp / "mnist"), "--out", tmp / "run",
        ],
        ("train-images-idx3-ubyte.gz", "needs 1568 data bytes",
         "Download it again"),
    ),
    "compare_ts_inf": BadCommand(
        lambda tmp: [
            "compare", "--task", "vowels", "--data-dir",
            vowels_folder(tmp / "vowels"), "--out", tmp / "run",
        ],
        ("JapaneseVowels_TRAIN.ts, line 9", "'inf'", "not a finite"),
    ),
    "compare_truncated_conll": BadCommand(
        lambda tmp: [
            "compare", "--task", "chunking", "--data-dir",
            conll_folder(tmp / "conll"), "--out", tmp / "run",
        ],
        ("train.txt, line 2", "found 2 columns", "Expected 3 columns"),
    ),
    "compare_empty_docs": BadCommand(
        lambda tmp: [
            "compare", "--task", "pos", "--data-dir",
            treebank_folder(tmp / "treebank"), "--out", tmp / "run",
        ],
        ("docs.tsv, line 1", "an empty file", "Expected the header"),
    ),
    "compare_out_is_file": BadCommand(
        lambda tmp: ["compare", "--out", existing_file(tmp / "file")],
        ("lstmkit compare: error:", "file"),
    ),
    "pitfalls_missing_data": BadCommand(
        lambda tmp: [
            "pitfalls", "--task", "vowels", "--data-dir", tmp / "absent",
            "--out", tmp / "run",
        ],
        ("lstmkit pitfalls: error:", "absent"),
    ),
    "bench_out_is_file": BadCommand(
        lambda tmp: ["bench", "--out", existing_file(tmp / "file")],
        ("lstmkit bench: error:", "file"),
    ),
    "convert_truncated_checkpoint": BadCommand(
        lambda tmp: [
            "convert", truncated_checkpoint(tmp), tmp / "out.keras",
        ],
        ("lstmkit convert: error:", "model.ckpt", "truncated or corrupt"),
    ),
    "convert_string_state_dict": BadCommand(
        lambda tmp: [
            "convert", string_state_dict(tmp / "state.npz"),
            tmp / "out.keras",
        ],
        ("state.npz", "weight_ih_l0 has dtype <U1", "float32"),
    ),
    "convert_keras_without_config": BadCommand(
        lambda tmp: [
            "convert", keras_without_config(tmp / "model.keras"),
            tmp / "out.npz",
        ],
        ("Keras could not load", "model.keras", "config.json"),
    ),
    "convert_forget_bias_nan": BadCommand(
        lambda tmp: [
            "convert", tmp / "a.npz", tmp / "b.keras", "--forget-bias", "nan",
        ],
        ("--forget-bias",),
    ),
}


@pytest.mark.parametrize("name", list(COMMAND_CASES))
def test_command_rejects_input(name, tmp_path, capsys):
    case = COMMAND_CASES[name]
    result = run_main(capsys, case.argv(tmp_path))
    assert_clean_error(result, case.status, *case.fragments)


# ------------------------------------------------- top-level handler


def raise_from_env(monkeypatch, error: BaseException) -> None:
    """Makes `lstmkit env` raise `error`."""

    def fail(args):
        raise error

    monkeypatch.setattr(env, "run", fail)


EXPECTED_ERRORS = {
    "value_error": (ValueError("--units 0 is invalid; pass 1 or more."),
                    "--units 0 is invalid"),
    "data_format": (DataFormatError("Invalid IDX file x: empty."),
                    "Invalid IDX file x"),
    "permission": (PermissionError(13, "Permission denied", "/out/x"),
                   "Permission denied: /out/x"),
    "tensorflow_op": (tf.errors.InvalidArgumentError(
        None, None, "Input to reshape is a tensor with 105 values"),
        "Input to reshape is a tensor with 105 values"),
}


@pytest.mark.parametrize("name", list(EXPECTED_ERRORS))
def test_handler_expected_error(name, monkeypatch, capsys):
    error, fragment = EXPECTED_ERRORS[name]
    raise_from_env(monkeypatch, error)

    status, stdout, stderr = run_main(capsys, ["env"])

    assert status == 2, stderr
    assert stderr.startswith(f"lstmkit: error: {fragment}"), stderr
    assert "Traceback" not in stderr, stderr
    assert stdout == "", stdout


def test_handler_unexpected_error(monkeypatch, capsys, caplog):
    raise_from_env(monkeypatch, KeyError("weights"))
    caplog.set_level(logging.DEBUG, logger="lstmkit.cli.main")

    status, _, stderr = run_main(capsys, ["env"])

    assert status == 1, stderr
    assert "lstmkit: internal error: KeyError: 'weights'" in stderr, stderr
    assert "LSTMKIT_LOG_LEVEL=DEBUG" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    records = [r for r in caplog.records if r.exc_info is not None]
    assert records, "no DEBUG record with the traceback"
    assert records[0].exc_info[0] is KeyError


def test_handler_interrupt(monkeypatch, capsys):
    raise_from_env(monkeypatch, KeyboardInterrupt())
    status, _, stderr = run_main(capsys, ["env"])
    assert status == 130
    assert stderr == "lstmkit: interrupted\n", stderr


def test_handler_broken_pipe(monkeypatch, capsys):
    raise_from_env(monkeypatch, BrokenPipeError(32, "Broken pipe"))
    status, _, stderr = run_main(capsys, ["env"])
    assert status == 1
    assert stderr == "", stderr


# ------------------------------------------------------ subprocesses


def run_subprocess(arguments: list[str], **environment) -> tuple[int, str]:
    """Runs Python in a fresh process; returns `(exit status, stderr)`."""
    variables = {
        **os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **environment,
    }
    completed = subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        env=variables,
        cwd=REPO_ROOT,
        timeout=300,
    )
    return completed.returncode, completed.stderr


def test_subprocess_corrupt_checkpoint(tmp_path):
    prefix = truncated_checkpoint(tmp_path)
    target = tmp_path / "out.keras"

    status, stderr = run_subprocess(
        ["-m", "lstmkit.cli.main", "convert", str(prefix), str(target)]
    )

    assert status == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert f"lstmkit convert: error: Cannot convert {prefix}" in stderr
    assert "truncated or corrupt" in stderr, stderr
    assert not target.exists()


# A real process in which `lstmkit env` fails with an exception that
# lstmkit does not expect.
FAILING_ENV = (
    "import sys\n"
    "from lstmkit.cli import env, main\n"
    "def fail(args):\n"
    "    raise RuntimeError('the weights went missing')\n"
    "env.run = fail\n"
    "sys.exit(main.main(['env']))\n"
)


def test_subprocess_unexpected_error_debug():
    """The message as without DEBUG, after it the logged traceback.

    The message without DEBUG is checked in-process by
    `test_handler_unexpected_error`.
    """
    status, stderr = run_subprocess(
        ["-c", FAILING_ENV], LSTMKIT_LOG_LEVEL="DEBUG"
    )

    assert status == 1, stderr
    assert (
        "lstmkit: internal error: RuntimeError: the weights went missing"
        in stderr
    ), stderr
    assert "Traceback (most recent call last)" in stderr, stderr
    assert "in fail" in stderr, stderr
