"""`python -m runs.rlimit_exec '{"cpu_seconds": 60}' -- argv...`: set resource limits in
the child, then exec the command (preexec_fn is not safe in a threaded worker)."""

from __future__ import annotations

import json
import os
import resource
import sys

LIMITS = {
    "cpu_seconds": (resource.RLIMIT_CPU, 1),
    "memory_mb": (resource.RLIMIT_AS, 1024 * 1024),
    "open_files": (resource.RLIMIT_NOFILE, 1),
    "processes": (resource.RLIMIT_NPROC, 1),
}


def main() -> None:
    limits = json.loads(sys.argv[1])
    argv = sys.argv[sys.argv.index("--") + 1 :]
    for name, value in limits.items():
        if value is not None:
            which, unit = LIMITS[name]
            resource.setrlimit(which, (value * unit, value * unit))
    os.execvp(argv[0], argv)  # noqa: S606 (the task's own argv, as the spec says)


if __name__ == "__main__":
    main()
