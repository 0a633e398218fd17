"""Seeding and TensorFlow op determinism for reproducible comparison runs."""

import contextlib
import logging
from collections.abc import Iterator

import tensorflow as tf

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """Enables TensorFlow's op determinism inside the block if `enabled`.

    With it, every op either runs a deterministic kernel or raises
    `UnimplementedError`. The previous setting is restored on exit where
    TensorFlow allows it, so a command run inside a test process leaves
    that process as it was.
    """
    if not enabled:
        yield
        return
    was_enabled = _is_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if was_enabled is False:
            _disable()


def _is_enabled() -> bool | None:
    # NOTE: TensorFlow 2.21 exports only `enable_op_determinism`, but the
    # query and the switch back live in its private `framework.config`
    # module.
    # Without them the setting stays on after the block.
    try:
        from tensorflow.python.framework import config
    except ImportError:
        return None
    query = getattr(config, "is_op_determinism_enabled", None)
    return None if query is None else bool(query())


def _disable() -> None:
    from tensorflow.python.framework import config

    disable = getattr(config, "disable_op_determinism", None)
    if disable is not None:
        disable()
