"""SavedModel export, checked by reloading it in a fresh Python process."""

import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile

import keras
import numpy as np

from lstmkit.export import serving
from lstmkit.export.probe import (
    Measurement,
    Probe,
    max_difference,
    path_size,
)

logger = logging.getLogger(__name__)

# Seconds allowed for the fresh process: importing TensorFlow, loading the
# SavedModel and the timed runs.
RELOAD_TIMEOUT = 300

# Run by `python -c` in the fresh process. It imports TensorFlow only, so
# the SavedModel must work without lstmkit or Keras objects.
_RELOAD_SCRIPT = """
import json, sys, time
import numpy as np
import tensorflow as tf

model_dir, probe_file, result_file, runs = sys.argv[1:5]
probe = np.load(probe_file)
serve = tf.saved_model.load(model_dir).signatures["serving_default"]
inputs = tf.constant(probe["inputs"])
lengths = tf.constant(probe["lengths"])
outputs = serve(inputs=inputs, lengths=lengths)["outputs"].numpy()
times = []
for _ in range(int(runs)):
    start = time.perf_counter()
    serve(inputs=inputs, lengths=lengths)["outputs"].numpy()
    times.append(time.perf_counter() - start)
np.save(result_file, outputs)
print(json.dumps({"latency_ms": 1000.0 * float(np.median(times))}))
"""


def export(model: keras.Model, depth: int, path: pathlib.Path) -> None:
    """Writes `model` as a SavedModel with dynamic batch and time.

    The `serving_default` signature takes `inputs [batch, time, depth]`
    float32 and `lengths [batch]` int32 and returns `{"outputs": ...}`.
    """
    serve = serving.serving_function(model, depth)
    serving.write_saved_model(model, serve, path)
    logger.info("wrote SavedModel %s", path)


def run_in_fresh_process(
    path: pathlib.Path, probe: Probe, runs: int
) -> tuple[np.ndarray, float]:
    """Loads the SavedModel in a new Python process and runs the probe.

    Returns:
        `(outputs, median latency in ms)` measured in that process.

    Raises:
        RuntimeError: the process failed. The message contains its stderr.
    """
    with tempfile.TemporaryDirectory(prefix="lstmkit-export-") as folder:
        probe_file = pathlib.Path(folder) / "probe.npz"
        result_file = pathlib.Path(folder) / "outputs.npy"
        np.savez(probe_file, inputs=probe.inputs, lengths=probe.lengths)
        command = [
            sys.executable,
            "-c",
            _RELOAD_SCRIPT,
            str(path),
            str(probe_file),
            str(result_file),
            str(runs),
        ]
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=RELOAD_TIMEOUT,
            env=environment,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"reloading {path} in a fresh process failed with exit "
                f"status {completed.returncode}:\n{completed.stderr[-2000:]}"
            )
        outputs = np.load(result_file)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return outputs, report["latency_ms"]


def measure(
    path: pathlib.Path, probe: Probe, expected: np.ndarray, runs: int
) -> Measurement:
    """Compares the reloaded SavedModel's outputs with TensorFlow's."""
    outputs, latency = run_in_fresh_process(path, probe, runs)
    return Measurement(
        runtime="savedmodel (fresh process)",
        path=path,
        size_bytes=path_size(path),
        latency_ms=latency,
        difference=max_difference(outputs, expected),
    )
