"""Default initialization: the distribution of freshly created weights.

The probe creates the code's weights several times at a larger size (so
that the statistics have power) and compares them with the defaults of the
convention:

* v1: Glorot uniform over the whole kernel `[input_depth + units,
  4 * units]`, limit `sqrt(6 / (input_depth + units + 4 * units))`, and a
  zero bias;
* keras: Glorot uniform input kernel (limit `sqrt(6 / (input_depth +
  4 * units))`), an orthogonal recurrent kernel (`R @ R.T = I`) and a zero
  bias;
* torch: every weight and each bias from `U(-1/sqrt(units), 1/sqrt(units))`.

The forget block of the bias is left to the forget-bias check. Uniform
draws are compared with a Kolmogorov-Smirnov test, and a p-value below
`_ALPHA` is a fault.
"""

import dataclasses
import logging
import math

import numpy as np
from scipy import stats

from lstmkit.convert.layouts import GATE_ORDER_TF1, gate_slice
from lstmkit.doctor import layout, weights
from lstmkit.doctor.context import ProbeContext
from lstmkit.doctor.report import FAULT, PASS, SKIPPED, CheckResult

logger = logging.getLogger(__name__)

CHECK = "initialization"
TITLE = "default initialization"

# Sizes of the created weights: the v1 kernel then has 56 * 128 entries.
INIT_DEPTH = 24
INIT_UNITS = 32
# Number of fresh instances pooled.
INIT_SAMPLES = 3
# Significance level of the KS test. It is small because the gallery runs
# many correct implementations, each with several tests, and a false fault
# must stay rare. A wrong limit of 10% is still found at p < 1e-30.
_ALPHA = 1e-6
# Largest |R @ R.T - I| of an orthogonal float32 recurrent kernel. Keras'
# orthogonal initializer gives about 1e-6.
_ORTHOGONAL_TOLERANCE = 1e-4


@dataclasses.dataclass
class FreshWeights:
    """One direction of one freshly created instance.

    Attributes:
        storage: the direction's storage format.
        canonical: its weights in v1 block order.
    """

    storage: weights.StorageLayout
    canonical: weights.CanonicalWeights


def fresh_weights(ctx: ProbeContext) -> list[FreshWeights] | None:
    """Creates the code's weights `INIT_SAMPLES` times (cached).

    Returns:
        One entry per direction per instance, or None when the adapter has
        no constructor or no gate order was found.

    Raises:
        UserCodeError: the constructor failed.
        LayoutError: the fresh weights match no storage format.
    """
    finding = layout.find_layout(ctx)
    if not ctx.adapter.has_constructor or finding is None:
        return None
    if not finding.usable:
        return None
    return ctx.cached("fresh", lambda: _create(ctx, finding))


def _create(ctx: ProbeContext, finding: layout.LayoutFinding) -> list:
    samples = []
    for _ in range(INIT_SAMPLES):
        instance = ctx.adapter.create(INIT_DEPTH, INIT_UNITS)
        for variables, direction in zip(
            instance.directions(), finding.directions
        ):
            storage = weights.identify_storage(
                variables, INIT_DEPTH, INIT_UNITS
            )
            arrays = [np.asarray(v.numpy(), np.float64) for v in variables]
            canonical = weights.to_canonical(storage, direction.order, arrays)
            samples.append(FreshWeights(storage, canonical))
    return samples


def check_initialization(ctx: ProbeContext) -> CheckResult:
    """Compares fresh weights with the convention's default distributions."""
    finding = layout.find_layout(ctx)
    if finding is None:
        return _skipped("the code implements a custom cell")
    if not ctx.adapter.has_constructor:
        return _skipped(
            "the adapter has no constructor (FunctionAdapter without init=)"
        )
    if not finding.usable:
        return _skipped("no gate order was found (see layout)")
    try:
        samples = fresh_weights(ctx)
    except weights.LayoutError as error:
        return CheckResult(CHECK, TITLE, FAULT, str(error))

    convention = layout.judged_convention(ctx).name
    tests = _TESTS[convention](samples)
    failed = [test for test in tests if not test.passed]
    evidence = "; ".join(test.text for test in tests)
    data = {
        "convention": convention,
        "samples": INIT_SAMPLES,
        "input_depth": INIT_DEPTH,
        "units": INIT_UNITS,
        "tests": [dataclasses.asdict(test) for test in tests],
    }
    if failed:
        fix = _FIXES[convention]
        return CheckResult(CHECK, TITLE, FAULT, evidence, fix, data)
    return CheckResult(CHECK, TITLE, PASS, evidence, "", data)


