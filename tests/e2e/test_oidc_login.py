"""Signing in through the organisation's identity provider, in a real browser.

The provider is test_oidc_login's loopback one (it signs the user in at once, as for a
user already signed in there, and checks the PKCE verifier); the gateway is a real
process with `[auth] oidc_client_id` set. The login page offers the button, the browser
goes to the provider and back through the gateway, and ends on the page it asked for,
signed in as the provider's user; a refusal at the provider ends on the login page with
its message.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.auth_support import auth_env
from tests.e2e.conftest import Dashboard, axe_violations, served
from tests.oidc_support import (
    AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    ROLES_CLAIM,
    Provider,
    ProviderHandler,
    serving,
)

BUTTON = "Sign in with your organisation"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with serving(ProviderHandler) as found:
        yield found


@pytest.fixture(scope="module")
def oidc_dashboard(
    provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    """A gateway process whose `[auth]` names the provider and the dashboard's client."""
    for env in auth_env(tmp_path_factory, seed=False):
        with env.config.open("a") as config:  # `[auth]` is the file's last table
            config.write(
                f'oidc_issuer = "{provider.issuer.url}"\n'
                f'oidc_audience = "{AUDIENCE}"\n'
                f'roles_claim = "{ROLES_CLAIM}"\n'
                f'oidc_client_id = "{CLIENT_ID}"\n'
                'oidc_client_secret_env = "E2E_OIDC_SECRET"\n'
            )
        with served(env, extra_env={"E2E_OIDC_SECRET": CLIENT_SECRET}) as found:
            yield found


def test_sign_in_with_the_organisation(oidc_dashboard: Dashboard, provider: Provider) -> None:
    provider.deny = False
    watched = oidc_dashboard.context("desktop")
    try:
        page = watched.page()
        page.goto(oidc_dashboard.url + "/jobs")
        page.wait_for_url("**/login?next=*")
        button = page.get_by_role("link", name=BUTTON)
        expect(button).to_be_visible()
        assert axe_violations(page) == []
        button.click()
        page.locator('.who[data-user="dr.oidc"]').wait_for()
        expect(page).to_have_url(oidc_dashboard.url + "/jobs")  # the token left the bar
        expect(page.get_by_text("dr.oidc (RADIOLOGIST)")).to_be_visible()
        token = provider.tokens[-2]
        stored = page.evaluate("() => window.sessionStorage.getItem('pacs-gateway.session')")
        assert stored and token in stored
        assert not any(token in u for u in watched.requests)  # never in a URL sent anywhere
        assert token not in oidc_dashboard.log.read_text(errors="replace")
    finally:
        watched.close()
    watched.check_stayed_local()


def test_refused_at_the_provider_ends_on_the_login_page(
    oidc_dashboard: Dashboard, provider: Provider
) -> None:
    provider.deny = True
    watched = oidc_dashboard.context("desktop")
    try:
        page = watched.page()
        page.goto(oidc_dashboard.url + "/login")
        page.get_by_role("link", name=BUTTON).click()
        expect(page.get_by_role("alert")).to_contain_text("cancelled or refused")
        expect(page).to_have_url(oidc_dashboard.url + "/login")  # the fragment dropped
        expect(page.get_by_label("Username")).to_be_visible()  # a local login still works
    finally:
        provider.deny = False
        watched.close()
    watched.check_stayed_local()
