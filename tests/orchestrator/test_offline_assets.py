"""GraphiQL (/graphql) and Swagger UI (/api/docs/) work with no internet and under the strict
Content-Security-Policy: every script and stylesheet is one of this service's static files,
nothing comes from another host, and the pages carry no inline script or style."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.test import Client

from tests.harness import Team

STATIC_PREFIX = "/" + django_settings.STATIC_URL.lstrip("/")
ABSOLUTE_URL = re.compile(r"(?:https?:)?//[^\s\"'<>/]+", re.IGNORECASE)
OUR_FILES = ("orchestrator/graphiql/graphiql-init.js", "orchestrator/graphiql/graphiql-page.css")


@dataclass
class Page:
    """What an HTML page loads, and what in it a strict CSP would refuse."""

    scripts: list[str] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)
    inline_scripts: list[str] = field(default_factory=list)
    style_elements: int = 0
    style_attributes: list[str] = field(default_factory=list)
    handler_attributes: list[str] = field(default_factory=list)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.page.style_attributes += [tag for name, _ in attrs if name == "style"]
        self.page.handler_attributes += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            if found.get("src"):
                self.page.scripts.append(found["src"] or "")
            self._in_inline_script = not found.get("src")
        elif tag == "link" and found.get("href"):
            self.page.stylesheets.append(found["href"] or "")
        elif tag == "style":
            self.page.style_elements += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.page.inline_scripts.append(data.strip())


def parse(html: str) -> Page:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser.page


def static_file(url: str) -> Path:
    """The file behind a /static/ URL, as the staticfiles finders (and WhiteNoise) find it."""
    path = urlsplit(url).path
    assert path.startswith(STATIC_PREFIX), f"{url} is not one of this service's static files"
    found = finders.find(path.removeprefix(STATIC_PREFIX))
    assert isinstance(found, str), f"{url}: no static file of that name"
    return Path(found)


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


def assert_works_offline_under_the_csp(response: Any, views: tuple[str, ...] = ()) -> Page:
    """The page's every script and stylesheet is an existing static file that this service
    answers (or one of `views`, scripts a view of ours writes), it names no other host, it has
    no inline script, style or handler, and the response carries a CSP that allows scripts and
    styles from this service only."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    page = parse(html)
    assert page.scripts
    assert page.stylesheets
    for url in page.scripts + page.stylesheets:
        if url in views:
            continue
        assert static_file(url).is_file(), url
        assert Client().get(url).status_code == 200, url
    assert page.inline_scripts == []
    assert page.style_elements == 0
    assert page.style_attributes == []
    assert page.handler_attributes == []
    assert "unpkg" not in html.lower()
    assert ABSOLUTE_URL.findall(html) == []
    directives = csp_directives(response["Content-Security-Policy"])
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    return page


def graphiql(client: Client | None = None) -> Any:
    return (client or Client()).get("/graphql", headers={"Accept": "text/html"})


# --- GraphiQL ----------------------------------------------------------------------------


def test_graphiql_loads_only_this_services_files_under_the_csp(db: None) -> None:
    response = graphiql()
    page = assert_works_offline_under_the_csp(response)
    assert b'id="graphiql"' in response.content
    loaded = {static_file(url).name for url in page.scripts + page.stylesheets}
    assert loaded == {
        "react.production.min.js",
        "react-dom.production.min.js",
        "js.cookie.min.js",
        "graphiql.min.js",
        "graphiql.min.css",
        "index.umd.js",
        "style.css",
        "graphiql-init.js",
        "graphiql-page.css",
        "favicon.svg",
    }


def test_graphiqls_own_script_and_stylesheet_name_no_other_host() -> None:
    for name in OUR_FILES:
        text = static_file(STATIC_PREFIX + name).read_text()
        assert "unpkg" not in text
        assert ABSOLUTE_URL.findall(text) == [], name


def test_graphiql_is_served_without_debug(db: None, settings: Any) -> None:
    settings.DEBUG = False
    assert_works_offline_under_the_csp(graphiql())


def test_graphiql_can_be_turned_off(db: None, settings: Any) -> None:
    settings.GRAPHIQL = False
    assert graphiql().status_code == 404


def test_graphiqls_queries_pass_the_csrf_check_with_the_cookie_it_sets(team: Team) -> None:
    """GraphiQL sends the csrftoken cookie back as X-CSRFToken, as a signed-in browser would;
    without it a session's query is refused."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(team.users["viewer"])
    token = graphiql(browser).cookies["csrftoken"].value
    query = {"query": "{ me { username } }"}
    refused = browser.post("/graphql", query, content_type="application/json")
    assert refused.status_code == 403
    answered = browser.post(
        "/graphql", query, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert answered.status_code == 200, answered.content
    assert answered.json()["data"]["me"]["username"] == team.users["viewer"].username


# --- Swagger UI --------------------------------------------------------------------------


@pytest.fixture
def signed_in(team: Team) -> Client:
    client = Client()
    client.force_login(team.users["viewer"])
    return client


def test_swagger_ui_loads_only_this_services_files_under_the_csp(signed_in: Client) -> None:
    response = signed_in.get("/api/docs/")
    page = assert_works_offline_under_the_csp(response, views=("/api/docs/?script=",))
    assert b'id="swagger-ui"' in response.content
    assert "swagger-ui-bundle.js" in " ".join(page.scripts)


def test_swagger_ui_start_up_script_is_a_javascript_file(signed_in: Client) -> None:
    page = parse(signed_in.get("/api/docs/").content.decode())
    [script_url] = [url for url in page.scripts if not url.startswith(STATIC_PREFIX)]
    assert urlsplit(script_url).path == "/api/docs/"
    script = signed_in.get(script_url)
    assert script.status_code == 200, script.content
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle(" in script.content
    assert b'url: "/api/schema/' in script.content
    assert ABSOLUTE_URL.findall(script.content.decode()) == []
