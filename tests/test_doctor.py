"""Tests of `lstmkit doctor` on a gallery of correct and broken LSTMs.

Every broken gallery entry plants known faults; the doctor must name
exactly those checks as faults. Correct code (lstmkit's, the built-ins
wrapped, hand-written v1, Keras and PyTorch conventions) must give none.
"""

import functools
import json

import numpy as np
import pytest
import tensorflow as tf
from doctor_gallery import entries, examples
from doctor_gallery.handwritten import Spec
from doctor_gallery.shapes import function_adapter

import lstmkit.kernels
from lstmkit import doctor
from lstmkit.cli.main import main
from lstmkit.doctor import conventions, weights
from lstmkit.doctor.layout import DirectionLayout, LayoutFinding

GALLERY = entries.broken_entries() + entries.correct_entries()
_ENTRIES = {entry.name: entry for entry in GALLERY}


@functools.cache
def _report(name: str) -> doctor.Report:
    """Diagnoses one gallery entry, once per test session."""
    # lstmkit's compiled kernels would compile for every probe shape; the
    # autodiff kernel gives the same numbers without compiling.
    with lstmkit.kernels.use("autodiff"):
        return doctor.diagnose(_ENTRIES[name].make())


class _Reports:
    """Gallery reports by entry name, for the tests that read details."""

    def __getitem__(self, name: str) -> doctor.Report:
        return _report(name)


@pytest.fixture
def reports() -> _Reports:
    return _Reports()


@pytest.mark.parametrize("entry", GALLERY, ids=lambda entry: entry.name)
def test_gallery_names_faults(entry):
    report = _report(entry.name)

    assert report.error is None
    assert [r.check for r in report.results] == list(doctor.CHECK_IDS)
    assert not [r for r in report.results if r.status == doctor.ERROR]
    assert report.faults == entry.faults
    assert report.warnings == entry.warnings
    assert report.exit_status == (1 if entry.faults else 0)


def test_gallery_covers_every_check():
    named = set().union(*(entry.faults for entry in GALLERY))

    assert named == set(doctor.CHECK_IDS)


def test_divergence_reports_step(reports):
    result = reports["function-recurrent_from_c"].result("divergence")

    # h and c are both zero before the first step, so feeding c instead of
    # h into the recurrent product first matters at step 1.
    assert result.data["first_step"] == 1
    assert result.data["max_difference_per_step"][0] < 1e-5
    assert result.data["max_difference_per_step"][1] > 1e-3
    assert "step 1" in result.evidence


def test_forget_bias_measured(reports):
    result = reports["function-forget_bias_misplaced"].result("forget_bias")
    measured = result.data["directions"][0]

    assert measured["runtime"] == pytest.approx(0.0, abs=1e-3)
    assert measured["stored"] == pytest.approx(1.0, abs=1e-6)
    assert "stored in the bias instead of added" in result.evidence
    assert reports["function-forget_bias_misplaced"].convention == "v1"


def test_layout_reports_order(reports):
    report = reports["keras-gate_order"]
    result = report.result("layout")

    assert report.convention == "keras"
    assert report.convention_source == "declared"
    assert report.layout["directions"][0]["gate_order"] == "icfo"
    assert "gates i,c,f,o, but keras orders them i,f,c,o" in result.evidence


def test_reverse_back_steps(reports):
    result = reports["function-bi-no_reverse_back"].result("bidi_reverse_back")

    assert result.data["changed_steps"] == [4, 5]
    assert result.data["expected"] == [0, 1]
    assert "processing order" in result.evidence


def test_whole_axis_skips_backward_padding(reports):
    report = reports["keras-bi-whole_axis"]

    assert report.result("bidi_per_length").data["backward_difference"] > 1e-2
    assert "backward half not judged" in report.result(
        "padding_outputs"
    ).evidence


def test_initialization_statistics(reports):
    result = reports["module-correct"].result("initialization")
    tests = {test["name"]: test for test in result.data["tests"]}

    assert set(tests) == {"weight_ih", "weight_hh", "biases (i, g, o)"}
    assert all(test["p_value"] > 1e-6 for test in tests.values())
    assert "U(±0.177)" in result.evidence


def test_builtin_nan_gradient_warning(reports):
    result = reports["v1-dynamic-rnn"].result("padding_nan")

    assert result.status == doctor.WARN
    assert result.data["padded_outputs_finite"]
    assert result.data["states_finite"]
    assert not result.data["weight_gradients_finite"]


def test_raising_code_reported():
    report = doctor.diagnose(examples.raising)

    assert report.exit_status == 2
    assert report.results == []
    assert "RuntimeError: this implementation always fails" in report.error


