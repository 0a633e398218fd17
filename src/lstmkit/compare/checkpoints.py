"""Per-epoch checkpoints of `lstmkit compare`, and resuming from them.

One `tf.train.Checkpoint` contains both models' weights, both optimizers'
state and a `TrainingState` (epoch, the data-order RNG, histories and the
run's settings). The two models therefore cannot be restored from
different epochs. A `tf.train.CheckpointManager` writes one checkpoint per
epoch, numbered by the epoch, and keeps the last `MAX_TO_KEEP`. TensorFlow
writes a checkpoint's files under temporary names and updates the
`checkpoint` index file last, through a rename. A run killed while saving
therefore leaves the previous checkpoint as the latest one.
"""

import json
import logging
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np
import tensorflow as tf

from lstmkit.compare.training import TrainingState

logger = logging.getLogger(__name__)
# TensorFlow's checkpoint writer logs every save at INFO through absl.
logging.getLogger("absl").setLevel(logging.WARNING)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "epoch"
MAX_TO_KEEP = 2
STATE_KEY = "run_state/.ATTRIBUTES/py_state"
# Settings that may change between a run and its resumption, because none
# of them changes the data order or the math of a step beyond float32
# rounding.
RESUMABLE_CHANGES = ("epochs", "strategy", "replicas", "deterministic")


class _RunState(tf.train.experimental.PythonState):
    """A `TrainingState` and the run's settings, stored as JSON text."""

    def __init__(self, state: TrainingState, settings: dict[str, Any]):
        self.state = state
        self.settings = settings

    def serialize(self) -> str:
        document = {"settings": self.settings, **self.state.to_dict()}
        return json.dumps(document)

    def deserialize(self, string: bytes) -> None:
        self.state.load_dict(json.loads(string))


class CheckpointStore:
    """Saves a comparison run after every epoch and restores the latest.

    Args:
        directory: where this process reads checkpoints, normally
            `<out>/checkpoints`.
        settings: the run's settings. A resumed run must match them in
            everything but `RESUMABLE_CHANGES`.
        write_directory: where this process writes checkpoints, by default
            `directory`. A multi-worker run gives each non-chief worker a
            temporary folder here, because every worker must take part in
            saving but only the chief's files are kept.
    """

    def __init__(
        self,
        directory: pathlib.Path,
        settings: dict[str, Any],
        write_directory: pathlib.Path | None = None,
    ):
        self.directory = pathlib.Path(directory)
        self.write_directory = pathlib.Path(write_directory or directory)
        self.settings = settings
        self._checkpoint = None
        self._manager = None

    def track(
        self,
        models: dict[str, Any],
        optimizers: dict[str, Any],
        state: TrainingState,
    ) -> None:
        """Sets what the checkpoints contain. Call it once, before `save`."""
        self._checkpoint = tf.train.Checkpoint(
            models={
                name: list(model.variables_in_order)
                for name, model in models.items()
            },
            optimizers=dict(optimizers),
            run_state=_RunState(state, self.settings),
        )
        self._manager = tf.train.CheckpointManager(
            self._checkpoint,
            str(self.write_directory),
            max_to_keep=MAX_TO_KEEP,
            checkpoint_name=CHECKPOINT_NAME,
        )

    def save(self, epoch: int) -> str:
        """Writes the checkpoint of `epoch` and returns its path prefix."""
        path = self._manager.save(checkpoint_number=epoch)
        logger.debug("Saved the checkpoint of epoch %d to %s", epoch, path)
        return path

    def restore(self) -> int:
        """Restores the latest checkpoint of `directory`.

        Returns:
            The epoch the checkpoint was written after.

        Raises:
            ValueError: there is no checkpoint, or it was written by a run
                with other settings or another model.
        """
        path = latest_checkpoint(self.directory)
        saved = read_state(path)
        check_settings(saved["settings"], self.settings)
        status = self._checkpoint.restore(path)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as error:
            raise ValueError(
                f"checkpoint {path} does not match these models ({error}). "
                "Resume with the options of the run that wrote it."
            ) from None
        logger.info("Resumed from %s (epoch %d)", path, saved["epoch"])
        return int(saved["epoch"])

    def remove_write_directory(self) -> None:
        """Deletes the write folder when it is not the read folder."""
        if self.write_directory != self.directory:
            shutil.rmtree(self.write_directory, ignore_errors=True)


def temporary_write_directory(label: str) -> pathlib.Path:
    """Creates a private folder for a non-chief worker's checkpoints."""
    return pathlib.Path(tempfile.mkdtemp(prefix=f"lstmkit-{label}-"))


def latest_checkpoint(directory: pathlib.Path) -> str:
    """Returns the path prefix of the latest checkpoint in `directory`.

    Raises:
        ValueError: `directory` contains no checkpoint.
    """
    path = tf.train.latest_checkpoint(str(directory))
    if path is None:
        raise ValueError(
            f"no checkpoint found in {directory}. --resume needs the --out "
            "folder of a run that finished at least one epoch."
        )
    return path


def read_state(path: str) -> dict[str, Any]:
    """Reads the settings and `TrainingState` stored in a checkpoint.

    Raises:
        ValueError: the checkpoint was not written by `lstmkit compare`.
    """
    reader = tf.train.load_checkpoint(path)
    if not reader.has_tensor(STATE_KEY):
        raise ValueError(
            f"checkpoint {path} was not written by lstmkit compare. Choose "
            "the --out folder of a compare run."
        )
    return json.loads(reader.get_tensor(STATE_KEY))


def check_settings(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Checks that a resumed run trains like the run it continues.

    Raises:
        ValueError: a setting other than `RESUMABLE_CHANGES` differs. The
            message lists each one with both values.
    """
    keys = (set(saved) | set(current)) - set(RESUMABLE_CHANGES)
    differences = [
        f"{key} (checkpoint: {saved.get(key)!r}, now: {current.get(key)!r})"
        for key in sorted(keys)
        if saved.get(key) != current.get(key)
    ]
    if differences:
        raise ValueError(
            "--resume needs the settings of the run that wrote the "
            f"checkpoint, but these differ: {'; '.join(differences)}. Pass "
            "the same options, or start a new run without --resume."
        )


def load_weights(directory: pathlib.Path) -> dict[str, list[np.ndarray]]:
    """Reads each model's weights from the latest checkpoint in `directory`.

    Returns:
        `{model name: weights}`, in the model's `variables_in_order` order.

    Raises:
        ValueError: `directory` contains no checkpoint.
    """
    reader = tf.train.load_checkpoint(latest_checkpoint(directory))
    weights: dict[str, dict[int, np.ndarray]] = {}
    for key in reader.get_variable_to_shape_map():
        parts = key.split("/")
        if parts[0] != "models" or len(parts) < 3:
            continue
        name, index = parts[1], int(parts[2])
        weights.setdefault(name, {})[index] = reader.get_tensor(key)
    return {
        name: [values[i] for i in sorted(values)]
        for name, values in weights.items()
    }
