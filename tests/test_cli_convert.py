"""Tests of `lstmkit convert` on small real files.

Each source file is written by its own framework (a TF1 graph saved with
`Saver`, `model.save` in Keras, `np.savez` of a state dict from the
converters) together with its outputs on `PROBE`. Each written target is
read back by its own framework and must reproduce those outputs.
"""

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import lstmkit.layers
from helpers import V1LSTMCell
from lstmkit.convert import formats, probe
from lstmkit.cli.main import main
from lstmkit.convert import to_torch_lstm_state_dict

BATCH, TIME, DEPTH, UNITS = 2, 5, 3, 4
# Largest absolute difference accepted between float32 outputs of two
# frameworks that share converted weights.
ATOL = 1e-5
PROBE = np.random.default_rng(100).standard_normal(
    [BATCH, TIME, DEPTH]
).astype(np.float32)


# ---------------------------------------------------------------- helpers


def run_convert(capsys, *arguments):
    """Runs `lstmkit convert` and returns `(exit status, stdout, stderr)`."""
    status = main(["convert", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def reported_differences(output):
    """Returns the "max abs diff" rows of the report as floats."""
    rows = re.findall(r"^(forward|backward|all)\s+(\S+)$", output, re.M)
    return {direction: float(value) for direction, value in rows}


def assert_close(actual, expected, label):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (
        f"{label}: shape {actual.shape} differs from {expected.shape}"
    )
    difference = float(np.abs(actual - expected).max())
    assert difference <= ATOL, f"{label}: max abs diff {difference:.3g}"


def random_values(rng, shape):
    return rng.uniform(-0.7, 0.7, size=shape).astype(np.float32)


def new_v1_cell(**options):
    with warnings.catch_warnings():
        # The v1 cell warns on every construction that it is deprecated.
        warnings.simplefilter("ignore", UserWarning)
        return V1LSTMCell(UNITS, **options)


def build_v1_rnn(bidirectional, **options):
    """Builds the v1 RNN in the current graph and returns (inputs, outputs)."""
    inputs = tf.compat.v1.placeholder(tf.float32, [None, None, DEPTH])
    if not bidirectional:
        outputs, _ = tf.compat.v1.nn.dynamic_rnn(
            new_v1_cell(**options), inputs, dtype=tf.float32
        )
        return inputs, outputs
    outputs, _ = tf.compat.v1.nn.bidirectional_dynamic_rnn(
        new_v1_cell(**options),
        new_v1_cell(**options),
        inputs,
        dtype=tf.float32,
    )
    return inputs, tf.concat(outputs, axis=-1)


def write_tf1_checkpoint(path, bidirectional, seed, **options):
    """Saves a v1 RNN with random weights and returns its PROBE outputs."""
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        inputs, outputs = build_v1_rnn(bidirectional, **options)
        for variable in tf.compat.v1.global_variables():
            shape = variable.shape.as_list()
            variable.load(random_values(rng, shape), session)
        tf.compat.v1.train.Saver().save(session, str(path))
        return session.run(outputs, {inputs: PROBE})


def restore_tf1_checkpoint(path, bidirectional, **options):
    """Restores a checkpoint into new dynamic_rnn code and runs PROBE."""
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        inputs, outputs = build_v1_rnn(bidirectional, **options)
        tf.compat.v1.train.Saver().restore(session, str(path))
        return session.run(outputs, {inputs: PROBE})


def randomize_layer(layer, seed):
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [random_values(rng, weight.shape) for weight in layer.get_weights()]
    )


def keras_sequences(layer):
    """Runs a Keras LSTM's weights with `return_sequences=True` on PROBE."""
    copy = keras.layers.LSTM(UNITS, return_sequences=True)
    copy.build((None, None, DEPTH))
    copy.set_weights(layer.get_weights())
    return np.asarray(copy(PROBE))


def eager_v1_outputs(cells):
    """Runs one v1 cell or a (fw, bw) pair on PROBE with the v1 drivers."""
    if len(cells) == 1:
        outputs, _ = tf.compat.v1.nn.dynamic_rnn(
            cells[0], PROBE, dtype=tf.float32
        )
        return outputs.numpy()
    outputs, _ = tf.compat.v1.nn.bidirectional_dynamic_rnn(
        cells[0], cells[1], PROBE, dtype=tf.float32
    )
    return tf.concat(outputs, axis=-1).numpy()


def write_v1_state_dict(path, bidirectional, seed):
    """Saves the nn.LSTM state dict of random v1 cells as .npz.

    Returns:
        The v1 cells' outputs on PROBE, the reference for the state dict.
    """
    rng = np.random.default_rng(seed)
    cells = [new_v1_cell() for _ in range(2 if bidirectional else 1)]
    eager_v1_outputs(cells)
    for cell in cells:
        for variable in cell.weights:
            variable.assign(random_values(rng, variable.shape))
    layer = tuple(cells) if bidirectional else cells[0]
    np.savez(path, **to_torch_lstm_state_dict([layer]))
    return eager_v1_outputs(cells)


def numpy_nn_lstm(state_dict, inputs):
    """Runs a one-layer `nn.LSTM(batch_first=True)` state dict in float64.

    Implements the equations of the `torch.nn.LSTM` documentation, with
    gate blocks i, f, g, o and the "_reverse" direction reading the
    sequence from its last step.
    """
    suffixes = ["_l0"]
    if "weight_ih_l0_reverse" in state_dict:
        suffixes.append("_l0_reverse")
    outputs = []
    for suffix in suffixes:
        weights = {
            name: np.asarray(state_dict[name + suffix], np.float64)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }
        sequence = np.asarray(inputs, np.float64)
        if suffix.endswith("_reverse"):
            sequence = sequence[:, ::-1]
        h = np.zeros([len(sequence), UNITS])
        c = np.zeros([len(sequence), UNITS])
        steps = []
        for step in range(sequence.shape[1]):
            gates = (
                sequence[:, step] @ weights["weight_ih"].T
                + h @ weights["weight_hh"].T
                + weights["bias_ih"]
                + weights["bias_hh"]
            )
            i, f, g, o = np.split(gates, 4, axis=1)
            sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            steps.append(h)
        output = np.stack(steps, axis=1)
        if suffix.endswith("_reverse"):
            output = output[:, ::-1]
        outputs.append(output)
    return np.concatenate(outputs, axis=-1)


def random_two_layer_state_dict(seed):
    """Returns a random unidirectional nn.LSTM state dict, num_layers=2."""
    rng = np.random.default_rng(seed)
    state_dict = {}
    for layer, depth in enumerate((DEPTH, UNITS)):
        shapes = {
            "weight_ih": [4 * UNITS, depth],
            "weight_hh": [4 * UNITS, UNITS],
            "bias_ih": [4 * UNITS],
            "bias_hh": [4 * UNITS],
        }
        for name, shape in shapes.items():
            state_dict[f"{name}_l{layer}"] = random_values(rng, shape)
    return state_dict


def assert_state_dicts_match(written, expected):
    """Checks the keys, the weights and the summed biases of each layer.

    The writer moves the whole bias into `bias_ih` and zeros `bias_hh`,
    which leaves the sum that nn.LSTM adds unchanged.
    """
    assert sorted(written) == sorted(expected)
    for key, value in expected.items():
        if key.startswith("weight_"):
            assert np.array_equal(written[key], value), key
    for key in expected:
        if key.startswith("bias_ih"):
            other = key.replace("bias_ih", "bias_hh")
            total = written[key] + written[other]
            expected_total = expected[key] + expected[other]
            assert np.allclose(total, expected_total, atol=1e-6), key


# ---------------------------------------------------------------- sources


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Writes every source file once.

    Returns:
        name -> (path, bidirectional, outputs on PROBE
        `[BATCH, TIME, directions * UNITS]`).
    """
    folder = tmp_path_factory.mktemp("sources")
    found = {}

    for name, bidirectional in (("tf1_lstm", False), ("tf1_bilstm", True)):
        path = folder / name / "model.ckpt"
        outputs = write_tf1_checkpoint(path, bidirectional, seed=1)
        found[name] = (path, bidirectional, outputs)

    lstm = keras.layers.LSTM(UNITS)
    model = keras.Sequential(
        [keras.Input((None, DEPTH)), lstm, keras.layers.Dense(2)]
    )
    randomize_layer(lstm, seed=2)
    model.save(folder / "lstm.keras")
    found["keras_lstm"] = (folder / "lstm.keras", False, keras_sequences(lstm))

    bilstm = keras.layers.Bidirectional(
        keras.layers.LSTM(UNITS, return_sequences=True)
    )
    model = keras.Sequential([keras.Input((None, DEPTH)), bilstm])
    randomize_layer(bilstm, seed=3)
    model.save(folder / "bilstm.keras")
    found["keras_bilstm"] = (
        folder / "bilstm.keras", True, np.asarray(bilstm(PROBE))
    )

    for name, bidirectional in (("npz_lstm", False), ("npz_bilstm", True)):
        path = folder / f"{name}.npz"
        outputs = write_v1_state_dict(path, bidirectional, seed=4)
        found[name] = (path, bidirectional, outputs)
    return found


SOURCES = [
    "tf1_lstm", "tf1_bilstm", "keras_lstm", "keras_bilstm", "npz_lstm",
    "npz_bilstm",
]
TARGETS = {"keras": "out.keras", "npz": "out.npz", "tf1": "out.ckpt"}


def read_target_back(path, target, bidirectional, **cell_options):
    """Runs a written target on PROBE with its own framework."""
    if target == "keras":
        model = keras.saving.load_model(path)
        [layer] = model.layers
        expected = keras.layers.Bidirectional if bidirectional else (
            keras.layers.LSTM
        )
        assert type(layer) is expected
        return np.asarray(model(PROBE))
    if target == "npz":
        with np.load(path) as archive:
            state_dict = dict(archive)
        assert ("weight_ih_l0_reverse" in state_dict) == bidirectional
        return numpy_nn_lstm(state_dict, PROBE)
    return restore_tf1_checkpoint(path, bidirectional, **cell_options)


# ---------------------------------------------------------------- pairs


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("source", SOURCES)
def test_convert_pair(source, target, sources, tmp_path, capsys):
    path, bidirectional, expected = sources[source]
    target_path = tmp_path / TARGETS[target]

    status, output, error = run_convert(capsys, path, target_path)

    assert status == 0, error
    differences = reported_differences(output)
    assert differences["all"] < ATOL
    if bidirectional:
        assert differences["forward"] < ATOL
        assert differences["backward"] < ATOL
    actual = read_target_back(target_path, target, bidirectional)
    assert_close(actual, expected, f"{source} -> {target} read back")


def test_tf1_folder_and_prefix(sources, tmp_path, capsys):
    path, _, expected = sources["tf1_bilstm"]

    status, output, error = run_convert(
        capsys, path.parent, tmp_path / "out.npz",
        "--prefix", "bidirectional_rnn",
    )

    assert status == 0, error
    assert "bidirectional_rnn/{fw,bw}/lstm_cell" in output
    actual = read_target_back(tmp_path / "out.npz", "npz", True)
    assert_close(actual, expected, "folder source")


def test_tf1_forget_bias_carries_over(tmp_path, capsys):
    source = tmp_path / "source" / "model.ckpt"
    expected = write_tf1_checkpoint(source, False, seed=5, forget_bias=0.5)
    keras_path = tmp_path / "out.keras"
    tf1_path = tmp_path / "again" / "model.ckpt"

    to_keras = run_convert(
        capsys, source, keras_path, "--forget-bias", "0.5"
    )
    back = run_convert(
        capsys, keras_path, tf1_path, "--forget-bias", "0.25"
    )

    assert to_keras[0] == 0, to_keras[2]
    assert back[0] == 0, back[2]
    assert "LSTMCell(4, forget_bias=0.25)" in back[1]
    keras_outputs = read_target_back(keras_path, "keras", False)
    tf1_outputs = read_target_back(tf1_path, "tf1", False, forget_bias=0.25)
    assert_close(keras_outputs, expected, "keras target")
    assert_close(tf1_outputs, expected, "tf1 target")


def new_lstmkit_layer(kind):
    """Returns an lstmkit layer whose forget bias differs from the default."""
    if kind == "LSTM":
        return lstmkit.layers.LSTM(
            UNITS, return_sequences=True, forget_bias=0.3
        )
    return lstmkit.layers.Bidirectional(
        lstmkit.layers.LSTM(
            UNITS, return_sequences=True, semantics="tf1", forget_bias=0.5
        )
    )


@pytest.mark.parametrize("kind", ["LSTM", "Bidirectional"])
def test_lstmkit_layer_source(kind, tmp_path, capsys):
    layer = new_lstmkit_layer(kind)
    model = keras.Sequential([keras.Input((None, DEPTH)), layer])
    randomize_layer(layer, seed=6)
    expected = np.asarray(layer(PROBE))
    model.save(tmp_path / "lstmkit.keras")

    status, output, error = run_convert(
        capsys, tmp_path / "lstmkit.keras", tmp_path / "out.ckpt"
    )

    assert status == 0, error
    assert f"lstmkit.layers.{kind}" in output
    bidirectional = kind == "Bidirectional"
    actual = read_target_back(tmp_path / "out.ckpt", "tf1", bidirectional)
    assert_close(actual, expected, f"lstmkit {kind} -> tf1")


def test_tf1_peepholes_only_to_tf1(tmp_path, capsys):
    source = tmp_path / "source" / "model.ckpt"
    expected = write_tf1_checkpoint(
        source, False, seed=7, use_peepholes=True
    )

    copied = run_convert(capsys, source, tmp_path / "out.ckpt")
    to_keras = run_convert(capsys, source, tmp_path / "out.keras")
    to_torch = run_convert(capsys, source, tmp_path / "out.npz")

    assert copied[0] == 0, copied[2]
    assert "use_peepholes=True" in copied[1]
    actual = read_target_back(
        tmp_path / "out.ckpt", "tf1", False, use_peepholes=True
    )
    assert_close(actual, expected, "peepholes -> tf1")
    for status, _, error in (to_keras, to_torch):
        assert status == 2
        assert "use_peepholes=True" in error
    assert not (tmp_path / "out.keras").exists()
    assert not (tmp_path / "out.npz").exists()


def test_two_layer_state_dict_round_trip(tmp_path, capsys):
    state_dict = random_two_layer_state_dict(seed=8)
    source = tmp_path / "model.npz"
    np.savez(source, **{f"encoder.lstm.{k}": v for k, v in state_dict.items()})

    status, output, error = run_convert(capsys, source, tmp_path / "out.npz")

    assert status == 0, error
    assert "num_layers 2" in output
    assert reported_differences(output)["all"] < ATOL
    with np.load(tmp_path / "out.npz") as archive:
        written = dict(archive)
    assert_state_dicts_match(written, state_dict)


def test_difference_above_limit_exits_1(
    sources, tmp_path, capsys, monkeypatch
):
    path, _, _ = sources["keras_lstm"]
    run_keras_layer = probe.run_keras_layer

    def shifted(layer, inputs):
        return run_keras_layer(layer, inputs) + 0.01

    monkeypatch.setattr(probe, "run_keras_layer", shifted)
    status, output, error = run_convert(capsys, path, tmp_path / "out.npz")

    assert status == 1
    assert reported_differences(output)["all"] == pytest.approx(0.01)
    assert "Do not use it." in error


# ---------------------------------------------------------------- errors


def assert_rejected(result, *phrases):
    status, output, error = result
    assert status == 2
    assert output == ""
    assert error.startswith("lstmkit convert: error: ")
    assert "Traceback" not in error
    for phrase in phrases:
        assert phrase in error


def test_missing_source_rejected(tmp_path, capsys):
    result = run_convert(
        capsys, tmp_path / "absent.npz", tmp_path / "out.keras"
    )
    assert_rejected(result, "absent.npz not found")


def test_unknown_extensions_rejected(sources, tmp_path, capsys):
    path, _, _ = sources["npz_lstm"]
    text_file = tmp_path / "weights.txt"
    text_file.write_text("not weights")

    target = run_convert(capsys, path, tmp_path / "out.txt")
    source = run_convert(capsys, text_file, tmp_path / "out.npz")
    keras_name = run_convert(
        capsys, path, tmp_path / "out.h5", "--to", "keras"
    )

    assert_rejected(target, "TARGET", "out.txt", "--to tf1")
    assert_rejected(source, "SOURCE", "weights.txt", "--from")
    assert_rejected(keras_name, "out.h5", "must end in .keras")


def test_unreadable_files_rejected(tmp_path, capsys):
    (tmp_path / "broken.keras").write_text("not a zip archive")
    (tmp_path / "broken.npz").write_text("not a zip archive")

    keras_file = run_convert(
        capsys, tmp_path / "broken.keras", tmp_path / "out.npz"
    )
    npz_file = run_convert(
        capsys, tmp_path / "broken.npz", tmp_path / "out.keras"
    )

    assert_rejected(keras_file, "broken.keras is not a .keras model file")
    assert_rejected(npz_file, "broken.npz is not an .npz archive")


def test_missing_state_dict_key_rejected(sources, tmp_path, capsys):
    path, _, _ = sources["npz_bilstm"]
    with np.load(path) as archive:
        state_dict = dict(archive)
    del state_dict["bias_hh_l0_reverse"]
    np.savez(tmp_path / "partial.npz", **state_dict)

    result = run_convert(
        capsys, tmp_path / "partial.npz", tmp_path / "out.keras"
    )

    assert_rejected(result, "partial.npz", "bias_hh_l0_reverse")


def test_other_checkpoint_lists_variables(tmp_path, capsys):
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.get_variable("dense/kernel", [3, 2])
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().save(session, str(tmp_path / "model.ckpt"))

    result = run_convert(
        capsys, tmp_path / "model.ckpt", tmp_path / "out.keras"
    )

    assert_rejected(result, "rnn/lstm_cell/kernel", "dense/kernel [3, 2]")


def test_two_layers_rejected_by_single_layer_formats(tmp_path, capsys):
    np.savez(tmp_path / "two.npz", **random_two_layer_state_dict(seed=9))

    for target in ("out.keras", "out.ckpt"):
        result = run_convert(capsys, tmp_path / "two.npz", tmp_path / target)
        assert_rejected(result, "num_layers=2")
        assert not (tmp_path / target).exists()


def test_existing_target_kept_without_overwrite(sources, tmp_path, capsys):
    path, _, _ = sources["npz_lstm"]
    target = tmp_path / "out.keras"
    target.write_bytes(b"keep me")

    refused = run_convert(capsys, path, target)
    replaced = run_convert(capsys, path, target, "--overwrite")

    assert_rejected(refused, "already exists", "--overwrite")
    assert replaced[0] == 0, replaced[2]
    assert target.read_bytes() != b"keep me"


def test_existing_tf1_target_kept_without_overwrite(
    sources, tmp_path, capsys
):
    path, _, _ = sources["npz_lstm"]
    target = tmp_path / "model.ckpt"
    write_tf1_checkpoint(target, True, seed=10)
    index = (tmp_path / "model.ckpt.index").read_bytes()

    result = run_convert(capsys, path, target)

    assert_rejected(result, "already exists", "model.ckpt.index")
    assert (tmp_path / "model.ckpt.index").read_bytes() == index


def test_pt_without_torch_explains_fix(
    sources, tmp_path, capsys, monkeypatch
):
    path, _, _ = sources["npz_lstm"]
    monkeypatch.setattr(formats, "torch_installed", lambda: False)

    result = run_convert(capsys, path, tmp_path / "out.pt")

    assert_rejected(result, "pip install torch==2.13.0", ".npz")


# ---------------------------------------------------------------- PyTorch


def test_torch_pt_round_trip(sources, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    path, _, expected = sources["npz_bilstm"]
    pt_path = tmp_path / "model.pt"

    to_pt = run_convert(capsys, path, pt_path)
    to_keras = run_convert(capsys, pt_path, tmp_path / "out.keras")

    assert to_pt[0] == 0, to_pt[2]
    assert "torch.nn.LSTM" in to_pt[1]
    assert to_keras[0] == 0, to_keras[2]
    module = torch.nn.LSTM(DEPTH, UNITS, batch_first=True, bidirectional=True)
    module.load_state_dict(torch.load(pt_path, weights_only=True))
    with torch.no_grad():
        outputs, _ = module(torch.from_numpy(PROBE))
    assert_close(outputs.numpy(), expected, "torch module")
    keras_outputs = read_target_back(tmp_path / "out.keras", "keras", True)
    assert_close(keras_outputs, expected, ".pt -> keras")


def test_torch_two_layer_pt_round_trip(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    state_dict = random_two_layer_state_dict(seed=11)
    torch.save(
        {key: torch.from_numpy(value) for key, value in state_dict.items()},
        tmp_path / "two.pt",
    )

    status, output, error = run_convert(
        capsys, tmp_path / "two.pt", tmp_path / "out.pth"
    )

    assert status == 0, error
    assert reported_differences(output)["all"] < ATOL
    written = torch.load(tmp_path / "out.pth", weights_only=True)
    assert_state_dicts_match(
        {key: value.numpy() for key, value in written.items()}, state_dict
    )
