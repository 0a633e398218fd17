"""Tests of `lstmkit bench`: registry, cases, correctness check, reports, CLI.

Nothing here asserts a time: the machine running the tests may be shared
and noisy. The tests run on tiny shapes, and the end-to-end run of the
command is shared by several tests through a module fixture.
"""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from lstmkit.bench import (
    bounds,
    cases,
    guard,
    implementations,
    memory,
    models,
    raw_ops,
    report,
    runner,
    tables,
    timing,
)
from lstmkit.bench.implementations import REFERENCE, REGISTRY, Implementation
from lstmkit.cli.main import main

# tf_keras' legacy layers warn about `layer.updates` whenever the v1
# built-in runs; the CLI hides the same warning.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*layer.updates.*:UserWarning"
)

TINY = cases.QUICK_SHAPE
BUILTINS = {"v1_dynamic_rnn", "keras_lstm", "keras_lstm_xla", "tf_keras_lstm"}
RAW_OPS = {"block_lstm", "block_lstm_v2"}


def tiny_case(mode="train", lengths="fixed", direction="uni"):
    return cases.Case(TINY, mode, lengths, direction)


def run_bench(capsys, *arguments):
    """Runs `lstmkit bench` and returns `(exit status, stdout, stderr)`."""
    status = main(["bench", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------- registry


def test_registry_has_every_required_implementation():
    required = {
        "lstmkit",
        "lstmkit_layer_norm",
        "lstmkit_gru",
        *BUILTINS,
        *RAW_OPS,
        "bound_batched_matmul",
        "bound_matmul_chain",
    }
    assert required <= set(REGISTRY)


def test_registry_entries_are_described():
    for name, entry in REGISTRY.items():
        assert entry.name == name
        assert entry.description.strip(), name
        assert entry.kind in implementations.KINDS, name


def test_registry_builtins_are_the_four_references():
    builtins = {name for name, entry in REGISTRY.items() if entry.builtin}
    assert builtins == BUILTINS
    assert REGISTRY[REFERENCE].builtin


def test_registry_marks_raw_ops_and_xla():
    for name in RAW_OPS:
        assert not REGISTRY[name].per_row_lengths, name
        assert REGISTRY[name].checked, name
        assert not REGISTRY[name].builtin, name
    assert REGISTRY["keras_lstm_xla"].jit_compile
    assert REGISTRY["bound_matmul_chain"].jit_compile
    assert not REGISTRY["keras_lstm"].jit_compile


def test_registry_variants_and_bounds_are_unchecked():
    for name in ("lstmkit_layer_norm", "lstmkit_gru", "bound_batched_matmul"):
        assert not REGISTRY[name].checked, name


def test_select_keeps_registry_order():
    selected = implementations.select(["tf_keras_lstm", "lstmkit"])
    assert [entry.name for entry in selected] == ["lstmkit", "tf_keras_lstm"]
    assert len(implementations.select()) == len(REGISTRY)


def test_select_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown implementation 'kears'"):
        implementations.select(["kears", "lstmkit"])


def test_list_prints_every_implementation(capsys):
    status, out, _ = run_bench(capsys, "--list")
    assert status == 0
    for name, entry in REGISTRY.items():
        assert name in out
        assert entry.description in out


# ------------------------------------------------------------------- cases


def test_parse_shape_presets_and_custom():
    medium = cases.parse_shape("medium")
    assert medium == cases.Shape("medium", 64, 100, 128, 256)
    custom = cases.parse_shape("2x3x4x5")
    assert (custom.batch, custom.time, custom.input_depth, custom.units) == (
        2, 3, 4, 5,
    )
    assert custom.dims == "2x3x4x5"


@pytest.mark.parametrize("text", ["huge", "2x3x4", "2x3x4x0", "2x-3x4x5", ""])
def test_parse_shape_rejects_invalid(text):
    with pytest.raises(ValueError, match="invalid shape"):
        cases.parse_shape(text)


def test_make_cases_covers_every_combination():
    all_cases = cases.make_cases(
        [TINY], list(cases.MODES), list(cases.LENGTH_MODES),
        list(cases.DIRECTIONS),
    )
    labels = {case.label for case in all_cases}
    assert len(all_cases) == len(labels) == 8
    assert "tiny/train/variable/bi" in labels


def test_case_data_is_seeded():
    first = cases.make_case_data(tiny_case(lengths="variable"), seed=3)
    again = cases.make_case_data(tiny_case(lengths="variable"), seed=3)
    other = cases.make_case_data(tiny_case(lengths="variable"), seed=4)
    np.testing.assert_array_equal(first.inputs, again.inputs)
    np.testing.assert_array_equal(first.lengths, again.lengths)
    assert not np.array_equal(first.inputs, other.inputs)


def test_case_data_lengths_and_weights():
    case = cases.Case(cases.parse_shape("64x9x3x4"), "train", "variable", "bi")
    data = cases.make_case_data(case, seed=0)
    assert data.inputs.shape == (64, 9, 3)
    assert data.lengths.dtype == np.int32
    assert data.lengths.min() >= 1
    assert data.lengths.max() <= 9
    assert len(data.weights) == 2
    assert data.weights[0].kernel.shape == (3 + 4, 16)
    assert np.any(data.weights[0].bias != 0)


def test_fixed_and_variable_share_inputs_and_weights():
    fixed = cases.make_case_data(tiny_case(lengths="fixed"), seed=0)
    variable = cases.make_case_data(tiny_case(lengths="variable"), seed=0)
    assert fixed.lengths is None
    np.testing.assert_array_equal(fixed.inputs, variable.inputs)
    np.testing.assert_array_equal(
        fixed.weights[0].kernel, variable.weights[0].kernel
    )


# ---------------------------------------------------- correctness check


class WrongForgetBiasModel(models.V1Model):
    """The v1 built-in with its forget bias dropped: wrong outputs."""

    def __init__(self, case, weights):
        super().__init__(case, weights)
        for cell in self.cells:
            cell._forget_bias = 0.0


class RegisteredGradientV2Model(raw_ops.BlockLSTMV2Model):
    """BlockLSTMV2 with TensorFlow's registered gradient: right outputs,
    wrong gradients (TensorFlow 2.21 differentiates it with the V1 kernel)."""

    def __call__(self, inputs, lengths):
        x = tf.transpose(inputs, [1, 0, 2])
        kernel, bias = self.kernels[0], self.biases[0]
        batch, units = tf.shape(x)[1], tf.shape(bias)[0] // 4
        zeros, peephole = tf.zeros([batch, units]), tf.zeros([units])
        result = tf.raw_ops.BlockLSTMV2(
            seq_len_max=tf.cast(tf.shape(x)[0], tf.int64), x=x,
            cs_prev=zeros, h_prev=zeros, w=kernel, wci=peephole,
            wcf=peephole, wco=peephole, b=bias, cell_clip=0.0,
            use_peephole=False,
        )
        return tf.transpose(result.h, [1, 0, 2])


def first_results(case, *model_classes):
    """Builds each model on the case's data and runs its step once."""
    data = cases.make_case_data(case, seed=0)
    built = []
    for model_class in model_classes:
        model = model_class(case, data.weights)
        step = timing.make_step(model, data, case.mode, jit_compile=False)
        built.append((model, step()))
    return built


def test_guard_passes_fused_v2_with_its_own_gradient():
    (reference, expected), (model, result) = first_results(
        tiny_case(), models.V1Model, raw_ops.BlockLSTMV2Model
    )
    outcome = guard.check(model, result, reference, expected, "train")
    assert outcome.status == guard.STATUS_OK, outcome.message
    assert outcome.max_output_diff <= guard.OUTPUT_ATOL
    assert outcome.max_gradient_diff <= guard.GRADIENT_RTOL


def test_guard_flags_wrong_outputs():
    (reference, expected), (model, result) = first_results(
        tiny_case(mode="forward"), models.V1Model, WrongForgetBiasModel
    )
    outcome = guard.check(model, result, reference, expected, "forward")
    assert outcome.status == guard.STATUS_MISMATCH
    assert outcome.max_output_diff > guard.OUTPUT_ATOL
    assert "outputs differ" in outcome.message


def test_guard_flags_wrong_gradients():
    (reference, expected), (model, result) = first_results(
        tiny_case(), models.V1Model, RegisteredGradientV2Model
    )
    outcome = guard.check(model, result, reference, expected, "train")
    assert outcome.status == guard.STATUS_MISMATCH
    assert outcome.max_output_diff <= guard.OUTPUT_ATOL
    assert "kernel gradient differs" in outcome.message


def test_runner_marks_wrong_implementation_and_still_times_it(monkeypatch):
    wrong = Implementation(
        "wrong_forget_bias", "v1 built-in without its forget bias", "builtin",
        WrongForgetBiasModel,
    )
    monkeypatch.setitem(REGISTRY, wrong.name, wrong)
    settings = runner.Settings(repeats=2, warmup=0, seed=0, start_up=False)
    results = runner.run(
        [tiny_case(mode="forward")], [REGISTRY[REFERENCE], wrong], settings
    )
    by_name = {result.implementation: result for result in results}
    assert by_name[REFERENCE].status == guard.STATUS_OK
    assert by_name[wrong.name].status == guard.STATUS_MISMATCH
    assert len(by_name[wrong.name].timing.samples) == 2

    rows = {row["implementation"]: row for row in report.result_rows(results)}
    assert rows[wrong.name]["fastest_builtin"] == REFERENCE
    assert "!" in tables.format_tables(list(rows.values()))


def test_runner_checks_both_directions_and_length_modes():
    names = ["keras_lstm", "tf_keras_lstm", "block_lstm", "block_lstm_v2"]
    settings = runner.Settings(repeats=1, warmup=0, seed=0, start_up=False)
    results = runner.run(
        [
            tiny_case(lengths="variable", direction="bi"),
            tiny_case(lengths="fixed", direction="bi"),
        ],
        implementations.select(names),
        settings,
    )
    statuses = {
        (result.case.lengths, result.implementation): result.status
        for result in results
    }
    assert statuses == {
        ("variable", "keras_lstm"): guard.STATUS_OK,
        ("variable", "tf_keras_lstm"): guard.STATUS_OK,
        ("variable", "block_lstm"): runner.STATUS_NOT_APPLICABLE,
        ("variable", "block_lstm_v2"): runner.STATUS_NOT_APPLICABLE,
        ("fixed", "keras_lstm"): guard.STATUS_OK,
        ("fixed", "tf_keras_lstm"): guard.STATUS_OK,
        ("fixed", "block_lstm"): guard.STATUS_OK,
        ("fixed", "block_lstm_v2"): guard.STATUS_OK,
    }


def test_matmul_chain_gradient_matches_autodiff():
    rng = np.random.default_rng(0)
    time, batch, depth, units = 5, 3, 4, 6
    x = tf.constant(rng.normal(size=(time, batch, depth)), tf.float32)
    input_kernel = tf.constant(
        rng.normal(size=(depth, 4 * units)) * 0.3, tf.float32
    )
    recurrent_kernel = tf.constant(
        rng.normal(size=(units, 4 * units)) * 0.3, tf.float32
    )
    probe = tf.constant(rng.normal(size=(time, batch, units)), tf.float32)

    def unrolled(x, input_kernel, recurrent_kernel):
        h, states = tf.zeros([batch, units]), []
        for t in range(time):
            h = (x[t] @ input_kernel + h @ recurrent_kernel)[:, :units]
            states.append(h)
        return tf.stack(states)

    results = []
    for chain in (unrolled, bounds.matmul_chain):
        arguments = [x, input_kernel, recurrent_kernel]
        with tf.GradientTape() as tape:
            tape.watch(arguments)
            loss = tf.reduce_sum(chain(*arguments) * probe)
        results.append([loss, *tape.gradient(loss, arguments)])
    for expected, actual in zip(*results):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- report


def fake_result(name, median_s, case=None, status=guard.STATUS_OK):
    case = case or tiny_case()
    samples = [median_s * 0.9, median_s, median_s * 1.2]
    return runner.Result(
        case, name, status,
        first_call_s=1.5,
        timing=timing.TimingStats.from_samples(samples),
    )


def test_ratios_use_fastest_trusted_builtin():
    other_case = tiny_case(direction="bi")
    results = [
        fake_result("lstmkit", 0.004),
        fake_result("keras_lstm", 0.010),
        fake_result("tf_keras_lstm", 0.008),
        # Faster, but neither counts as the fastest built-in:
        fake_result("block_lstm", 0.001),
        fake_result("keras_lstm_xla", 0.002, status=guard.STATUS_MISMATCH),
        fake_result("v1_dynamic_rnn", 0.020, case=other_case),
        fake_result("lstmkit", 0.010, case=other_case),
    ]
    rows = report.result_rows(results)

    assert [row["fastest_builtin"] for row in rows[:5]] == ["tf_keras_lstm"] * 5
    assert rows[0]["ratio_to_fastest_builtin"] == pytest.approx(0.5)
    assert rows[1]["ratio_to_fastest_builtin"] == pytest.approx(1.25)
    assert rows[2]["ratio_to_fastest_builtin"] == pytest.approx(1.0)
    assert rows[3]["ratio_to_fastest_builtin"] == pytest.approx(0.125)
    assert rows[4]["ratio_to_fastest_builtin"] == pytest.approx(0.25)
    assert rows[5]["fastest_builtin"] == "v1_dynamic_rnn"
    assert rows[6]["ratio_to_fastest_builtin"] == pytest.approx(0.5)


def test_ratio_is_none_without_builtin():
    rows = report.result_rows([fake_result("lstmkit", 0.004)])
    assert rows[0]["ratio_to_fastest_builtin"] is None
    assert rows[0]["fastest_builtin"] is None
    assert rows[0]["median_ms"] == pytest.approx(4.0)


def test_stats_quartiles():
    stats = timing.TimingStats.from_samples([4.0, 1.0, 3.0, 2.0, 5.0])
    assert stats.median == 3.0
    assert (stats.q1, stats.q3) == (2.0, 4.0)
    assert (stats.min, stats.max) == (1.0, 5.0)
    assert stats.samples == [4.0, 1.0, 3.0, 2.0, 5.0]


def test_report_files_round_trip(tmp_path):
    results = [
        fake_result("keras_lstm", 0.010),
        fake_result("lstmkit", 0.005),
        runner.Result(
            tiny_case(), "block_lstm", runner.STATUS_NOT_APPLICABLE,
            message="not per row",
        ),
    ]
    rows = report.result_rows(results)
    document = report.build_document(rows, {"command": "lstmkit bench"})
    report.write_json(document, tmp_path / report.REPORT_NAME)
    report.write_csv(rows, tmp_path / report.CSV_NAME)

    loaded = json.loads((tmp_path / report.REPORT_NAME).read_text())
    assert loaded["command"] == "lstmkit bench"
    assert set(loaded["implementations"]) == set(REGISTRY)
    assert loaded["results"][1]["ratio_to_fastest_builtin"] == 0.5
    assert len(loaded["results"][1]["samples_ms"]) == 3

    with open(tmp_path / report.CSV_NAME, newline="") as file:
        csv_rows = list(csv.DictReader(file))
    assert tuple(csv_rows[0]) == report.CSV_COLUMNS
    assert [row["implementation"] for row in csv_rows] == [
        "keras_lstm", "lstmkit", "block_lstm",
    ]
    assert float(csv_rows[1]["ratio_to_fastest_builtin"]) == 0.5
    assert float(csv_rows[1]["median_ms"]) == pytest.approx(5.0)
    assert csv_rows[2]["status"] == runner.STATUS_NOT_APPLICABLE
    assert csv_rows[2]["median_ms"] == ""
    assert not list(tmp_path.glob("*.tmp"))


def test_report_rows_carry_memory():
    measured = fake_result("lstmkit", 0.004)
    measured.memory = memory.MemoryResult(
        baseline_mib=600.0, peak_mib=700.0, above_baseline_mib=100.0,
        peak_was_reset=True,
    )
    unreset = fake_result("keras_lstm", 0.004)
    unreset.memory = memory.MemoryResult(
        baseline_mib=600.0, peak_mib=650.0, above_baseline_mib=50.0,
    )
    failed = fake_result("tf_keras_lstm", 0.004)
    failed.memory = memory.MemoryResult(error="timed out after 900 s")

    rows = report.result_rows([measured, unreset, failed])
    assert rows[0]["memory_above_baseline_mib"] == 100.0
    assert rows[0]["memory_baseline_mib"] == 600.0
    assert rows[0]["message"] == ""
    assert "peak not reset" in rows[1]["message"]
    assert rows[2]["memory_above_baseline_mib"] is None
    assert "memory: timed out after 900 s" in rows[2]["message"]


def test_tables_show_ratios_and_statuses():
    results = [
        fake_result("keras_lstm", 0.010),
        fake_result("lstmkit", 0.005),
        runner.Result(tiny_case(), "block_lstm", runner.STATUS_NOT_APPLICABLE),
        runner.Result(tiny_case(), "tf_keras_lstm", runner.STATUS_ERROR),
    ]
    text = tables.format_tables(report.result_rows(results))
    assert "Training step, fixed lengths" in text
    assert "| lstmkit " in text
    assert "0.50" in text
    assert "n/a" in text
    assert "error" in text
    assert "Fastest built-in: tiny uni: keras_lstm." in text


# ----------------------------------------------------------------- memory


def test_memory_of_one_step_in_child():
    result = memory.measure("bound_batched_matmul", tiny_case(), seed=0)
    assert result.error == ""
    assert result.baseline_mib > 0
    assert result.peak_mib >= result.baseline_mib
    assert result.above_baseline_mib == pytest.approx(
        result.peak_mib - result.baseline_mib
    )


# -------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--shapes", "huge"], "invalid shape 'huge'"),
        (["--shapes", "32x28x0x128"], "every size must be at least 1"),
        (["--shapes", "small,,long"], "empty item"),
        (["--modes", "fwd"], "invalid mode 'fwd': choose from forward, train"),
        (["--lengths", "ragged"], "invalid length mode 'ragged'"),
        (["--directions", "both"], "invalid direction 'both'"),
        (["--implementations", "kears"], "unknown implementation 'kears'"),
        (["--repeats", "0"], "expected a positive integer, got 0"),
        (["--warmup", "-1"], "expected an integer of 0 or more, got -1"),
        (["--seed", "x"], "expected an integer seed, got 'x'"),
    ],
)
def test_cli_rejects_invalid_argument(capsys, arguments, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *arguments])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_cli_rejects_out_that_is_a_file(capsys, tmp_path):
    out = tmp_path / "file"
    out.write_text("")
    status, _, err = run_bench(capsys, "--quick", "--out", out)
    assert status == 2
    assert "is not a folder" in err


