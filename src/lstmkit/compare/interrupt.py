"""Stopping a training run cleanly on SIGTERM."""

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

# The exit status of a process that stopped because of SIGTERM.
SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[Callable[[], bool]]:
    """Turns SIGTERM into a flag that the training loop polls.

    Yields:
        A function that returns whether SIGTERM has arrived. The handler
        only sets the flag, so a checkpoint or report being written when
        the signal arrives is finished first.

    Outside the main thread Python cannot install signal handlers, so there
    the yielded function always returns false and SIGTERM keeps its
    previous handling.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []

    def handle(signum: int, frame: object) -> None:
        if not received:
            logger.warning(
                "Received SIGTERM. Stopping after the current step."
            )
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)
