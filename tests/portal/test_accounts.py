"""Signing in to the portal as a team member (not only staff): where `/` leads, the tenant
chooser and switcher, the lockout after repeated failures, signing out, changing a
password, and resetting one by email through a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.conf import LazySettings
from django.contrib.auth.models import User
from django.test import Client

from orchestrator import services
from orchestrator.actors import Actor
from tests.harness import Team, make_team
from tests.notifications.servers import SmtpReceiver

pytestmark = pytest.mark.django_db

PASSWORD = "a long and unusual passphrase 42"


def with_password(user: User, email: str = "") -> User:
    user.set_password(PASSWORD)
    user.email = email
    user.save()
    return user


def sign_in(client: Client, username: str, password: str = PASSWORD, next_: str = "") -> str:
    response = client.post("/login/", {"username": username, "password": password, "next": next_})
    assert response.status_code == 302, response.content.decode()[:500]
    return str(response["Location"])


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()


def test_it_sends_a_visitor_to_sign_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    page = client.get("/login/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'name="username"' in body
    assert 'name="password"' in body
    assert "Forgot your password?" in body


def test_a_member_of_one_tenant_lands_on_its_workflows(client: Client, team: Team) -> None:
    with_password(team.users["viewer"])
    assert sign_in(client, "acme-viewer") == "/"
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/t/acme/workflows/"


def test_a_member_of_several_tenants_chooses_one(
    client: Client, team: Team, outsider: Team
) -> None:
    user = with_password(team.users["viewer"])
    services.add_member(actor=Actor.cli(), tenant=outsider.tenant, user=user, role="operator")
    sign_in(client, "acme-viewer")
    body = client.get("/").content.decode()
    assert "Your tenants" in body
    assert re.search(r'href="/t/acme/workflows/">Acme</a>.*?viewer', body, re.S)
    assert re.search(r'href="/t/globex/workflows/">Globex</a>.*?operator', body, re.S)
    # The switcher in the top bar lists both, with the role in each.
    page = client.get("/t/globex/workflows/").content.decode()
    switcher = page.split('class="menu left switcher"', 1)[1].split("</details>", 1)[0]
    assert re.search(r"Acme.*?viewer", switcher, re.S)
    assert re.search(r"Globex.*?operator", switcher, re.S)
    assert 'aria-current="true"><span>Globex' in switcher


def test_an_archived_tenant_is_neither_listed_nor_reachable(
    client: Client, team: Team, outsider: Team
) -> None:
    user = with_password(team.users["owner"])
    services.add_member(actor=Actor.cli(), tenant=outsider.tenant, user=user, role="viewer")
    services.archive_tenant(actor=Actor.cli(), tenant=outsider.tenant)
    client.force_login(user)
    assert client.get("/")["Location"] == "/t/acme/workflows/"
    assert client.get("/t/globex/workflows/").status_code == 404
    assert "Globex" not in client.get("/tenants/").content.decode()


def test_a_user_without_tenants_is_told_what_to_do(client: Client, db: None) -> None:
    user = User.objects.create_user("loner", password=PASSWORD)
    client.force_login(user)
    body = client.get("/").content.decode()
    assert "You are not a member of any tenant yet" in body


def test_sign_in_returns_to_the_page_asked_for(client: Client, team: Team) -> None:
    with_password(team.users["viewer"])
    assert client.get("/t/acme/runs/")["Location"] == "/login/?next=/t/acme/runs/"
    assert sign_in(client, "acme-viewer", next_="/t/acme/runs/") == "/t/acme/runs/"
    # An address elsewhere is not followed (an open redirect would be).
    client.logout()
    assert sign_in(client, "acme-viewer", next_="https://evil.example/") == "/"


def test_a_wrong_password_is_refused_and_repeated_failures_lock_out(
    client: Client, team: Team, settings: LazySettings
) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    with_password(team.users["viewer"])
    wrong = {"username": "acme-viewer", "password": "nope"}
    first = client.post("/login/", wrong)
    assert first.status_code == 200
    assert "Please enter a correct username and password" in first.content.decode()
    assert client.post("/login/", wrong).status_code == 200
    assert client.post("/login/", wrong).status_code == 429
    locked = client.post("/login/", {"username": "acme-viewer", "password": PASSWORD})
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_sign_out_is_a_post_and_ends_the_session(client: Client, team: Team) -> None:
    client.force_login(team.users["viewer"])
    page = client.get("/t/acme/workflows/").content.decode()
    assert 'action="/logout/"' in page
    assert client.get("/logout/").status_code == 405  # a link cannot sign anyone out
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert client.get("/t/acme/workflows/").status_code == 302


def test_a_member_changes_their_password(client: Client, team: Team) -> None:
    with_password(team.users["editor"])
    sign_in(client, "acme-editor")
    refused = client.post(
        "/account/password/",
        {"old_password": "wrong", "new_password1": "x", "new_password2": "x"},
    )
    assert refused.status_code == 200
    assert "Your old password was entered incorrectly" in refused.content.decode()
    new = "another quite long passphrase 7"
    done = client.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert done["Location"] == "/account/password/done/"
    assert "Password changed" in client.get(done["Location"]).content.decode()
    assert client.get("/t/acme/workflows/").status_code == 200  # still signed in here
    fresh = Client()
    assert sign_in(fresh, "acme-editor", new) == "/"


def test_a_forgotten_password_is_reset_by_email(
    client: Client, team: Team, settings: LazySettings, smtp_receiver: SmtpReceiver
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_receiver.port
    settings.PUBLIC_URL = "https://orchestrator.example.com"
    with_password(team.users["viewer"], email="viewer@acme.example")

    response = client.post("/password-reset/", {"email": "viewer@acme.example"})
    assert response["Location"] == "/password-reset/sent/"
    (recipients, message), *_ = smtp_receiver.wait(1)
    assert recipients == ["viewer@acme.example"]
    assert message["Subject"] == "Reset your Orchestrator password"
    text = message.get_content()
    link = re.search(r"https://orchestrator\.example\.com(/password-reset/\S+/)", text)
    assert link, text  # the address people reach the service at, not the request's Host
    form = client.get(link.group(1), follow=True)
    assert "Choose a new password" in form.content.decode()
    new = "a brand new passphrase 2026"
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done["Location"] == "/password-reset/done/"
    assert sign_in(Client(), "acme-viewer", new) == "/"
    # The link works once.
    again = client.get(link.group(1), follow=True).content.decode()
    assert "Link expired" in again


def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    client: Client, team: Team, settings: LazySettings, smtp_receiver: SmtpReceiver
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_receiver.port
    response = client.post("/password-reset/", {"email": "nobody@nowhere.example"})
    assert response["Location"] == "/password-reset/sent/"
    assert smtp_receiver.wait(1, timeout=0.5) == []


def test_pages_carry_a_strict_content_security_policy(client: Client, team: Team) -> None:
    client.force_login(team.users["viewer"])
    for url in ("/login/", "/t/acme/workflows/", "/tenants/"):
        response = client.get(url, follow=True)
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "style-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        body = response.content.decode()
        scripts = re.findall(r"<script\b[^>]*>", body)
        assert scripts
        assert all("src=" in tag for tag in scripts), scripts  # no inline script
        assert " style=" not in body
        assert not re.search(r"\son[a-z]+=", body)  # no inline event handlers


def test_every_member_role_can_open_the_portal(client: Client, team: Team) -> None:
    for role, user in team.users.items():
        client.force_login(user)
        page = client.get("/t/acme/workflows/")
        assert page.status_code == 200, role
        assert f'<span class="role">{role}</span>' in page.content.decode()


def test_another_tenants_pages_are_404_for_a_member_elsewhere(
    client: Client, team: Team, outsider: Team
) -> None:
    client.force_login(outsider.owner)
    for url in ("/t/acme/", "/t/acme/workflows/", "/t/acme/runs/", "/t/no-such-tenant/runs/"):
        response = client.get(url, follow=True)
        assert response.status_code == 404, url
        assert "Acme" not in response.content.decode()


def test_a_new_member_sees_the_tenant_at_once(client: Client, team: Team) -> None:
    newcomer = make_team("initech")
    client.force_login(newcomer.owner)
    assert client.get("/t/acme/workflows/").status_code == 404
    services.add_member(actor=Actor.cli(), tenant=team.tenant, user=newcomer.owner, role="viewer")
    assert client.get("/t/acme/workflows/").status_code == 200
