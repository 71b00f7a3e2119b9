"""axe on the GraphiQL page (the dashboard's lazy /graphql route), before and after a query
runs: nothing serious or critical but the few findings that come from GraphiQL's bundled
markup (CodeMirror 5 and GraphiQL's tabs), which the dashboard cannot change; each one is
excluded by its rule and selector only. Its light theme's text colours, which failed
color-contrast, are fixed in ui/src/styles.css."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.conftest import AXE, Dashboard, axe_violations

# (axe rule, CSS selector of the nodes it may flag): GraphiQL's own markup only
GRAPHIQL_OWN = [
    # CodeMirror 5's hidden input <textarea> of each editor has no label (GraphiQL gives none)
    ("label", ".CodeMirror textarea"),
    # a GraphiQL tab (role "tab") holds its own close button
    ("nested-interactive", ".graphiql-tab"),
    # CodeMirror 5's scroller is not focusable (its hidden textarea takes the focus instead)
    ("scrollable-region-focusable", ".CodeMirror-scroll"),
]

OURS = """async (allowed) => {
  const r = await axe.run(document, { resultTypes: ["violations"] });
  const excused = (id, target) => {
    const node = document.querySelector(target.join(" "));
    return !!node && allowed.some(([rule, sel]) => rule === id && node.matches(sel));
  };
  return r.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .flatMap(v => v.nodes.filter(n => !excused(v.id, n.target))
                         .map(n => `${v.impact} ${v.id}: ${n.target.join(" ")}`));
}"""


def _violations(page: Page) -> list[str]:
    """axe's serious and critical findings but GRAPHIQL_OWN's."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[str] = page.evaluate(OURS, [list(p) for p in GRAPHIQL_OWN])
    return found


def test_graphiql_has_no_serious_axe_violation_of_ours(dashboard: Dashboard) -> None:
    watched = dashboard.context("desktop")
    try:
        page = watched.page()
        watched.login(page, "radiologist")
        page.goto(dashboard.url + "/graphql")
        expect(page.locator(".graphiql-container")).to_be_visible()
        editor = page.locator(".graphiql-query-editor")
        expect(editor).to_contain_text("SearchPatientsByName")
        # the exclusions are exact: without them axe does flag GraphiQL's markup
        unfiltered = axe_violations(page)
        assert any(v.startswith("critical label:") for v in unfiltered), unfiltered
        assert not any("color-contrast" in v for v in unfiltered), unfiltered
        assert _violations(page) == []

        editor.get_by_text("SearchPatientsByName").first.click()
        page.locator(".graphiql-execute-button").click()
        menu = page.get_by_role("menuitem", name="SearchPatientsByName")
        if menu.count():
            menu.click()
        expect(page.locator(".result-window")).to_contain_text('"patients"', timeout=30_000)
        assert _violations(page) == []
    finally:
        watched.close()
    watched.check_stayed_local()
