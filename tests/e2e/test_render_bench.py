"""Benchmark (a figure, not a timed test): how long the search page takes to render 500
result rows once the data has arrived, measured in the browser with the Performance API
(`search:render`, from the data reaching the page to the frame after the rows are in the
DOM). The gateway's real answer for the demo patients is repeated to 500 rows by the test
(route interception on 127.0.0.1), so only rendering is measured, not the archives."""

from __future__ import annotations

import copy
import json
import statistics
from typing import Any

from playwright.sync_api import Route, expect

from tests.e2e.conftest import Dashboard

ROWS = 500
RUNS = 5


def _to_500(body: dict[str, Any]) -> dict[str, Any]:
    page = body["data"]["patients"]
    edges = page["edges"]
    assert edges, body
    grown = []
    for i in range(ROWS):
        edge = copy.deepcopy(edges[i % len(edges)])
        edge["cursor"] = f"bench-{i}"
        node = edge["node"]
        if "patientId" in node:
            node["patientId"] = f"{node['patientId']}-{i}"
        grown.append(edge)
    page["edges"], page["totalCount"] = grown, ROWS
    return body


def test_search_renders_500_rows(dashboard: Dashboard) -> None:
    watched = dashboard.context("desktop")
    page = watched.page()
    watched.login(page, "radiologist")

    def grow(route: Route) -> None:
        request = route.request
        if request.method == "POST" and "SearchPatients" in (request.post_data or ""):
            response = route.fetch()
            body = _to_500(response.json())
            route.fulfill(response=response, body=json.dumps(body))
        else:
            route.fallback()

    page.route("**/graphql", grow)
    figures = []
    for run in range(RUNS):
        page.goto(f"{dashboard.url}/?size=500&run={run}")
        expect(page.locator("tr[data-row=patient]")).to_have_count(ROWS)
        page.wait_for_function("performance.getEntriesByName('search:render').length > 0")
        figures.append(
            page.evaluate("performance.getEntriesByName('search:render').at(-1).duration")
        )
    watched.close()
    watched.check_stayed_local()
    median = statistics.median(figures)
    print(f"\nsearch: {ROWS} rows rendered in {median:.1f} ms (median of {RUNS}: {figures})")
    assert all(f > 0 for f in figures)
