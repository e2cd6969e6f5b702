"""What this machine is, as measurements record it: the CPU's name and the threads torch will use.

Read without importing torch (seconds), so a warm leaderboard stays fast.
"""

import os
import platform
from functools import cache


@cache
def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def threads() -> int:
    # torch uses one thread per core unless told otherwise; reading the environment avoids importing it.
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