def test_wrong_output_shape_reported():
    report = doctor.diagnose(examples.wrong_shape)

    assert report.exit_status == 2
    assert "returned outputs of shape (4, 4)" in report.error
    assert "expected (4, 6, 4)" in report.error


def test_wrong_state_count_reported():
    def run(inputs, lengths, weights):
        outputs, (c, h) = function_adapter(Spec("v1")).fn(
            inputs, lengths, weights
        )
        return outputs, (c,)

    report = doctor.diagnose(doctor.FunctionAdapter(run, weight_format="v1"))

    assert report.exit_status == 2
    assert "final state with 1 tensor(s)" in report.error


def test_non_pair_result_reported():
    def run(inputs, lengths, weights):
        return inputs

    report = doctor.diagnose(doctor.FunctionAdapter(run, weight_format="v1"))

    assert report.exit_status == 2
    assert "expected a pair (outputs, state)" in report.error


def test_unknown_weight_shapes_fault():
    def init(depth, units):
        return {"kernel": np.zeros([depth, units], np.float32)}

    def run(inputs, lengths, weights):
        h = tf.tanh(inputs @ weights["kernel"])
        return h, (h[:, -1], h[:, -1])

    report = doctor.diagnose(doctor.FunctionAdapter(run, init=init))

    assert report.result("layout").status == doctor.FAULT
    assert "match no LSTM storage format" in report.result("layout").evidence
    assert report.result("forget_bias").status == doctor.SKIPPED
    assert report.result("divergence").status == doctor.SKIPPED


def test_adapter_rejects_arguments():
    with pytest.raises(ValueError, match="weight_format"):
        doctor.FunctionAdapter(lambda *args: None)
    with pytest.raises(ValueError, match="Unknown convention 'tf2'"):
        doctor.FunctionAdapter(lambda *a: None, weight_format="v1",
                               convention="tf2")
    with pytest.raises(ValueError, match="state_order"):
        doctor.FunctionAdapter(lambda *a: None, weight_format="v1",
                               state_order="cx")


def test_storage_identified_by_shape():
    def variables(*shapes):
        return [np.zeros(shape) for shape in shapes]

    v1 = weights.identify_storage(variables((7, 16), (16,)), 3, 4)
    keras = weights.identify_storage(
        variables((16,), (4, 16), (3, 16)), 3, 4
    )
    torch = weights.identify_storage(
        variables((16, 3), (16, 4), (16,), (16,)), 3, 4
    )

    assert v1.weight_format == "v1"
    assert keras.weight_format == "keras"
    assert keras.indices == {"kernel_x": 2, "kernel_h": 1, "bias": 0}
    assert torch.weight_format == "torch"
    assert torch.bias_roles == ["bias_ih", "bias_hh"]
    with pytest.raises(weights.LayoutError, match="match no LSTM"):
        weights.identify_storage(variables((7, 16), (16,), (4,)), 3, 4)


@pytest.mark.parametrize("weight_format", ["v1", "keras", "torch"])
def test_canonical_round_trip(weight_format):
    rng = np.random.default_rng(1)
    shapes = {
        "v1": [(7, 16), (16,)],
        "keras": [(3, 16), (4, 16), (16,)],
        "torch": [(16, 3), (16, 4), (16,), (16,)],
    }[weight_format]
    storage = weights.identify_storage(
        [np.zeros(s) for s in shapes], 3, 4
    )
    kernel = rng.normal(size=[7, 16])
    bias = rng.normal(size=[16])

    stored = weights.from_canonical(storage, "ifgo", kernel, bias, rng)
    arrays = [stored[index] for index in range(len(shapes))]
    canonical = weights.to_canonical(storage, "ifgo", arrays)

    np.testing.assert_allclose(canonical.kernel, kernel)
    np.testing.assert_allclose(canonical.bias, bias)


def test_convention_inferred_from_storage():
    storage = weights.StorageLayout("v1", {"kernel": 0, "bias": 1}, 3, 4)
    wrong_order = LayoutFinding(
        [DirectionLayout(storage, "ifjo", 0.0, 0.1)], None, "inferred"
    )
    keras_like = LayoutFinding(
        [DirectionLayout(storage, "ifjo", 0.0, 0.1)], None, "inferred"
    )

    # A v1 kernel with Keras' gate order but v1's run-time forget bias.
    assert conventions.CONVENTIONS["v1"] == _infer(wrong_order, 1.0, 0.0)
    # The same kernel that stores its forget bias as Keras does.
    assert conventions.CONVENTIONS["keras"] == _infer(keras_like, 0.0, 1.0)


