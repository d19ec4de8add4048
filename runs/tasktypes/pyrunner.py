"""How a `python` task's function is called, in the forked child of the task's zygote
(runs/tasktypes/zygote.py): the payload {"callable": "module:function", "kwargs": {...},
"allowed": [...] or null} names it; its JSON result is handed to `write_result`.
Raising runs.tasktypes.skip.SkipTask ends the task `skipped` (exit code 99). Imports no
Django: the task's code sees nothing of the worker."""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

from runs.tasktypes.skip import SKIP_EXIT_CODE, SkipTask
from workflows.python_modules import callable_refusal

__all__ = ["call"]


def call(payload: dict[str, Any], write_result: Callable[[str], None]) -> int:
    """Call the task's function; the process's exit code (0, 1, 2: refused, 99: skipped)."""
    module_name, _, function_name = payload["callable"].partition(":")
    allowed = payload.get("allowed")
    if allowed is not None:  # the platform's modules: the allow-list, checked once more
        refusal = callable_refusal(payload["callable"], allowed)
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return 2
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except Exception:  # an import error of the task's own code: its traceback is the log
        traceback.print_exc()
        return 1
    try:
        result = function(**payload.get("kwargs", {}))
    except SkipTask as exc:
        print(f"skipped: {exc}" if str(exc) else "skipped", flush=True)
        return SKIP_EXIT_CODE
    except SystemExit as exc:  # sys.exit(n): the task's exit code (99: skipped), as a shell's
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        code = code if 0 <= code <= 255 else 1  # what an exit status can hold
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        if code == 0:
            write_result("null")
        return code
    except Exception:  # the task's own error: print it for the log, fail the attempt
        traceback.print_exc()
        return 1
    try:
        encoded = json.dumps(result)
    except (TypeError, ValueError) as exc:
        print(f"the return value is not JSON: {exc}", file=sys.stderr)
        return 1
    write_result(encoded)
    return 0
