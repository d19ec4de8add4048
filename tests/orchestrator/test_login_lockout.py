"""The admin login locks a username out from an address after LOGIN_FAILURE_LIMIT wrong
passwords (django-axes): the right password is refused too until the cool-off has passed,
the lockout is recorded where platform staff see it, and other addresses are unaffected."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import LazySettings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import F
from django.test import Client, RequestFactory
from django.urls import reverse

from orchestrator.login_lockout import client_ip

LOGIN = "/admin/login/"
PASSWORD = "correct horse battery staple"
ATTACKER = "203.0.113.7"
ELSEWHERE = "198.51.100.20"


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", password=PASSWORD)


def sign_in(password: str, address: str = ATTACKER, **headers: str) -> tuple[int, Client, str]:
    """POST the admin login form from `address`: (status, the client, the page)."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(
        LOGIN, {"username": "root", "password": password, "next": "/admin/"}, **headers
    )
    return response.status_code, client, response.content.decode()


def fail(times: int, address: str = ATTACKER) -> list[int]:
    return [sign_in("wrong", address)[0] for _ in range(times)]


@pytest.mark.django_db
def test_it_locks_the_username_out_from_that_address_even_with_the_right_password(
    root: User, settings: LazySettings
) -> None:
    settings.AXES_FAILURE_LIMIT = 3

    assert fail(2) == [200, 200]  # the form again, with its error
    status, _, page = sign_in("wrong")
    assert status == 429
    status, client, page = sign_in(PASSWORD)

    assert status == 429
    assert "Too many failed sign-ins" in page
    assert "Try again in 15 minutes" in page
    assert "_auth_user_id" not in client.session
    attempt = AccessAttempt.objects.get(username="root", ip_address=ATTACKER)
    assert attempt.failures_since_start >= 3
    # Another address is a different pair: the owner still signs in from there.
    status, client, _ = sign_in(PASSWORD, ELSEWHERE)
    assert status == 302
    assert client.session["_auth_user_id"] == str(root.pk)


@pytest.mark.django_db
def test_it_says_how_long_in_a_retry_after_header(root: User, settings: LazySettings) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=90)
    fail(2)

    client = Client(REMOTE_ADDR=ATTACKER)
    response = client.post(LOGIN, {"username": "root", "password": PASSWORD})

    assert response.status_code == 429
    assert response["Retry-After"] == "5400"
    assert "Try again in 1 hour 30 minutes" in response.content.decode()


@pytest.mark.django_db
def test_it_lets_the_user_in_after_the_cool_off(root: User, settings: LazySettings) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    assert fail(2)[-1] == 429
    assert sign_in(PASSWORD)[0] == 429
    # The cool-off passes: the failures moved back by it rather than waited for (a test
    # that slept through a short one failed on a busy machine before the first check).
    AccessAttempt.objects.filter(username="root", ip_address=ATTACKER).update(
        attempt_time=F("attempt_time") - timedelta(minutes=15, seconds=1)
    )
    status, client, _ = sign_in(PASSWORD)

    assert status == 302
    assert client.session["_auth_user_id"] == str(root.pk)
    # A success clears the count (AXES_RESET_ON_SUCCESS): a new mistake starts from zero.
    assert not AccessAttempt.objects.filter(username="root", ip_address=ATTACKER).exists()
    assert sign_in("wrong")[0] == 200


@pytest.mark.django_db
def test_platform_staff_unlock_it_with_the_axes_command(root: User, settings: LazySettings) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    fail(2)

    call_command("axes_reset_username", "root")

    assert sign_in(PASSWORD)[0] == 302


@pytest.mark.django_db
def test_platform_staff_see_the_attempts_in_the_admin(root: User, settings: LazySettings) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    fail(2)
    staff = Client(REMOTE_ADDR=ELSEWHERE)
    staff.force_login(root)

    listing = staff.get(reverse("admin:axes_accessattempt_changelist"))

    assert listing.status_code == 200
    assert ATTACKER in listing.content.decode()
    outsider = Client()
    outsider.force_login(User.objects.create_user("clerk", password=None, is_staff=True))
    assert outsider.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403


@pytest.mark.django_db
def test_behind_proxies_it_keys_on_the_address_the_last_trusted_proxy_saw(
    root: User, settings: LazySettings
) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    settings.TRUST_X_FORWARDED_FOR = 1
    spoofed = {"HTTP_X_FORWARDED_FOR": f"10.9.9.9, {ATTACKER}"}
    for _ in range(2):
        Client(REMOTE_ADDR="10.0.0.2").post(
            LOGIN, {"username": "root", "password": "wrong"}, **spoofed
        )

    assert AccessAttempt.objects.get(username="root").ip_address == ATTACKER
    # The same proxy relaying another client: not locked out.
    other = Client(REMOTE_ADDR="10.0.0.2")
    response = other.post(
        LOGIN, {"username": "root", "password": PASSWORD}, HTTP_X_FORWARDED_FOR=ELSEWHERE
    )
    assert response.status_code == 302


def test_client_ip_ignores_the_header_unless_proxies_are_trusted(settings: LazySettings) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4")
    settings.TRUST_X_FORWARDED_FOR = 0
    assert client_ip(request) == "10.0.0.2"
    settings.TRUST_X_FORWARDED_FOR = 2
    assert client_ip(request) == "10.0.0.2"  # fewer entries than proxies: not trusted
    request.META["HTTP_X_FORWARDED_FOR"] = "6.6.6.6, 1.2.3.4, 10.0.0.1"
    assert client_ip(request) == "1.2.3.4"
