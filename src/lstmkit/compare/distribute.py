"""`tf.distribute` strategies for `lstmkit compare`.

Every worker computes the same epoch of global batches from the same seed.
Each global batch is split by rows into one slice per replica, in replica
order. Each input pipeline yields only the slices of its own replicas.
Because the dataset is sharded by hand, TensorFlow's auto-sharding is
switched off. A replica's loss is its sum of loss terms divided by the number of
terms in the whole global batch. The optimizer sums the gradients over the
replicas, so one step equals a single-device step on the global batch up
to float32 rounding.

NOTE: the tagging tasks draw dropout masks per replica slice, so under a
strategy their masks differ from a single-device run with the same seed.
"""

import json
import logging
import os
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from lstmkit.compare.tasks import Batch, TaskData

logger = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")
TF_CONFIG = "TF_CONFIG"


def split_cpu(count: int) -> None:
    """Splits the first CPU into `count` logical devices.

    `MirroredStrategy` then has `count` replicas on a machine without GPUs.
    It must run before TensorFlow initializes its devices, that is before
    the first tensor or device query of the process.

    Raises:
        ValueError: TensorFlow's devices are already initialized.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError as error:
        raise ValueError(
            f"--cpu-devices {count} must be applied before TensorFlow "
            f"starts, but it has already started ({error}). Run the "
            "command in a fresh process."
        ) from error


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Creates the strategy `name`, one of `STRATEGIES`.

    `"mirrored"` replicates over every GPU, or over the logical CPU devices
    when there is no GPU (see `split_cpu`). `"multiworker"` reads the
    cluster and this process's role from the `TF_CONFIG` environment
    variable and must be created before any other TensorFlow operation.

    Raises:
        ValueError: an unknown name, or `"multiworker"` without a valid
            `TF_CONFIG`.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU")
        devices = devices or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        check_tf_config(os.environ.get(TF_CONFIG))
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}; got {name!r}.")


def check_tf_config(text: str | None) -> None:
    """Checks that `TF_CONFIG` names a worker cluster and this worker.

    Raises:
        ValueError: the variable is missing, is not JSON, or is missing
            `cluster.worker` or `task`.
    """
    example = (
        '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    if not text:
        raise ValueError(
            f"--strategy multiworker needs the {TF_CONFIG} environment "
            f"variable on every worker, such as {example}."
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{TF_CONFIG} is not valid JSON ({error}). Set it as {example}."
        ) from None
    workers = config.get("cluster", {}).get("worker") if isinstance(
        config, dict
    ) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not workers or not isinstance(task, dict):
        raise ValueError(
            f"{TF_CONFIG} {text!r} is missing cluster.worker or task. Set "
            f"it as {example}."
        )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Returns whether this process writes reports and checkpoints.

    Every process of a single-worker strategy is the chief. In a
    multi-worker cluster without a `chief` task, worker 0 is.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (
        not has_chief
        and resolver.task_type == "worker"
        and resolver.task_id == 0
    )


def worker_label(strategy: tf.distribute.Strategy) -> str:
    """Returns `"<task_type>-<task_id>"`, or `"local"` without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "local"
    return f"{resolver.task_type}-{resolver.task_id}"


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """Splits a batch by rows into `parts` slices, in order.

    The slices keep the batch's padded time length, so a replica computes
    exactly the rows a single device would. Slices differ in size by at
    most one row, and a batch of fewer rows than `parts` leaves some slices
    empty.
    """
    edges = np.linspace(0, len(batch.lengths), parts + 1).round()
    edges = edges.astype(int)
    slices = []
    for start, stop in zip(edges[:-1], edges[1:]):
        inputs = {name: x[start:stop] for name, x in batch.inputs.items()}
        slices.append(
            Batch(inputs, batch.lengths[start:stop], batch.labels[start:stop])
        )
    return slices


def distribute_epoch(
    strategy: tf.distribute.Strategy,
    task: TaskData,
    batches: list[Batch],
    dropout_seeds: np.ndarray | list,
) -> Any:
    """Builds the distributed dataset of one epoch of global batches.

    Args:
        strategy: the strategy whose replicas train.
        task: the task, for its input signature and loss weights.
        batches: the epoch's global batches, in order.
        dropout_seeds: int32 `[len(batches), 2]`, one seed per batch, given
            to every replica.

    Returns:
        A `tf.distribute.DistributedDataset` whose elements are
        `(inputs, lengths, labels, dropout_seed, weight)` per replica, where
        `weight` is the number of loss terms of the whole global batch.
    """
    replicas = strategy.num_replicas_in_sync
    weights = [np.float32(task.loss_weight(batch)) for batch in batches]
    signature = _element_signature(task)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_pipeline = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * per_pipeline
        chosen = range(first, first + per_pipeline)

        def generate() -> Iterator[tuple]:
            for batch, seed, weight in zip(batches, dropout_seeds, weights):
                parts = split_batch(batch, replicas)
                for replica in chosen:
                    part = parts[replica]
                    yield part.inputs, part.lengths, part.labels, seed, weight

        dataset = tf.data.Dataset.from_generator(
            generate, output_signature=signature
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
        return dataset.with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)


def _element_signature(task: TaskData) -> tuple:
    inputs, lengths, labels = task.signature(with_labels=True)
    return (
        inputs,
        lengths,
        labels,
        tf.TensorSpec([2], tf.int32),
        tf.TensorSpec([], tf.float32),
    )


def make_distributed_train_step(
    strategy: tf.distribute.Strategy,
    model: Any,
    task: TaskData,
    optimizer: Any,
    set_training: Callable[[Any, bool], None],
) -> Callable[[tuple], tf.Tensor]:
    """Returns a compiled step over one distributed element.

    The step runs one replica step per replica and returns the global
    batch's mean loss, summed over replicas.

    Args:
        strategy: the strategy the model's variables were created under.
        model: a comparison model with `variables_in_order`.
        task: the task, for `loss_sum`.
        optimizer: an optimizer created under the strategy's scope.
        set_training: sets the cells' `training` flag while tracing.
    """
    variables = model.variables_in_order

    def replica_step(inputs, lengths, labels, dropout_seed, weight):
        set_training(model, True)
        with tf.GradientTape() as tape:
            logits = model(inputs, lengths, dropout_seed=dropout_seed)
            logits = tf.cast(logits, tf.float32)
            loss = task.loss_sum(logits, labels, lengths) / weight
            scaled_loss = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    # The element spec of any epoch's dataset has unknown batch and time
    # sizes, so the step is traced once for all batches.
    element_spec = distribute_epoch(strategy, task, [], []).element_spec

    @tf.function(input_signature=[element_spec])
    def train_step(element: tuple) -> tf.Tensor:
        losses = strategy.run(replica_step, args=element)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step
