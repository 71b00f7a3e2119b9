"""The OHIF Viewer at /viewer/ on the gateway's federated /dicomweb, in Debian's chromium:
the study list through the dashboard's session, the demo CT rendered (a canvas that is
not blank), its RT-STRUCT's ROIs listed over it, nothing loaded from outside the gateway."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image, ImageStat

from gateway.server.viewer import DIST
from tests.e2e.conftest import Dashboard, shoot

pytestmark = pytest.mark.integration


def _not_blank(png: bytes) -> bool:
    """Whether a screenshot shows an image (enough distinct grey levels), not a flat area."""
    grey = Image.open(io.BytesIO(png)).convert("L")
    return len(grey.getcolors(256) or []) > 20 and ImageStat.Stat(grey).stddev[0] > 8


def test_the_viewer_lists_studies_and_renders_the_demo_ct(dashboard: Dashboard) -> None:
    assert (DIST / "index.html").exists(), "the viewer is not installed: run `make setup`"
    [rt] = dashboard.env.truth.rtstructs
    watched = dashboard.context()
    try:
        page = watched.page()
        page.set_default_timeout(60_000)
        watched.login(page, "radiologist")

        page.goto(f"{dashboard.url}/viewer/")
        study = next(s for s in dashboard.env.truth.studies if s.study_uid == rt.study_uid)
        page.get_by_text(study.description).first.wait_for()
        shoot(page, "viewer-studies", "desktop")

        studies = [u for u in watched.requests if "/dicomweb/studies" in u]
        assert studies, "the study list asked the gateway's QIDO-RS"

        page.goto(f"{dashboard.url}/viewer/viewer?StudyInstanceUIDs={rt.study_uid}")
        canvas = page.locator("canvas").first
        canvas.wait_for(state="visible")
        deadline = time.monotonic() + 90
        while True:
            shot = canvas.screenshot()
            if _not_blank(shot):
                break
            assert time.monotonic() < deadline, "the viewport stayed blank"
            time.sleep(1)
        shoot(page, "viewer", "desktop")

        # the structure set: loaded over the CT, its ROIs listed in the segmentation panel
        page.get_by_text("Skip all").click()  # OHIF's first-visit tour
        page.get_by_text("Structure Set").first.dblclick()
        page.get_by_role("button", name="Yes").click()
        page.locator('[data-cy="panelSegmentation-btn"]').click()
        titles = page.locator('[data-cy="data-row-title"]')
        titles.nth(len(rt.rois) - 1).wait_for()
        assert sorted(titles.all_inner_texts()) == sorted(r.name for r in rt.rois)
        shoot(page, "viewer-rtstruct", "desktop")

        frames = [u for u in watched.requests if "/frames/" in u or "/metadata" in u]
        assert frames, "the images came through the gateway's WADO-RS"
        assert not any("token=" in u for u in watched.requests), "no token in any URL"
        watched.check_stayed_local()
    finally:
        watched.close()


def test_without_a_session_the_viewer_sends_to_the_login(dashboard: Dashboard) -> None:
    watched = dashboard.context()
    try:
        page = watched.page()
        page.goto(f"{dashboard.url}/viewer/viewer?StudyInstanceUIDs=1.2.3")
        page.wait_for_url("**/login?next=*")
        assert "next=%2Fviewer%2Fviewer" in page.url
    finally:
        watched.close()
