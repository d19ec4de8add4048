"""`manage.py spec_docs [--check]`: (re)generate docs/workflow-spec.md from the schema."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workflows.docs import DOC_PATH, render


class Command(BaseCommand):
    help = "Write docs/workflow-spec.md from the workflow spec's JSON Schema."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--check", action="store_true", help="fail if the file is stale")

    def handle(self, *args: Any, **options: Any) -> None:
        text = render()
        if options["check"]:
            if not DOC_PATH.exists() or DOC_PATH.read_text() != text:
                raise CommandError(f"{DOC_PATH} is stale: run `python manage.py spec_docs`")
            self.stdout.write(f"{DOC_PATH} is current")
            return
        DOC_PATH.write_text(text)
        self.stdout.write(f"wrote {DOC_PATH}")
