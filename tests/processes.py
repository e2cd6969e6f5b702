"""Killing a run part-way, as a crash or an out-of-memory kill would, for the resume tests."""

import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(command: list[str], env: dict[str, str], ready: Callable[[], bool], timeout: float,
              poll: float = 0.02) -> None:
    """Start ``command`` and SIGKILL it (no chance to save) as soon as ``ready()``; fail if it exits first or
    ``timeout`` seconds pass."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(poll)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
