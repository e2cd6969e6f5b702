"""Killing a run part-way, as a crash or an out-of-memory kill would, for the resume tests."""

import signal
import subprocess
import tempfile
import time
from collections.abc import Callable


def kill_when(command: list[str], env: dict[str, str], ready: Callable[[], bool], timeout: float,
              poll: float = 0.02) -> None:
    """Start ``command`` and SIGKILL it (no chance to save) as soon as ``ready()``; fail, with its stderr, if it
    exits first or ``timeout`` seconds pass."""
    # stderr goes to a file, not a pipe: a long run's progress lines would fill a pipe nobody reads and stall it.
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        deadline = time.monotonic() + timeout
        while not ready():
            exited = process.poll() is not None
            if exited or time.monotonic() >= deadline:
                process.kill()
                stderr.seek(0)
                raise AssertionError(f"the run {'exited' if exited else 'timed out'} before it was killed:\n"
                                     f"{stderr.read()}")
            time.sleep(poll)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
