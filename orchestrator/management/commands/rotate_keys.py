"""`manage.py rotate_keys [--dry-run] [--batch-size N]`: re-encrypt every stored secret value
with the first key of ENCRYPTION_KEYS, so older keys can then be removed.

Every encrypted column of every app is covered: a model names its own in
`ENCRYPTED_FIELDS` (connection passwords and extras, secrets, workflow webhook secrets,
git source webhook secrets, notification channel URLs and signing secrets).

Rows are locked and rewritten in batches, one transaction each. A value no configured
key opens is reported (table, id, column), left as it is, and makes the command fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction

from orchestrator import audit, crypto
from orchestrator.actors import Actor


def encrypted_columns() -> list[tuple[type[models.Model], str]]:
    """Every (model, column) holding a value encrypted with ENCRYPTION_KEYS, by table."""
    found = [
        (model, column)
        for model in apps.get_models()
        for column in getattr(model, "ENCRYPTED_FIELDS", ())
    ]
    return sorted(found, key=lambda pair: (pair[0]._meta.db_table, pair[1]))


def _rows(model: type[models.Model]) -> models.QuerySet[Any]:
    """Every row of every tenant (a key rotation is the platform's, not a tenant's)."""
    manager: Any = model._default_manager
    unscoped = getattr(manager, "dangerously_unscoped", manager.all)
    rows: models.QuerySet[Any] = unscoped()
    return rows


def _batches(model: type[models.Model], column: str, size: int) -> Iterator[list[int]]:
    pks = list(_rows(model).exclude(**{column: ""}).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(pks), size):
        yield pks[start : start + size]


class Command(BaseCommand):
    help = "Re-encrypt every stored secret value (connections, secrets, webhook secrets, "
    help += "notification channels' URLs and signing secrets) with the first key of "
    help += "ENCRYPTION_KEYS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count only; change nothing")
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run: bool = options["dry_run"]
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be 1 or more")
        counts: dict[str, int] = {}
        unreadable: list[str] = []
        for model, column in encrypted_columns():
            label = f"{model._meta.db_table}.{column}"
            counts[label] = 0
            for pks in _batches(model, column, options["batch_size"]):
                done, failed = self._rotate(model, column, pks, dry_run)
                counts[label] += done
                unreadable += [f"{label} id={pk}" for pk in failed]
        total = sum(counts.values())
        for label, count in counts.items():
            self.stdout.write(f"{label}: {count}")
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(f"{verb} {total} value(s) with the first key of ENCRYPTION_KEYS")
        if not dry_run:
            self._audit(counts, unreadable)
        if unreadable:
            for where in unreadable:
                self.stderr.write(f"no configured key opens {where}: left unchanged")
            raise CommandError(
                f"{len(unreadable)} value(s) could not be decrypted with any key of "
                "ENCRYPTION_KEYS; add the key they were encrypted with and run again, or set "
                "those values anew"
            )

    def _rotate(
        self, model: type[models.Model], column: str, pks: list[int], dry_run: bool
    ) -> tuple[int, list[int]]:
        """Re-encrypt one batch under row locks: (values re-encrypted, ids no key opens)."""
        done, failed = 0, []
        with transaction.atomic():
            rows = _rows(model).select_for_update(no_key=True).filter(pk__in=pks)
            for pk, ciphertext in rows.values_list("pk", column):
                if not ciphertext:
                    continue  # cleared since the batch was listed
                try:
                    rotated = crypto.rotate(ciphertext)
                except crypto.DecryptionError:
                    failed.append(pk)
                    continue
                if not dry_run:
                    # update(), not save(): a key rotation is not a change of the value,
                    # so updated_at (which users read as "last rotated") stays.
                    _rows(model).filter(pk=pk).update(**{column: rotated})
                done += 1
        return done, failed

    def _audit(self, counts: dict[str, int], unreadable: list[str]) -> None:
        with transaction.atomic():
            audit.record(
                actor=Actor.cli(),
                action="encryption.rotate_keys",
                tenant=None,
                object_type="encryption_keys",
                object_id="",
                object_repr="ENCRYPTION_KEYS",
                after={"re_encrypted": sum(counts.values()), "unreadable": len(unreadable)},
                extra={"by_column": counts, "unreadable": unreadable},
            )