def _infer(finding, runtime, stored):
    from lstmkit.doctor.layout import infer_convention

    return infer_convention(finding, runtime, stored)


def test_cli_fault_table(capsys):
    target = "tests/doctor_gallery/examples.py:forget_bias_stored"

    status = main(["doctor", target])
    output = capsys.readouterr().out

    assert status == 1
    assert "forget_bias_stored (function, LSTM); convention v1" in output
    assert "forget_bias           FAULT" in output
    assert "Faults: forget_bias." in output


def test_cli_json(capsys, monkeypatch, request):
    monkeypatch.chdir(request.config.rootpath / "tests")

    status = main(["doctor", "doctor_gallery.examples:correct_lstm", "--json"])
    report = json.loads(capsys.readouterr().out)

    assert status == 0
    assert report["exit_status"] == 0
    assert report["faults"] == []
    assert report["convention"] == "v1"
    assert [r["check"] for r in report["results"]] == list(doctor.CHECK_IDS)


def test_cli_code_error(capsys):
    status = main(["doctor", "tests/doctor_gallery/examples.py:raising"])
    captured = capsys.readouterr()

    assert status == 2
    assert "RuntimeError: this implementation always fails" in captured.out
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize(
    "target, message",
    [
        ("no_colon", "expected module:attribute"),
        ("missing/file.py:x", "File missing/file.py not found"),
        ("tests/doctor_gallery/examples.py:absent", "no attribute 'absent'"),
        ("os:sep", "is of type str, not an adapter"),
        ("json:dumps", "json:dumps() raised TypeError"),
    ],
)
def test_cli_bad_target(capsys, target, message):
    status = main(["doctor", target])
    captured = capsys.readouterr()

    assert status == 2
    assert message in captured.err


def test_non_numeric_init_reported():
    def init(depth, units):
        return {"kernel": "not an array", "bias": np.zeros(4 * units)}

    report = doctor.diagnose(doctor.FunctionAdapter(lambda *a: None, init=init))

    assert report.exit_status == 2
    assert "weight 'kernel' that is not a numeric array" in report.error


def test_torch_runtime_forget_bias_named():
    from lstmkit.doctor.forget_bias import ForgetBias, _judge

    measured = ForgetBias(
        runtime=1.0, fit_error=0.0, stored=0.01, stored_spread=0.15,
        stored_count=32,
    )

    fault = _judge(conventions.get_convention("torch"), measured)

    assert fault == "1 added at every step; torch adds 0"


def test_nan_evidence_names_reported_leaks():
    def unmasked(inputs, lengths, weights):
        kernel, bias = weights["kernel"], weights["bias"]
        c = h = tf.zeros([inputs.shape[0], bias.shape[0] // 4])
        outputs = []
        for t in range(inputs.shape[1]):
            z = tf.concat([inputs[:, t], h], 1) @ kernel + bias
            i, j, f, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(j)
            h = tf.sigmoid(o) * tf.tanh(c)
            outputs.append(h)
        return tf.stack(outputs, axis=1), (c, h)

    with lstmkit.kernels.use("autodiff"):
        report = doctor.diagnose(
            doctor.FunctionAdapter(unmasked, weight_format="v1")
        )
    result = report.result("padding_nan")

    assert report.faults == {"padding_outputs", "padding_state"}
    assert result.status == doctor.WARN
    assert not result.data["padded_outputs_finite"]
    assert "stay finite, but" not in result.evidence
    assert "NaN reaches outputs past the length" in result.evidence
    assert "the final state (see padding_state)" in result.evidence


def test_json_writes_nan_as_null():
    report = doctor.Report(target="t", adapter="function", bidirectional=False)
    report.results.append(doctor.CheckResult(
        "divergence", "first diverging step", doctor.FAULT, "NaN outputs",
        data={"difference": float("nan"), "steps": np.array([1.0, np.inf])},
    ))

    def reject(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    data = json.loads(report.to_json(), parse_constant=reject)

    assert data["results"][0]["data"]["difference"] is None
    assert data["results"][0]["data"]["steps"] == [1.0, None]


def test_cli_rejects_shadowed_file(capsys, tmp_path):
    (tmp_path / "random.py").write_text("adapter = None\n")

    status = main(["doctor", f"{tmp_path / 'random.py'}:adapter"])
    captured = capsys.readouterr()

    assert status == 2
    assert "name is already taken" in captured.err
    assert "Traceback" not in captured.out + captured.err
