"""Ctrl-C that stops a command at once, even while a long torch operation runs.

Python handles a signal only between bytecodes of the main thread, so a KeyboardInterrupt waits for the
operation in progress (seconds for a heavy model's pass). Work run through ``in_background`` happens in a
worker thread instead: the main thread only waits, takes the Ctrl-C at once, and the command ends with
``stop_now``. Whatever the work writes (the figures cache, the results store) is written atomically, so
nothing is left half-written.
"""

import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from gzoo.cli.output import error

T = TypeVar("T")


def in_background(work: Callable[[], T]) -> T:
    """``work()``'s result (or its exception), computed in a daemon thread; Ctrl-C raises KeyboardInterrupt here
    within a tenth of a second."""
    results: list[T] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as err:  # handed to the main thread, which raises it
            failures.append(err)

    worker = threading.Thread(target=run, name="gzoo-work", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if failures:
        raise failures[0]
    return results[0]


def stop_now(message: str) -> None:
    """One line on stderr and exit 130 (interrupted) at once, without waiting for the worker thread's operation."""
    error(message)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
