"""Peak memory of one step, measured in a child process.

TensorFlow keeps no memory statistics on CPU, so each measurement starts
`python -m lstmkit.bench.memory` with one implementation and case. The
child imports everything and then resets the kernel's peak resident set
size by writing 5 to `/proc/self/clear_refs` (Linux 4.0 and later). Its
resident set size at that point is the baseline. It then builds the model
and calls its step twice, where the first call traces and, under XLA,
compiles. The result is the peak resident set size (`VmHWM`) above the
baseline, so it includes the weights, the inputs, the traced graph,
compiled code and the step's own buffers.
"""

import dataclasses
import json
import logging
import os
import subprocess
import sys
from typing import Any

from lstmkit.bench.cases import Case, Shape

logger = logging.getLogger(__name__)

# Each child imports TensorFlow and traces one step, which takes seconds;
# XLA compilation of the long shape can take a minute on 2 cores.
CHILD_TIMEOUT_S = 900

_STATUS_FILE = "/proc/self/status"
_CLEAR_REFS_FILE = "/proc/self/clear_refs"


@dataclasses.dataclass(frozen=True)
class MemoryResult:
    """Peak memory of one implementation in one case, in MiB.

    Attributes:
        baseline_mib: resident set size after the imports.
        peak_mib: peak resident set size of the child.
        above_baseline_mib: `peak_mib - baseline_mib`, or None with an
            error.
        peak_was_reset: whether the peak was reset to the baseline after
            the imports. Without it, a peak reached while importing can
            hide a smaller one of the step.
        error: why the child failed, else empty.
    """

    baseline_mib: float | None = None
    peak_mib: float | None = None
    above_baseline_mib: float | None = None
    peak_was_reset: bool = False
    error: str = ""


def measure(implementation: str, case: Case, seed: int) -> MemoryResult:
    """Measures one step of `implementation` on `case` in a child process.

    Returns:
        The measurement, or a `MemoryResult` with only `error` set when
        the child failed or timed out.
    """
    request = {
        "implementation": implementation,
        "shape": dataclasses.asdict(case.shape),
        "mode": case.mode,
        "lengths": case.lengths,
        "direction": case.direction,
        "seed": seed,
    }
    command = [sys.executable, "-m", __name__, json.dumps(request)]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            env=environment,
            check=False,
        )
    except subprocess.TimeoutExpired:
        message = f"timed out after {CHILD_TIMEOUT_S} s"
        logger.error("memory of %s on %s: %s", implementation, case.label,
                     message)
        return MemoryResult(error=message)
    return _parse_child_output(implementation, case, completed)


def _parse_child_output(
    implementation: str, case: Case, completed: subprocess.CompletedProcess
) -> MemoryResult:
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        stderr_lines = completed.stderr.strip().splitlines() or ["no output"]
        message = f"exit status {completed.returncode}: {stderr_lines[-1]}"
        logger.error(
            "memory of %s on %s failed: %s", implementation, case.label,
            message,
        )
        return MemoryResult(error=message)
    return MemoryResult(**json.loads(lines[-1]))


def read_status_kib(field: str) -> int | None:
    """Reads a `VmRSS`-like field of `/proc/self/status`, in KiB."""
    try:
        with open(_STATUS_FILE, encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_kib() -> int:
    peak = read_status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource

    # ru_maxrss is in bytes on macOS and in KiB elsewhere.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _reset_peak() -> bool:
    try:
        with open(_CLEAR_REFS_FILE, "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _measure_in_this_process(request: dict[str, Any]) -> MemoryResult:
    """Runs one step; call it only in a fresh child process."""
    import tensorflow as tf  # noqa: F401
    import tf_keras  # noqa: F401

    from lstmkit.bench import implementations, timing
    from lstmkit.bench.cases import make_case_data
    from lstmkit.builtins import v1_lstm_cell_class

    v1_lstm_cell_class()
    case = Case(
        Shape(**request["shape"]),
        request["mode"],
        request["lengths"],
        request["direction"],
    )
    entry = implementations.REGISTRY[request["implementation"]]

    peak_was_reset = _reset_peak()
    baseline_kib = read_status_kib("VmRSS") or _peak_kib()

    import keras

    keras.utils.set_random_seed(request["seed"])
    data = make_case_data(case, request["seed"])
    model = entry.build(case, data.weights)
    step = timing.make_step(model, data, case.mode, entry.jit_compile)
    step()
    step()

    peak_kib = _peak_kib()
    return MemoryResult(
        baseline_mib=baseline_kib / 1024,
        peak_mib=peak_kib / 1024,
        above_baseline_mib=(peak_kib - baseline_kib) / 1024,
        peak_was_reset=peak_was_reset,
    )


def main(argv: list[str]) -> int:
    """Measures the request in `argv[0]` and prints it as one JSON line."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    result = _measure_in_this_process(json.loads(argv[0]))
    print(json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
