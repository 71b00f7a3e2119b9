"""The dashboard in a real browser: Debian's chromium driven by Playwright (never a
downloaded browser) against a real gateway process in `required` auth mode, a worker and
the local PACS stack (tests.auth_support), with the demo users admin, radiologist and
researcher.

Every request the pages make is recorded; one to anything but the gateway on 127.0.0.1
is aborted and fails the test. Screenshots go to docs/screenshots/ at 1280x800 and 390x844.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Response,
    Route,
    sync_playwright,
)

from gateway.server.ui import DIST
from tests.auth_support import PASSWORDS, AuthEnv, auth_env
from tests.jobs_support import GatewayProcess, WorkerProcess

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / "ui" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@dataclass
class Dashboard:
    """A running gateway (and worker) on a stack, with its URL and its users' passwords."""

    env: AuthEnv
    url: str
    browser: Browser
    log: Path
    worker: WorkerProcess | None = None

    def context(self, size: str = "desktop", locale: str = "en-US") -> Watched:
        """A fresh browser context (no session) at one of `SIZES`, in `locale`."""
        width, height = SIZES[size]
        ctx = self.browser.new_context(viewport={"width": width, "height": height}, locale=locale)
        return Watched(ctx, self.url)


@dataclass
class Watched:
    """A browser context whose every request is checked to stay on the gateway."""

    ctx: BrowserContext
    base: str
    requests: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ctx.route("**/*", self._route)
        self.ctx.on("request", lambda r: self.requests.append(r.url))
        self.ctx.on("response", self._response)

    def _allowed(self, url: str) -> bool:
        return url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:", "data:", "blob:"))

    def _route(self, route: Route) -> None:
        url = route.request.url
        if self._allowed(url):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def _response(self, response: Response) -> None:
        if urlsplit(response.url).path == "/graphql":
            try:
                self.bodies.append(response.text())
            except Exception:  # a body the page navigated away from
                pass

    def _console(self, kind: str, text: str) -> None:
        if kind == "error" and "Content Security Policy" in text:
            self.csp.append(text)

    def graphql_gets(self) -> list[str]:
        """GraphQL requests sent as GET (their variables would be in the URL)."""
        return [u for u in self.requests if urlsplit(u).path == "/graphql" and "query=" in u]

    def page(self) -> Page:
        """A new page; its WebSockets are checked too."""
        page = self.ctx.new_page()
        page.set_default_timeout(30_000)
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on("console", lambda m: self._console(m.type, m.text))
        return page

    def login(self, page: Page, who: str, path: str = "/") -> None:
        """Open `path`, get sent to the login page, sign in as `who`, come back to `path`."""
        page.goto(self.base + path)
        page.wait_for_url("**/login?next=*")
        page.get_by_label("Username").fill(who)
        page.get_by_label("Password").fill(PASSWORDS[who])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        page.locator(f'.who[data-user="{who}"]').wait_for()

    def check_stayed_local(self) -> None:
        """No request left 127.0.0.1."""
        assert self.outside == [], f"the page requested outside the gateway: {self.outside}"
        bad = [u for u in self.requests if not self._allowed(u)]
        assert bad == [], bad
        assert self.csp == [], f"the page broke its Content-Security-Policy: {self.csp}"
        assert self.graphql_gets() == [], "queries go by POST: no patient value in a URL"

    def close(self) -> None:
        self.ctx.close()


def shoot(page: Page, name: str, size: str) -> None:
    """docs/screenshots/<name>-<width>x<height>.png."""
    width, height = SIZES[size]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}x{height}.png"))


def axe_violations(page: Page) -> list[str]:
    """axe-core's violations of serious or critical impact on the page as it is (axe from
    ui/node_modules, evaluated through the DevTools protocol: nothing is fetched)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[str] = page.evaluate(
        """async () => {
          const r = await axe.run(document, { resultTypes: ["violations"] });
          return r.violations
            .filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => `${v.impact} ${v.id}: ` +
                      v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "));
        }"""
    )
    return found


def _browser(playwright: Playwright) -> Browser:
    """Debian's chromium, headless."""
    assert Path(CHROMIUM).exists(), "chromium missing: `make setup` installs Debian's chromium"
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
    )


@contextmanager
def served(
    env: AuthEnv, worker: WorkerProcess | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[Dashboard]:
    """A gateway process on `env` serving the built dashboard, and a browser. Playwright's
    sync API keeps an event loop running while it is up, so it starts after the stack's
    setup (asyncio.run) and stops before its teardown."""
    log = env.workdir / "gateway.log"
    gateway = GatewayProcess(env.config, {**env.env, **(extra_env or {})}, log).start(60)
    try:
        with sync_playwright() as playwright:
            browser = _browser(playwright)
            try:
                yield Dashboard(env, f"http://127.0.0.1:{gateway.port}", browser, log, worker)
            finally:
                browser.close()
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The module's stack, a gateway process serving the built dashboard, a worker and a
    browser."""
    assert (DIST / "index.html").exists(), "the dashboard is not built: run `make setup`"
    for env in auth_env(tmp_path_factory):
        worker = WorkerProcess(env.config, env.env, env.workdir / "worker.log").start()
        try:
            with served(env, worker) as found:
                yield found
        finally:
            worker.stop()


@pytest.fixture
def desktop(dashboard: Dashboard) -> Iterator[Watched]:
    """A 1280x800 context; fails the test if a page requested anything off the gateway."""
    watched = dashboard.context("desktop")
    yield watched
    watched.close()
    watched.check_stayed_local()
