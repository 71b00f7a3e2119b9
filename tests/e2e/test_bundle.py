"""The search page's initial JavaScript and CSS stay within 300 KB gzipped (issue 13);
GraphiQL and the 3D view are not part of it (lazy chunks)."""

from __future__ import annotations

import gzip
import re

from gateway.server.ui import DIST

BUDGET = 300 * 1024


def test_initial_load_of_the_search_page_is_within_budget() -> None:
    html = (DIST / "index.html").read_text()
    initial = re.findall(r'(?:src|href)="/(assets/[^"]+\.(?:js|css))"', html)
    assert any(a.endswith(".js") for a in initial), html
    sizes = {a: len(gzip.compress((DIST / a).read_bytes(), 9)) for a in initial}
    assert sum(sizes.values()) <= BUDGET, sizes
    for lazy in ("GraphiQL", "MeshView"):  # GraphiQL and the 3D view (three.js) load lazily
        assert not any(lazy in a for a in initial), f"{lazy} must load lazily"
