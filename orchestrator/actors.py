"""Who is acting, through which interface: the subject of every policy check and audit event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.context import current_request_id

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from orchestrator.models import ApiToken

__all__ = ["Actor"]


@dataclass(frozen=True)
class Actor:
    user: AbstractBaseUser | AnonymousUser | None
    source: str  # one of AuditEvent.Source
    token: ApiToken | None = None
    request_id: str | None = None
    # Which part of the platform a system actor is, as the audit log names it
    # ("gitsync:etl-repo"); None: just "system".
    name: str | None = None
    # Membership roles already looked up, by tenant id: a request (one actor) asks the
    # database once however many checks it makes. Not part of the actor's identity.
    memberships: dict[int, str | None] = field(
        default_factory=dict, compare=False, repr=False, hash=False
    )

    def __post_init__(self) -> None:
        # A token read together with its holder's role in its tenant (authenticate_bearer)
        # answers the policy's first question without another query.
        if self.token is not None and hasattr(self.token, "member_role"):
            self.memberships[self.token.tenant_id] = self.token.member_role

    @classmethod
    def system(cls, name: str | None = None) -> Actor:
        """The platform itself: reconciler, SLA checks, automatic actions; `name` says
        which (its audit events' actor label)."""
        return cls(user=None, source="system", request_id=current_request_id(), name=name)

    @classmethod
    def cli(cls, user: AbstractBaseUser | None = None) -> Actor:
        """A platform operator at a shell (management commands)."""
        return cls(user=user, source="cli", request_id=current_request_id())

    @property
    def is_platform(self) -> bool:
        """Platform operators: the system, the CLI, and superusers in the Django admin."""
        if self.source in ("system", "cli"):
            return True
        return self.source == "admin" and bool(getattr(self.user, "is_superuser", False))

    @property
    def user_id(self) -> int | None:
        if self.user is None or not self.user.is_authenticated:
            return None
        return int(self.user.pk)

    @property
    def label(self) -> str:
        if self.user is not None and self.user.is_authenticated:
            return str(self.user.get_username())
        return self.name or self.source
