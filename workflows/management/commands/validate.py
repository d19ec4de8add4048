"""`manage.py validate PATH...`: check spec files without a database, for CI pipelines."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.specfiles import collect, format_errors, load_all
from workflows.validation import Limits


class Command(BaseCommand):
    help = "Validate workflow spec files (YAML or JSON); exits non-zero on any error."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="spec files or folders")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            files = collect(options["paths"])
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        if not files:
            raise CommandError("no spec files (*.yaml, *.yml, *.json) found")
        results = load_all(files, Limits(python_modules=settings.PYTHON_TASK_MODULES))
        for item in results:
            if item.valid is not None:
                spec = item.valid.spec
                self.stdout.write(f"{item.path}: OK ({spec.name}, {len(spec.tasks)} tasks)")
            else:
                for line in format_errors(item):
                    self.stderr.write(line)
        bad = sum(1 for item in results if item.valid is None)
        if bad:
            raise CommandError(f"{bad} of {len(results)} files are invalid")