def test_cli_rejects_existing_report(capsys, tmp_path):
    (tmp_path / report.REPORT_NAME).write_text("{}")
    status, _, err = run_bench(capsys, "--quick", "--out", tmp_path)
    assert status == 2
    assert "--overwrite" in err


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Runs `lstmkit bench --quick` on one case with every implementation."""
    out = tmp_path_factory.mktemp("bench")
    status = main([
        "bench", "--quick", "--modes", "train", "--lengths", "fixed",
        "--directions", "uni", "--repeats", "2", "--no-progress",
        "--out", str(out),
    ])
    return status, out


def test_quick_run_writes_reports(quick_run):
    status, out = quick_run
    assert status == 0
    for name in (report.REPORT_NAME, report.CSV_NAME, report.TABLES_NAME):
        assert (out / name).is_file(), name


def test_quick_run_checks_and_times_everything(quick_run):
    _, out = quick_run
    document = json.loads((out / report.REPORT_NAME).read_text())
    rows = {row["implementation"]: row for row in document["results"]}
    assert set(rows) == set(REGISTRY)
    for name, row in rows.items():
        expected = guard.STATUS_OK if REGISTRY[name].checked else (
            guard.STATUS_NOT_CHECKED
        )
        assert row["status"] == expected, (name, row["message"])
        assert row["repeats"] == 2, name
        assert row["traces"] == 1, name
        assert row["first_call_s"] > 0, name
    assert rows["lstmkit"]["fastest_builtin"] in BUILTINS
    assert rows["block_lstm_v2"]["max_gradient_diff"] <= guard.GRADIENT_RTOL


def test_quick_run_records_environment(quick_run):
    _, out = quick_run
    document = json.loads((out / report.REPORT_NAME).read_text())
    assert document["command"].startswith("lstmkit bench --shapes tiny")
    assert set(document["versions"]) == {
        "python", "tensorflow", "keras", "tf_keras", "numpy", "lstmkit",
    }
    assert document["versions"]["tensorflow"] == tf.__version__
    hardware = document["hardware"]
    assert hardware["cpu_count"] >= 1
    assert isinstance(hardware["gpus"], list)
    assert hardware["cpu_model"]
    assert {"commit", "dirty", "changed_files"} <= set(document["source"])
    assert document["finished_at"] is not None
