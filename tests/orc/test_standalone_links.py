"""`manage.py standalone` on a port of its own, without PUBLIC_URL: the links it shows
(webhook URLs, reset mails, alerts) point at the address it listens on, not at :8000."""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings

from orchestrator.management.commands.standalone import Standalone
from tests.orc.support import OrcServer


def test_a_git_sources_webhook_url_is_on_the_servers_own_port(server: OrcServer) -> None:
    assert not server.base.endswith(":8000")
    answer = httpx.post(
        f"{server.base}/api/v1/tenants/dev/git-sources/",
        json={"name": "links", "url": "https://git.example.com/team/flows.git"},
        headers={"Authorization": f"Bearer {server.tokens['dev:owner']}"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["webhook_url"].startswith(f"{server.base}/hooks/git/")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:9123"),
        ("0.0.0.0", "http://127.0.0.1:9123"),  # noqa: S104
        ("::", "http://[::1]:9123"),
        ("orc.internal", "http://orc.internal:9123"),
    ],
)
def test_the_address_shown_for_where_it_listens(
    host: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    standalone = Standalone(host=host, port=9123, concurrency=1, web_threads=1)
    assert standalone.public_url() == expected


def test_a_public_url_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLIC_URL", "https://orc.example.com")
    monkeypatch.setattr(settings, "PUBLIC_URL", "https://orc.example.com")
    standalone = Standalone(host="0.0.0.0", port=9123, concurrency=1, web_threads=1)  # noqa: S104
    assert standalone.public_url() == "https://orc.example.com"
