"""`orc`: the orchestrator's command line, and the typed Python client it is built on.

The client (`orc.client.Client`) talks to the REST API only, with an API token; other
services can use it directly (docs/cli.md, "Python client"). The command line lives in
`orc.cli` and is installed as the `orc` console script."""

from __future__ import annotations

import sys

__all__ = ["__version__"]

# httpx imports its own command line (click, rich, pygments) when those are installed; orc
# and its client need none of it, and every `orc` start would spend a third of its time on
# it. Marked missing, httpx falls back to a stub, as it does without its `cli` extra.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

__version__ = "0.1.0"
