"""`python -m orc`: the same as the `orc` console script."""

from __future__ import annotations

from orc.cli import main

__all__: list[str] = []

main()
