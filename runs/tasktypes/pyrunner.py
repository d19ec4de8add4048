"""Child-process entry point of `python` tasks: `python -m runs.tasktypes.pyrunner`.

Reads {"callable": "module:function", "kwargs": {...}, "allowed": [...]} as JSON on stdin,
calls the function and writes its JSON result to the file named by ORCHESTRATOR_RESULT_FILE.
Raising runs.tasktypes.skip.SkipTask ends the task `skipped` (exit code 99). Imports no Django: the
task's code sees nothing of the worker."""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

from runs.tasktypes.skip import SKIP_EXIT_CODE, SkipTask
from workflows.python_modules import callable_refusal


def main() -> int:
    payload = json.loads(sys.stdin.read())
    module_name, _, function_name = payload["callable"].partition(":")
    refusal = callable_refusal(payload["callable"], payload["allowed"])
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        result = function(**payload.get("kwargs", {}))
    except SkipTask as exc:
        print(f"skipped: {exc}" if str(exc) else "skipped", flush=True)
        return SKIP_EXIT_CODE
    except Exception:  # the task's own error: print it for the log, fail the attempt
        traceback.print_exc()
        return 1
    try:
        encoded = json.dumps(result)
    except (TypeError, ValueError) as exc:
        print(f"the return value is not JSON: {exc}", file=sys.stderr)
        return 1
    with open(os.environ["ORCHESTRATOR_RESULT_FILE"], "w") as out:
        out.write(encoded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
