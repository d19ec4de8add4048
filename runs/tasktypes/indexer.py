"""What a team code package offers: every module of its top-level packages and modules,
imported, with the public functions each defines. Run at upload in the tenant's sandbox
with the package's environment's interpreter, since importing runs the team's code:

    <env>/bin/python -I /orc/python/runs/tasktypes/indexer.py [--output FILE] TOP...

`-I` keeps the script's own directory off sys.path, so the package is found only where
its environment installed it. The result, one JSON object
{"modules": {module: [function names]}, "errors": {module: "ImportError: ..."}}, goes to
FILE when given (the package's own prints at import cannot mix into it), else to stdout
as the last line. `import_all` is what the zygote reuses.

Standard library only: this runs inside the sandbox, beside the team's code.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import pkgutil
import sys
from collections.abc import Iterable, Sequence

__all__ = ["import_all", "main", "public_functions"]

MAX_ERROR_CHARS = 2000


def public_functions(module: object, name: str) -> list[str]:
    """The functions `module` defines itself (not those it imports), by public name."""
    found = []
    for attribute, value in vars(module).items():
        if attribute.startswith("_") or not inspect.isfunction(value):
            continue
        if getattr(value, "__module__", None) == name:
            found.append(attribute)
    return sorted(found)


def import_all(top_level: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Import each top-level name and, for packages, every module below it: the public
    functions of each module that imported, and why each other one did not. A package's
    `__main__` is skipped (importing it would run the package's program)."""
    modules: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    pending = list(dict.fromkeys(top_level))
    while pending:
        name = pending.pop(0)
        try:
            module = importlib.import_module(name)
        except (Exception, SystemExit) as exc:  # the team's code: any failure is its own
            errors[name] = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            continue
        modules[name] = public_functions(module, name)
        path = getattr(module, "__path__", None)
        if path is not None:
            below = pkgutil.iter_modules(path, prefix=f"{name}.")
            pending.extend(sorted(i.name for i in below if not i.name.endswith(".__main__")))
    return dict(sorted(modules.items())), dict(sorted(errors.items()))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    output = None
    if args[:1] == ["--output"]:
        output, args = args[1], args[2:]
    # What the package prints while it is imported belongs in the log, not in the result.
    with contextlib.redirect_stdout(sys.stderr):
        modules, errors = import_all(args)
    result = json.dumps({"modules": modules, "errors": errors})
    if output is None:
        sys.stdout.write(f"\n{result}\n")
        sys.stdout.flush()
    else:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