@dataclasses.dataclass
class _Test:
    name: str
    passed: bool
    text: str
    statistic: float
    p_value: float | None = None


def _uniform_test(name: str, values: np.ndarray, limit: float) -> _Test:
    values = np.ravel(values)
    result = stats.kstest(values, "uniform", args=(-limit, 2 * limit))
    low, high = float(values.min()), float(values.max())
    passed = bool(result.pvalue >= _ALPHA)
    text = (
        f"{name} range [{low:.3f}, {high:.3f}] vs U(±{limit:.3f}), KS "
        f"D={result.statistic:.3f} p={result.pvalue:.2g}"
    )
    return _Test(name, passed, text, float(result.statistic),
                 float(result.pvalue))


def _zero_test(name: str, values: np.ndarray) -> _Test:
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    text = f"{name} max |b| {largest:.3g} (expected 0)"
    return _Test(name, largest == 0.0, text, largest)


def _orthogonal_test(name: str, matrices: list[np.ndarray]) -> _Test:
    residual = max(
        float(np.max(np.abs(m @ m.T - np.eye(m.shape[0])))) for m in matrices
    )
    passed = residual <= _ORTHOGONAL_TOLERANCE
    text = f"{name} max |R R^T - I| {residual:.2g} (orthogonal: <= 1e-4)"
    return _Test(name, passed, text, residual)


def _non_forget(bias: np.ndarray) -> np.ndarray:
    forget = gate_slice(GATE_ORDER_TF1, "f", bias.shape[0] // 4)
    return np.delete(bias, np.arange(forget.start, forget.stop))


def _v1_tests(samples: list[FreshWeights]) -> list[_Test]:
    rows = INIT_DEPTH + INIT_UNITS
    limit = math.sqrt(6.0 / (rows + 4 * INIT_UNITS))
    kernels = np.concatenate([s.canonical.kernel.ravel() for s in samples])
    biases = np.concatenate([_non_forget(s.canonical.bias) for s in samples])
    return [
        _uniform_test("kernel", kernels, limit),
        _zero_test("bias (i, j, o)", biases),
    ]


def _keras_tests(samples: list[FreshWeights]) -> list[_Test]:
    limit = math.sqrt(6.0 / (INIT_DEPTH + 4 * INIT_UNITS))
    kernels = np.concatenate([s.canonical.kernel_x.ravel() for s in samples])
    biases = np.concatenate([_non_forget(s.canonical.bias) for s in samples])
    return [
        _uniform_test("kernel", kernels, limit),
        _orthogonal_test(
            "recurrent kernel", [s.canonical.kernel_h for s in samples]
        ),
        _zero_test("bias (i, c, o)", biases),
    ]


def _torch_tests(samples: list[FreshWeights]) -> list[_Test]:
    limit = 1.0 / math.sqrt(INIT_UNITS)
    weight_ih = np.concatenate([s.canonical.kernel_x.ravel() for s in samples])
    weight_hh = np.concatenate([s.canonical.kernel_h.ravel() for s in samples])
    tests = [
        _uniform_test("weight_ih", weight_ih, limit),
        _uniform_test("weight_hh", weight_hh, limit),
    ]
    biases = [
        _non_forget(bias) for s in samples for bias in s.canonical.biases
    ]
    if biases:
        tests.append(
            _uniform_test("biases (i, g, o)", np.concatenate(biases), limit)
        )
    return tests


_TESTS = {"v1": _v1_tests, "keras": _keras_tests, "torch": _torch_tests}

_FIXES = {
    "v1": "Initialize the whole kernel [input_depth + units, 4 * units] "
    "with one glorot_uniform draw (not the x and h parts separately) and "
    "the bias with zeros.",
    "keras": "Use glorot_uniform for kernel, orthogonal for "
    "recurrent_kernel and zeros for bias (the forget block aside).",
    "torch": "Draw every weight and both biases from U(-1/sqrt(units), "
    "1/sqrt(units)).",
}


def _skipped(reason: str) -> CheckResult:
    return CheckResult(CHECK, TITLE, SKIPPED, reason)
