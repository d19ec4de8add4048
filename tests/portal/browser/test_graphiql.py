"""GraphiQL at /graphql works offline: every file it loads comes from this service, the
strict Content-Security-Policy refuses nothing, and a query runs with the session."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.portal.browser.helpers import Watch, person, screenshot, sign_in, tenant_with
from tests.subprocesses import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TEMPLATE = ROOT / "orchestrator" / "templates" / "graphql" / "graphiql.html"


@pytest.mark.skipif(
    not TEMPLATE.exists(), reason=f"GraphiQL is not served locally yet ({TEMPLATE})"
)
def test_graphiql_renders_offline_and_runs_a_query(page: Page, watch: Watch) -> None:
    owner = person("olivia")
    tenant_with("acme", "Acme Analytics", owner)
    sign_in(page, owner)

    page.goto("/graphql?q=" + "{ me { username } }".replace(" ", "%20"))
    # The page's own placeholder is replaced by GraphiQL's container and its editors.
    expect(page.get_by_test_id("graphiql-container")).to_be_visible()
    expect(page.locator(".graphiql-query-editor")).to_be_visible()
    expect(page.locator("#graphiql")).not_to_contain_text("Loading…")
    page.locator(".graphiql-execute-button").click()
    expect(page.locator(".graphiql-response")).to_contain_text('"username": "olivia"')
    screenshot(page, "graphiql")
    watch.assert_clean()
