"""Tests of `lstmkit.export` and `lstmkit export` in the real runtimes.

Each format runs in its own runtime on right-padded batches with lengths
from 0 to the full time, and its outputs are compared with the Keras model
in TensorFlow. The SavedModel is reloaded in a fresh Python process, the
TFLite files run in the TFLite interpreter and the ONNX file in
onnxruntime. The converted files are shared per module because each
conversion takes seconds.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit
from lstmkit.cli.main import main
from lstmkit.export import ExportError, load_model, onnx, saved_model, tflite
from lstmkit.export.probe import call_with_lengths, make_probe
from lstmkit.export.sequence_lstm import (
    SequenceBidirectional,
    SequenceLSTM,
    replace_lstm_layers,
)
from lstmkit.export.serving import serving_function

DEPTH, BATCH, TIME = 3, 4, 6
# Max abs difference accepted between float32 outputs of TensorFlow and of
# a runtime that runs the same weights. Measured differences are about 1e-7.
ATOL = 1e-5


def reference(model, probe):
    return call_with_lengths(model, probe.inputs, probe.lengths).numpy()


def max_abs_diff(actual, expected):
    assert np.shape(actual) == np.shape(expected)
    return float(np.max(np.abs(np.asarray(actual) - expected)))


def build_bilstm_model():
    """BiLSTM (Keras semantics) under an LSTM with v1 semantics."""
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((None, DEPTH)),
            lstmkit.layers.Bidirectional(
                lstmkit.layers.LSTM(4, return_sequences=True)
            ),
            lstmkit.layers.LSTM(3, semantics="tf1", return_sequences=True),
            keras.layers.Dense(2),
        ],
        name="bilstm_model",
    )


def build_lstm_model():
    """LSTM carrying outputs into the padding, then a backward LSTM's
    last output."""
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((None, DEPTH)),
            lstmkit.layers.LSTM(4, return_sequences=True, forget_bias=0.5),
            lstmkit.layers.LSTM(3, go_backwards=True),
            keras.layers.Dense(2),
        ],
        name="lstm_model",
    )


MODELS = {"bilstm": build_bilstm_model, "lstm": build_lstm_model}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


@pytest.fixture(scope="module")
def probe():
    return make_probe(BATCH, TIME, DEPTH, seed=5)


# ------------------------------------------------- export layers, in TF


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"semantics": "tf1"},
        {"go_backwards": True},
        {"go_backwards": True, "semantics": "tf1"},
        {"zero_output_for_mask": True},
        {"forget_bias": 0.7},
        {"return_sequences": False},
        {"return_sequences": False, "go_backwards": True},
        {"return_sequences": False, "zero_output_for_mask": True},
        {
            "return_sequences": False,
            "zero_output_for_mask": True,
            "go_backwards": True,
        },
    ],
    ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items())
    or "default",
)
def test_sequence_lstm_matches_layer(options, probe):
    options = {"return_sequences": True, **options}
    layer = lstmkit.layers.LSTM(5, **options)
    mask = tf.sequence_mask(probe.lengths, TIME)
    expected = layer(probe.inputs, mask=mask).numpy()

    actual = SequenceLSTM(layer)(probe.inputs, mask=mask).numpy()

    assert max_abs_diff(actual, expected) <= ATOL


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_sequence_bidirectional_matches_layer(
    merge_mode, return_sequences, probe
):
    layer = lstmkit.layers.Bidirectional(
        lstmkit.layers.LSTM(4, return_sequences=return_sequences),
        merge_mode=merge_mode,
    )
    mask = tf.sequence_mask(probe.lengths, TIME)
    expected = layer(probe.inputs, mask=mask).numpy()

    actual = SequenceBidirectional(layer)(probe.inputs, mask=mask).numpy()

    assert max_abs_diff(actual, expected) <= ATOL


def test_replace_keeps_unfusable_layers():
    model = keras.Sequential(
        [
            keras.Input((None, DEPTH)),
            lstmkit.layers.LSTM(
                4, semantics="tf1", use_peepholes=True, return_sequences=True
            ),
            lstmkit.layers.LSTM(3),
        ]
    )

    clone, reasons = replace_lstm_layers(model)

    kinds = [type(layer).__name__ for layer in clone.layers]
    assert kinds == ["LSTM", "SequenceLSTM"]
    assert len(reasons) == 1
    assert "use_peepholes is set" in reasons[0]


# ------------------------------------------------------------ SavedModel


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """{name: (model, SavedModel folder)} for both models."""
    folder = tmp_path_factory.mktemp("savedmodel")
    exported = {}
    for name, build in MODELS.items():
        model = build()
        saved_model.export(model, DEPTH, folder / name)
        exported[name] = model, folder / name
    return exported


def test_savedmodel_fresh_process_identical(saved_models, probe):
    # The BiLSTM model has both kinds of layer; a fresh process costs
    # seconds of TensorFlow import, so only this model runs in one.
    model, path = saved_models["bilstm"]
    in_process = serving_function(model, DEPTH)(
        probe.inputs, probe.lengths
    )["outputs"].numpy()

    reloaded, latency = saved_model.run_in_fresh_process(path, probe, runs=1)

    np.testing.assert_array_equal(reloaded, in_process)
    assert max_abs_diff(reloaded, reference(model, probe)) <= ATOL
    assert latency > 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_savedmodel_dynamic_batch_and_time(saved_models, name):
    model, path = saved_models[name]
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    inputs = serve.structured_input_signature[1]
    assert inputs["inputs"].shape.as_list() == [None, None, DEPTH]
    assert inputs["lengths"].shape.as_list() == [None]
    assert inputs["lengths"].dtype == tf.int32

    for batch, time in [(BATCH, TIME), (BATCH + 3, TIME + 4), (1, 1)]:
        other = make_probe(batch, time, DEPTH, seed=batch + time)
        outputs = serve(
            inputs=tf.constant(other.inputs),
            lengths=tf.constant(other.lengths),
        )["outputs"]
        assert max_abs_diff(outputs.numpy(), reference(model, other)) <= ATOL


# ---------------------------------------------------------------- TFLite


@pytest.fixture(scope="module")
def tflite_variants(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tflite") / f"{model.name}.tflite"
    variants, notes = tflite.export(model, DEPTH, path, BATCH, TIME)
    return {variant.name: variant for variant in variants}, notes


def test_tflite_fused_ops(model, tflite_variants):
    variants, notes = tflite_variants
    fused = variants["fused"]
    directions = {"bilstm_model": 3, "lstm_model": 2}[model.name]

    assert notes == []
    assert fused.ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == directions
    assert fused.ops["WHILE"] == 0
    assert fused.path.suffix == ".tflite"
    assert ".loop" not in fused.path.name


def test_tflite_loop_variant_has_while(model, tflite_variants):
    loop = tflite_variants[0]["loop"]
    directions = {"bilstm_model": 3, "lstm_model": 2}[model.name]

    assert loop.ops["WHILE"] == directions
    assert loop.ops["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 0
    assert loop.path.name.endswith(".loop.tflite")
    assert loop.path.read_bytes() == loop.content


@pytest.mark.parametrize("variant", ["fused", "loop"])
@pytest.mark.parametrize("seed", [5, 7])
def test_tflite_matches_tensorflow(model, tflite_variants, variant, seed):
    probe = make_probe(BATCH, TIME, DEPTH, seed)
    content = tflite_variants[0][variant].content

    outputs, _ = tflite.run(content, probe, runs=1)

    assert max_abs_diff(outputs, reference(model, probe)) <= ATOL


def test_tflite_unfusable_falls_back(tmp_path, probe):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((None, DEPTH)),
            lstmkit.layers.LSTM(
                4,
                semantics="tf1",
                use_peepholes=True,
                return_sequences=True,
                name="peephole_lstm",
            ),
        ]
    )
    path = tmp_path / "peepholes.tflite"

    variants, notes = tflite.export(model, DEPTH, path, BATCH, TIME)
    outputs, _ = tflite.run(path.read_bytes(), probe, runs=1)

    assert [variant.name for variant in variants] == ["loop"]
    assert variants[0].path == path
    assert notes == ["left as a loop: peephole_lstm: use_peepholes is set"]
    assert max_abs_diff(outputs, reference(model, probe)) <= ATOL


# ------------------------------------------------------------------ ONNX


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / f"{model.name}.onnx"
    onnx.export(model, DEPTH, path, onnx.DEFAULT_OPSET)
    return path


def test_onnx_dynamic_inputs(onnx_path):
    session = onnx.make_session(onnx_path)
    inputs = {item.name: item for item in session.get_inputs()}

    assert sorted(inputs) == ["inputs", "lengths"]
    assert inputs["inputs"].shape[2] == DEPTH
    assert all(isinstance(size, str) for size in inputs["inputs"].shape[:2])
    assert inputs["lengths"].type == "tensor(int32)"


@pytest.mark.parametrize("batch, time", [(BATCH, TIME), (1, 2), (6, 11)])
def test_onnx_matches_tensorflow(model, onnx_path, batch, time):
    probe = make_probe(batch, time, DEPTH, seed=batch + time)

    outputs, _ = onnx.run(onnx_path, probe, runs=1)

    assert max_abs_diff(outputs, reference(model, probe)) <= ATOL


def test_onnx_unfusable_raises(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((None, DEPTH)),
            lstmkit.layers.LSTM(4, semantics="tf1", cell_clip=1.0),
        ]
    )

    with pytest.raises(ExportError, match="cell_clip is set"):
        onnx.export(model, DEPTH, tmp_path / "clip.onnx", 17)


# ------------------------------------------------------------------- CLI


def run_export(capsys, *arguments):
    status = main(["export", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def reported_differences(output):
    """Returns {runtime: max abs diff} from the printed table."""
    rows = re.findall(
        r"^(tensorflow|tflite \(\w+\)|onnxruntime|savedmodel \(fresh "
        r"process\))\s.*\s(\S+)$",
        output,
        re.M,
    )
    return {runtime: float(value) for runtime, value in rows}


# Two more TFLite conversions (about 10 s on 2 busy cores); the ONNX test
# below covers the printed table in the default run.
@pytest.mark.slow
def test_cli_tflite_demo_prints_differences(capsys, tmp_path):
    out = tmp_path / "demo.tflite"

    status, output, _ = run_export(
        capsys, "--format", "tflite", "--bidirectional", "--units", "3",
        "--input-depth", "2", "--runs", "1", "--out", out,
    )

    differences = reported_differences(output)
    assert status == 0
    assert set(differences) == {
        "tensorflow", "tflite (fused)", "tflite (loop)"
    }
    assert differences["tflite (fused)"] <= ATOL
    assert differences["tflite (loop)"] <= ATOL
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM x2" in output
    assert out.is_file()
    assert (tmp_path / "demo.loop.tflite").is_file()


def test_cli_onnx_from_keras_file(capsys, tmp_path):
    model_file = tmp_path / "model.keras"
    build_lstm_model().save(model_file)
    out = tmp_path / "model.onnx"

    status, output, _ = run_export(
        capsys, "--format", "onnx", "--model", model_file, "--runs", "1",
        "--out", out,
    )

    differences = reported_differences(output)
    assert status == 0
    assert differences["onnxruntime"] <= ATOL
    assert str(model_file) in output
    assert out.is_file()


def test_load_model_reads_lstmkit_layers(tmp_path):
    path = tmp_path / "model.keras"
    build_bilstm_model().save(path)

    model = load_model(path)

    assert model.name == "bilstm_model"


# ------------------------------------------------------------ bad input


def test_cli_missing_model_file(capsys, tmp_path):
    missing = tmp_path / "missing.keras"

    status, output, error = run_export(
        capsys, "--format", "onnx", "--model", missing
    )

    assert status == 2
    assert f"model file {missing} not found" in error
    assert "Traceback" not in error
    assert output == ""


def test_cli_unknown_format(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--format", "coreml"])
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert "invalid choice: 'coreml'" in error
    assert "Traceback" not in error


def test_cli_keras_file_without_lstmkit_layer(capsys, tmp_path):
    path = tmp_path / "builtin.keras"
    keras.Sequential(
        [keras.Input((None, DEPTH)), keras.layers.LSTM(3)]
    ).save(path)

    status, _, error = run_export(capsys, "--format", "tflite", "--model", path)

    assert status == 2
    assert "contains no lstmkit recurrent layer" in error
    assert "lstmkit.layers.LSTM" in error
    assert "Traceback" not in error


def test_cli_not_a_keras_file(capsys, tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"not a model")

    status, _, error = run_export(capsys, "--format", "onnx", "--model", path)

    assert status == 2
    assert "is not a .keras file" in error


def test_cli_existing_out_needs_overwrite(capsys, tmp_path):
    out = tmp_path / "taken.onnx"
    out.write_bytes(b"")

    status, _, error = run_export(capsys, "--format", "onnx", "--out", out)

    assert status == 2
    assert "already exists" in error
    assert "--overwrite" in error
