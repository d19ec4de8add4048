"""Signing in and out, passwords, and where `/` leads: Django's own auth views with the
portal's templates. Every password login goes through django-axes (settings "Login
lockout"), so repeated failures lock the (username, address) pair out for a while."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import views as auth
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import path, reverse_lazy

from orchestrator.selectors import memberships_of
from portal.pages import portal_actor

__all__ = ["PasswordResetView", "index", "tenants", "urlpatterns"]


def index(request: HttpRequest) -> HttpResponse:
    """Signed in: the one tenant's workflows, or the chooser. Otherwise: sign in."""
    if not request.user.is_authenticated:
        return redirect("portal:login")
    memberships = list(memberships_of(portal_actor(request)))
    if len(memberships) == 1:
        return redirect("portal:workflows", memberships[0].tenant.slug)
    return render(request, "portal/tenants.html", {"memberships": memberships})


@login_required
def tenants(request: HttpRequest) -> HttpResponse:
    """Every tenant the user is a member of, with their role in it."""
    memberships = list(memberships_of(portal_actor(request)))
    return render(request, "portal/tenants.html", {"memberships": memberships})


class PasswordResetView(auth.PasswordResetView):
    """The reset link points at PUBLIC_URL (the address people reach the service at), not
    at whatever Host the request named."""

    def form_valid(self, form: Any) -> HttpResponse:
        public = urlsplit(settings.PUBLIC_URL)
        form.save(
            domain_override=public.netloc,
            use_https=public.scheme == "https",
            token_generator=self.token_generator,
            from_email=self.from_email,
            email_template_name=self.email_template_name,
            subject_template_name=self.subject_template_name,
            request=self.request,
        )
        return HttpResponseRedirect(self.get_success_url())


def _account(name: str) -> str:
    return f"portal/account/{name}.html"


urlpatterns = [
    path("", index, name="index"),
    path("tenants/", tenants, name="tenants"),
    path(
        "login/",
        auth.LoginView.as_view(template_name=_account("login"), redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path(
        "account/password/",
        auth.PasswordChangeView.as_view(
            template_name=_account("password_change"),
            success_url=reverse_lazy("portal:password_change_done"),
        ),
        name="password_change",
    ),
    path(
        "account/password/done/",
        auth.PasswordChangeDoneView.as_view(template_name=_account("password_change_done")),
        name="password_change_done",
    ),
    path(
        "password-reset/",
        PasswordResetView.as_view(
            template_name=_account("password_reset"),
            email_template_name="portal/account/password_reset_email.txt",
            subject_template_name="portal/account/password_reset_subject.txt",
            success_url=reverse_lazy("portal:password_reset_done"),
        ),
        name="password_reset",
    ),
    path(
        "password-reset/sent/",
        auth.PasswordResetDoneView.as_view(template_name=_account("password_reset_done")),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth.PasswordResetConfirmView.as_view(
            template_name=_account("password_reset_confirm"),
            success_url=reverse_lazy("portal:password_reset_complete"),
        ),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        auth.PasswordResetCompleteView.as_view(template_name=_account("password_reset_complete")),
        name="password_reset_complete",
    ),
]
