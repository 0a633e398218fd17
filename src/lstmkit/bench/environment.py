"""Versions, hardware and source state that a benchmark result depends on."""

import logging
import os
import pathlib
import platform
import subprocess
import sys
from typing import Any

logger = logging.getLogger(__name__)

# TensorFlow settings read from the environment that change its speed.
_SPEED_VARIABLES = (
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_XLA_FLAGS",
    "OMP_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "CUDA_VISIBLE_DEVICES",
)


def versions() -> dict[str, str]:
    """Returns the versions of Python and of every package timed."""
    import keras
    import numpy as np
    import tensorflow as tf
    import tf_keras

    import lstmkit

    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf_keras": tf_keras.__version__,
        "numpy": np.__version__,
        "lstmkit": lstmkit.__version__,
    }


def hardware() -> dict[str, Any]:
    """Returns the CPU model, core counts, GPUs and TensorFlow threads."""
    import tensorflow as tf

    threading = tf.config.threading
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpu_count": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpus": [
            device.name for device in tf.config.list_physical_devices("GPU")
        ],
        "platform": platform.platform(),
        # 0 means TensorFlow picks the number of threads itself.
        "intra_op_threads": threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": threading.get_inter_op_parallelism_threads(),
        "environment": {
            name: os.environ[name]
            for name in _SPEED_VARIABLES
            if name in os.environ
        },
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def source_state() -> dict[str, Any]:
    """Returns the git commit of the lstmkit source and whether it is dirty.

    Returns:
        `commit` (short hash), `dirty` (uncommitted changes in tracked or
        untracked files) and `changed_files` (from `git status
        --porcelain`), all None when lstmkit is not in a git checkout or
        git is missing.
    """
    import lstmkit

    root = pathlib.Path(lstmkit.__file__).resolve().parents[2]
    commit = _git(root, "log", "-1", "--format=%h")
    status = _git(root, "--no-optional-locks", "status", "--porcelain")
    if commit is None or status is None:
        return {"commit": None, "dirty": None, "changed_files": None}
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return {
        "commit": commit.strip(),
        "dirty": bool(changed),
        "changed_files": changed,
    }


def _git(root: pathlib.Path, *arguments: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), *arguments],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.info("git %s failed: %s", " ".join(arguments), error)
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout
