"""The dashboard's API tokens page and the admin's groups and source limits, in a real
browser: a token's secret is shown once, works as a bearer token, is listed by its prefix
only, and is refused once revoked; an admin creates, edits and deletes a group and sets and
lifts a user's source limit; axe finds nothing serious on either page."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from gateway.auth.tokens import API_PREFIX
from tests.auth_support import PASSWORDS
from tests.e2e.conftest import Dashboard, Watched, axe_violations, shoot

ME = "{ me { username } }"


def _me(dashboard: Dashboard, token: str) -> httpx.Response:
    return httpx.post(
        dashboard.url + "/graphql",
        json={"query": ME},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_token_is_shown_once_works_and_is_refused_once_revoked(
    dashboard: Dashboard, desktop: Watched
) -> None:
    desktop.ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=dashboard.url)
    page = desktop.page()
    desktop.login(page, "radiologist", "/tokens")
    expect(page.get_by_role("heading", name="API tokens", exact=True)).to_be_visible()
    link = page.get_by_role("navigation", name="main").get_by_role("link", name="API tokens")
    expect(link).to_have_attribute("aria-current", "page")
    expect(page.get_by_text("You have no API token.")).to_be_visible()

    page.get_by_label("Token name").fill("e2e script")
    page.get_by_label("Expires in (days").fill("30")
    page.get_by_role("button", name="Create token").click()
    secret_box = page.get_by_label("Your new token")
    expect(secret_box).to_be_visible()
    expect(page.get_by_text("it will not be shown again")).to_be_visible()
    secret = secret_box.input_value()
    assert secret.startswith(API_PREFIX) and len(secret) > len(API_PREFIX) + 20, secret
    page.get_by_role("button", name="Copy the token").click()
    expect(page.get_by_text("Copied to the clipboard")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret

    row = page.locator("table.tokens tbody tr").filter(has_text="e2e script")
    expect(row).to_have_count(1)
    prefix = row.get_attribute("data-prefix")
    assert prefix and secret.startswith(prefix) and len(prefix) < len(secret) - 20
    expect(row.locator("td").nth(1)).to_have_text(f"{prefix}…")
    expect(row.locator("td").nth(4)).to_have_text("not yet")
    assert secret not in (row.text_content() or "")
    assert axe_violations(page) == []  # with the secret shown

    # the secret works as a bearer token against /graphql
    answer = _me(dashboard, secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["me"]["username"] == "radiologist"

    # after a reload: listed by its prefix, never the secret again, now used
    answered = len(desktop.bodies)
    page.reload()
    expect(row).to_have_count(1)
    expect(page.get_by_label("Your new token")).to_have_count(0)
    assert secret not in page.content()
    assert len(desktop.bodies) > answered  # the list was asked for again
    assert not any(secret in body for body in desktop.bodies[answered:])
    expect(row).to_have_attribute("data-prefix", prefix)
    expect(row.locator("td").nth(4)).not_to_have_text("not yet")
    shoot(page, "tokens", "desktop")
    assert axe_violations(page) == []

    # revoke: a confirmation first; cancelling keeps the token
    row.get_by_role("button", name="Revoke e2e script").click()
    expect(row).to_contain_text("Revoke token e2e script?")
    row.get_by_role("button", name="Cancel").click()
    assert _me(dashboard, secret).status_code == 200
    row.get_by_role("button", name="Revoke e2e script").click()
    row.get_by_role("button", name="Yes, revoke").click()
    expect(page.get_by_text("Token e2e script revoked")).to_be_visible()
    expect(page.locator("table.tokens tbody tr")).to_have_count(0)
    expect(page.get_by_text("You have no API token.")).to_be_visible()
    refused = _me(dashboard, secret)
    assert refused.status_code == 401, refused.text
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # the page itself still works with the session (a token is not the session)
    page.reload()
    expect(page.get_by_text("You have no API token.")).to_be_visible()


def test_an_api_error_is_shown_with_its_code(dashboard: Dashboard, desktop: Watched) -> None:
    page = desktop.page()
    desktop.login(page, "researcher", "/tokens")
    # a name of spaces passes the browser's `required` but not the gateway
    page.get_by_label("Token name").fill("   ")
    page.get_by_role("button", name="Create token").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(re.compile(r"^Request failed \(BAD_USER_INPUT\): .*name"))
    expect(page.get_by_label("Your new token")).to_have_count(0)


def test_admin_creates_edits_and_deletes_a_group(dashboard: Dashboard, desktop: Watched) -> None:
    admin = dashboard.env.as_("admin")
    page = desktop.page()
    desktop.login(page, "admin", "/admin")
    groups = page.locator("section.groups")
    expect(groups.get_by_role("heading", name="Groups")).to_be_visible()
    form = groups.get_by_role("form", name="Create group")
    form.get_by_label("Group name").fill("Oncology")
    form.get_by_label("RADIOLOGIST").check()
    form.get_by_label("No limit").uncheck()
    form.get_by_label("orthanc", exact=True).check()
    form.get_by_role("button", name="Create group").click()
    expect(groups.get_by_role("status")).to_have_text("Group Oncology created")
    row = groups.locator('tr[data-group="Oncology"]')
    expect(row.locator(".group-roles")).to_have_text("RADIOLOGIST")
    expect(row.locator(".group-sources")).to_have_text("orthanc")
    [saved] = [g for g in admin.data("{ groups { name roles sources } }")["groups"]]
    assert saved == {"name": "Oncology", "roles": ["RADIOLOGIST"], "sources": ["orthanc"]}

    # the same name again: the gateway's error with its code
    form.get_by_label("Group name").fill("oncology")
    form.get_by_label("RESEARCHER").check()
    form.get_by_role("button", name="Create group").click()
    expect(groups.get_by_role("alert")).to_contain_text("(BAD_USER_INPUT)")
    expect(groups.get_by_role("alert")).to_contain_text("already taken")
    expect(groups.locator("tr[data-group]")).to_have_count(1)

    # edit: one more role, the limit lifted
    row.get_by_role("button", name="Edit Oncology").click()
    edit = groups.get_by_role("form", name="Editing group Oncology")
    expect(edit.get_by_label("RADIOLOGIST")).to_be_checked()
    expect(edit.get_by_label("orthanc", exact=True)).to_be_checked()
    assert axe_violations(page) == []  # with the edit row and both forms open
    edit.get_by_label("RESEARCHER").check()
    edit.get_by_label("No limit").check()
    edit.get_by_role("button", name="Save").click()
    expect(groups.get_by_role("status")).to_have_text("Group Oncology saved")
    expect(row.locator(".group-roles")).to_have_text("RADIOLOGIST, RESEARCHER")
    expect(row.locator(".group-sources")).to_have_text("all")
    [saved] = admin.data("{ groups { name roles sources } }")["groups"]
    assert saved == {"name": "Oncology", "roles": ["RADIOLOGIST", "RESEARCHER"], "sources": None}

    # delete, after a confirmation
    row.get_by_role("button", name="Delete Oncology").click()
    expect(row).to_contain_text("Delete group Oncology?")
    assert admin.data("{ groups { id } }")["groups"] != []
    row.get_by_role("button", name="Yes, delete").click()
    expect(groups.get_by_role("status")).to_have_text("Group Oncology deleted")
    expect(groups.locator("tr[data-group]")).to_have_count(0)
    assert admin.data("{ groups { id } }")["groups"] == []


def test_admin_sets_and_lifts_a_users_source_limit(dashboard: Dashboard, desktop: Watched) -> None:
    admin = dashboard.env.as_("admin")

    def limit() -> list[str] | None:
        users = admin.data("{ users { username sources } }")["users"]
        sources: list[str] | None = next(u for u in users if u["username"] == "researcher")[
            "sources"
        ]
        return sources

    assert limit() is None
    page = desktop.page()
    desktop.login(page, "admin", "/admin")
    user = page.locator('tr[data-user="researcher"]')
    expect(user.locator(".user-sources")).to_have_text("all")
    user.get_by_role("button", name="Source limit of researcher").click()
    edit = page.locator('tr[data-edit-user="researcher"]')
    edit.get_by_label("No limit").uncheck()
    edit.get_by_label("dcm4chee", exact=True).check()
    edit.get_by_label("legacy", exact=True).check()
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Source limit of researcher saved")).to_be_visible()
    expect(user.locator(".user-sources")).to_have_text("dcm4chee, legacy")
    assert limit() == ["dcm4chee", "legacy"]
    # the researcher's own view of it, through a fresh session
    token = dashboard.env.login("researcher", PASSWORDS["researcher"])["token"]
    me = dashboard.env.with_token(token).data("{ me { sources } }")["me"]
    assert me["sources"] == ["dcm4chee", "legacy"]

    # lifted: sources null, not an empty list
    user.get_by_role("button", name="Source limit of researcher").click()
    edit.get_by_label("No limit").check()
    edit.get_by_role("button", name="Save").click()
    expect(user.locator(".user-sources")).to_have_text("all")
    assert limit() is None


def test_the_tokens_page_in_french(dashboard: Dashboard) -> None:
    watched = dashboard.context("desktop", locale="fr-FR")
    try:
        page = watched.page()
        page.goto(dashboard.url + "/login")
        page.get_by_label("Identifiant").fill("researcher")
        page.get_by_label("Mot de passe").fill(PASSWORDS["researcher"])
        page.get_by_role("button", name="Se connecter").click()
        page.get_by_role("link", name="Jetons d'API").click()
        expect(page.get_by_role("heading", name="Jetons d'API")).to_be_visible()
        page.get_by_label("Nom du jeton").fill("script fr")
        page.get_by_role("button", name="Créer le jeton").click()
        expect(page.get_by_text("il ne sera plus affiché")).to_be_visible()
        expect(page.get_by_role("button", name="Copier le jeton")).to_be_visible()
        assert axe_violations(page) == []
    finally:
        watched.close()
    watched.check_stayed_local()
