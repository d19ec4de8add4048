"""Serializers translate; they decide nothing (services and the policy do)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from orchestrator.api.base import StrictSerializer
from orchestrator.models import ROLE_ORDER, ApiToken, AuditEvent, Membership, ServiceAccount

__all__ = [
    "AuditEventSerializer",
    "FieldErrorSerializer",
    "MeSerializer",
    "MembershipSerializer",
    "ProblemSerializer",
    "ServiceAccountSerializer",
    "TenantSerializer",
    "TokenSerializer",
]

ROLE_CHOICES = [r.value for r in ROLE_ORDER]


class TenantSerializer(StrictSerializer):
    id = serializers.IntegerField(read_only=True)
    slug = serializers.SlugField(max_length=63)
    name = serializers.CharField(max_length=200)
    quotas = serializers.DictField(
        required=False,
        help_text="Owners set these within the platform's limits; unknown keys are refused.",
    )
    policy = serializers.DictField(read_only=True, help_text="Set by platform staff.")
    role = serializers.SerializerMethodField(help_text="Your role in this tenant.")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_role(self, tenant: Any) -> str | None:
        roles: dict[int, str] = self.context.get("roles", {})
        return roles.get(tenant.pk)


class TenantUpdateSerializer(TenantSerializer):
    slug = serializers.SlugField(read_only=True)
    name = serializers.CharField(max_length=200, required=False)


class MembershipSerializer(StrictSerializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(max_length=150, source="user.username")
    role = serializers.ChoiceField(choices=ROLE_CHOICES)
    is_service_account = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_is_service_account(self, membership: Membership) -> bool:
        return hasattr(membership.user, "service_account")


class MembershipUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES)


class AccountRoleField(serializers.ChoiceField):
    """The role of a service account's membership, from the context `roles` (user id ->
    role): the ServiceAccount model has no such attribute to read."""

    def get_attribute(self, instance: ServiceAccount) -> str | None:
        roles: dict[int, str] = self.context.get("roles", {})
        return roles.get(instance.user_id)


class ServiceAccountSerializer(StrictSerializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.SlugField(max_length=63)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    role = AccountRoleField(choices=ROLE_CHOICES)
    username = serializers.CharField(source="user.username", read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    created_at = serializers.DateTimeField(read_only=True)


class TokenSerializer(StrictSerializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=ROLE_CHOICES)
    service_account = serializers.SlugField(
        max_length=63,
        required=False,
        write_only=True,
        help_text="Name of the tenant's service account the token acts as; "
        "omit for a token acting as yourself.",
    )
    prefix = serializers.CharField(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    created_at = serializers.DateTimeField(read_only=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    revoked_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_used_at = serializers.DateTimeField(read_only=True, allow_null=True)
    token = serializers.SerializerMethodField(
        help_text="The token itself: present only in the response that created it."
    )

    def get_token(self, token: ApiToken) -> str | None:
        plaintext: dict[int, str] = self.context.get("plaintext", {})
        return plaintext.get(token.pk)


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    actor = serializers.CharField(source="actor_label", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "seq",
            "created_at",
            "actor",
            "actor_id",
            "token_prefix",
            "source",
            "request_id",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class MeMembershipSerializer(serializers.Serializer[Any]):
    tenant = serializers.CharField(source="tenant.slug")
    tenant_name = serializers.CharField(source="tenant.name")
    role = serializers.CharField()


class MeTokenSerializer(serializers.Serializer[Any]):
    prefix = serializers.CharField()
    tenant = serializers.CharField(source="tenant.slug")
    role = serializers.CharField()
    expires_at = serializers.DateTimeField(allow_null=True)


class MeSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(help_text="empty for users without one")
    is_staff = serializers.BooleanField()
    memberships = MeMembershipSerializer(many=True)
    token = MeTokenSerializer(allow_null=True)


class FieldErrorSerializer(serializers.Serializer[Any]):
    path = serializers.CharField(
        help_text="dotted path of the field, `[i]` for list items (`tasks.load.depends_on[0]`); "
        "empty for the request as a whole"
    )
    message = serializers.CharField(help_text="what is wrong, and what would be accepted")
    file = serializers.CharField(
        required=False,
        help_text="the spec file the error is in, as the request named it (bulk apply only)",
    )

    optional_output_fields = ("file",)


class ProblemSerializer(serializers.Serializer[Any]):
    """An error answer (RFC 9457), always `application/problem+json`."""

    optional_output_fields = ("errors",)

    type = serializers.CharField(help_text="`urn:orchestrator:problem:<code>`")
    title = serializers.CharField(help_text="the HTTP status phrase")
    status = serializers.IntegerField()
    detail = serializers.CharField(help_text="what went wrong, for a person to read")

    def get_fields(self) -> dict[str, Any]:
        # `errors` is declared here: as a class attribute it would hide Serializer.errors.
        fields: dict[str, Any] = super().get_fields()
        fields["errors"] = FieldErrorSerializer(
            many=True, required=False, help_text="one entry per invalid field (400 only)"
        )
        return fields
