"""Runs in other processes for the tests: killing one part-way, as a crash or an out-of-memory kill would, for the
resume tests; the same run alone and under torchrun, for the multi-process tests."""

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


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


def alone_and_on_two(args: list[str], one: Path, two: Path, env: dict[str, str],
                     timeout: float = 300) -> subprocess.CompletedProcess:
    """``gzoo ARGS -o ONE`` in one process, then ``-o TWO`` under torchrun with 2 CPU processes (gloo); fails
    with the stderr of a run that does not exit 0. Returns the single process's result."""
    gzoo = ["-m", "gzoo", *args]
    single = subprocess.run([sys.executable, *gzoo, "-o", str(one)], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             *gzoo, "-o", str(two)], env=env, capture_output=True, text=True, timeout=timeout)
    assert double.returncode == 0, double.stderr[-3000:]
    return single
