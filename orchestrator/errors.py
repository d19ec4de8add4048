"""Domain errors raised by services and the policy; each interface maps them once
(REST: problem+json in orchestrator.api.errors, GraphQL: extensions.code)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Conflict", "DomainError", "FieldError", "Forbidden", "Invalid", "NotFound"]


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """Missing, or invisible to the caller (another tenant's objects are never a 403)."""

    code = "not_found"


class Forbidden(DomainError):
    """Visible to the caller, but their role does not allow the action."""

    code = "permission_denied"


class Conflict(DomainError):
    """The request is valid but clashes with the current state."""

    code = "conflict"


FieldError = tuple[str, str]  # (dotted path, message)


class Invalid(DomainError):
    """Bad input: one or more (path, message) pairs, all reported at once."""

    code = "validation_error"
    # What a REST problem's `detail` says, when a subclass knows better than a count of
    # the invalid fields ("1 of 3 files are invalid; nothing was applied").
    headline: str | None = None

    def __init__(self, errors: Iterable[FieldError] | str, path: str = "") -> None:
        self.errors: list[FieldError] = (
            [(path, errors)] if isinstance(errors, str) else list(errors)
        )
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.errors))

    def details(self) -> list[dict[str, str]]:
        """The errors as REST problems and GraphQL `extensions.errors` list them; a
        subclass may add keys (workflows.specfiles.InvalidFiles adds each one's file)."""
        return [{"path": p, "message": m} for p, m in self.errors]
