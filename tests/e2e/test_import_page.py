"""The dashboard's Import page in a real browser: a radiologist chooses two DICOM files and
a text file (the file picker) or drops a ZIP of them (a synthetic drop event carrying a
DataTransfer) onto the clinical archive "orthanc" (no research role); the IMPORT job
reaches SUCCEEDED through the subscription; the page shows 2 stored and 1 refused with its
reason; the instances are then found through the GraphQL API; the same files again are
already present and nothing is stored twice. Who sees the Import link mirrors the gateway's
policy (gateway/auth/policy.py): radiologists and admins for any archive that takes
imports, researchers for research archives only, nobody a source limit leaves without
such an archive. An upload refused with 413 is shown with its code. axe finds nothing
serious on the page."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import httpx
import pydicom
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Dashboard, Watched, axe_violations, shoot
from tests.jobs_support import big_study

TO = "orthanc"  # a clinical archive of the stack; "research" is the research one
NOT_DICOM = b"exported by a modality, not DICOM\n"
STUDY_QUERY = """query($uid: String!) {
  study(studyInstanceUid: $uid) {
    counts { source { id } instances }
    series { instances { sopInstanceUid presentIn { id } } }
  }
}"""


def _sop(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def _files(seed: int) -> tuple[str, list[dict[str, Any]]]:
    """A study of two valid instances (pydicom) and a text file, as Playwright file payloads."""
    study, dicoms = big_study(2, seed=seed, rows=8)
    assert all(d[128:132] == b"DICM" for d in dicoms)
    payloads = [
        {"name": f"image-{k}.dcm", "mimeType": "application/dicom", "buffer": d}
        for k, d in enumerate(dicoms)
    ]
    payloads.append({"name": "notes.txt", "mimeType": "text/plain", "buffer": NOT_DICOM})
    return study, payloads


def _held(dashboard: Dashboard, study: str) -> tuple[int | None, set[str]]:
    """Through the GraphQL API: how many instances `TO` counts for the study, and the SOP
    instance UIDs it is listed as holding."""
    data = dashboard.env.as_("radiologist").data(STUDY_QUERY, uid=study)["study"]
    assert data is not None, f"the study {study} is not found"
    count = next((c["instances"] for c in data["counts"] if c["source"]["id"] == TO), None)
    held = {
        i["sopInstanceUid"]
        for s in data["series"]
        for i in s["instances"]
        if TO in {p["id"] for p in i["presentIn"]}
    }
    return count, held


def _nav(page: Page) -> Any:
    return page.get_by_role("navigation", name="main")


def _wait_result(page: Page) -> None:
    job = page.locator(".import-job .job-progress")
    expect(job).to_have_attribute("data-status", "SUCCEEDED", timeout=120_000)
    expect(job.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator(".import-result")).to_be_visible(timeout=30_000)


def _counts(page: Page) -> dict[str, str]:
    out = {}
    for key in ("stored", "alreadyPresent", "refused"):
        out[key] = page.locator(f'.import-result dd[data-count="{key}"]').inner_text()
    return out


def _open_import(page: Page) -> None:
    """The Import page through the navigation. (A page load of /import answers the API's
    POST-only route, not the dashboard: gateway/server/ui.py lists /import among the API
    paths, so the page is reached inside the dashboard only.)"""
    _nav(page).get_by_role("link", name="Import", exact=True).click()
    page.wait_for_url("**/import")


def _choose(page: Page, payloads: list[dict[str, Any]]) -> None:
    page.get_by_label("Files to import").set_input_files(payloads)  # type: ignore[arg-type]
    expect(page.locator(".selection")).to_have_attribute("data-files", str(len(payloads)))


def test_radiologist_imports_files_live_and_again_without_storing_twice(
    dashboard: Dashboard, desktop: Watched
) -> None:
    study, payloads = _files(seed=5150)
    sops = {_sop(p["buffer"]) for p in payloads[:2]}
    assert not _study_exists(dashboard, study)

    page = desktop.page()
    desktop.login(page, "radiologist")
    link = _nav(page).get_by_role("link", name="Import", exact=True)
    expect(link).to_be_visible()
    link.click()
    page.wait_for_url("**/import")
    expect(link).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("heading", name="Import DICOM files")).to_be_visible()
    destination = page.get_by_label("Destination archive")
    # every archive that takes imports: the three clinical ones and the research one
    options = destination.locator("option")
    expect(options).to_have_count(4)
    assert sorted(options.evaluate_all("os => os.map(o => o.value)")) == sorted(
        ["orthanc", "dcm4chee", "legacy", "research"]
    )
    destination.select_option(TO)

    _choose(page, payloads)
    expect(page.locator(".selection")).to_contain_text("3 file(s) selected")
    expect(page.locator(".selection")).to_contain_text("Sent as a form of files.")
    expect(page.locator("table.picked tbody tr")).to_have_count(3)
    assert axe_violations(page) == []  # with files chosen
    page.get_by_role("button", name="Import 3 file(s)").click()
    _wait_result(page)
    assert _counts(page) == {"stored": "2", "alreadyPresent": "0", "refused": "1"}
    refused = page.locator("table.refused tbody tr")
    expect(refused).to_have_count(1)
    expect(refused).to_have_attribute("data-file", "notes.txt")
    expect(refused.locator("td").nth(1)).to_have_text(re.compile(r"not DICOM"))
    shoot(page, "import", "desktop")
    assert axe_violations(page) == []

    # the instances are in the archive, as the API sees them
    count, held = _held(dashboard, study)
    assert held == sops
    assert count == 2

    # the same files again: already present, nothing stored twice
    page.get_by_role("button", name="Import more files").click()
    expect(page.locator(".import-job")).to_have_count(0)
    _choose(page, payloads)
    page.get_by_role("button", name="Import 3 file(s)").click()
    _wait_result(page)
    assert _counts(page) == {"stored": "0", "alreadyPresent": "2", "refused": "1"}
    expect(page.locator("table.refused tbody tr")).to_have_attribute("data-file", "notes.txt")
    count, held = _held(dashboard, study)
    assert (count, held) == (2, sops)


def _study_exists(dashboard: Dashboard, study: str) -> bool:
    data = dashboard.env.as_("radiologist").data(STUDY_QUERY, uid=study)
    return data["study"] is not None


DROP = """async ([name, type, bytes]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
  const zone = document.querySelector('[data-testid="drop-zone"]');
  for (const kind of ["dragenter", "dragover", "drop"]) {
    const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
    zone.dispatchEvent(new DragEvent(kind, init));
  }
}"""


def test_a_zip_dropped_on_the_zone_is_sent_as_a_zip(dashboard: Dashboard, desktop: Watched) -> None:
    study, payloads = _files(seed=6160)
    sops = {_sop(p["buffer"]) for p in payloads[:2]}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for p in payloads:
            archive.writestr(f"export/{p['name']}", p["buffer"])
    page = desktop.page()
    desktop.login(page, "radiologist")
    _open_import(page)
    page.get_by_label("Destination archive").select_option(TO)
    sent: list[tuple[str, str]] = []
    page.on(
        "request",
        lambda r: (
            sent.append((r.url, r.headers.get("content-type", ""))) if "/import?" in r.url else None
        ),
    )
    page.evaluate(DROP, ["export.zip", "application/zip", list(out.getvalue())])
    selection = page.locator(".selection")
    expect(selection).to_have_attribute("data-files", "1")
    expect(selection).to_contain_text("Sent as one ZIP body.")
    expect(page.locator("table.picked tbody tr")).to_have_attribute("data-file", "export.zip")
    page.get_by_role("button", name="Import 1 file(s)").click()
    _wait_result(page)
    assert sent == [(f"{dashboard.url}/import?to={TO}", "application/zip")]
    assert _counts(page) == {"stored": "2", "alreadyPresent": "0", "refused": "1"}
    refused = page.locator("table.refused tbody tr")
    expect(refused).to_have_attribute("data-file", "upload.zip/export/notes.txt")
    expect(refused.locator("td").nth(1)).to_have_text(re.compile(r"not DICOM"))
    count, held = _held(dashboard, study)
    assert (count, held) == (2, sops)


def test_an_upload_refused_as_too_large_is_shown_with_its_code(
    dashboard: Dashboard, desktop: Watched
) -> None:
    """The gateway's own 413 (as /import answers it beyond [import] max_bytes, which the
    stack leaves at its 2 GiB default): the page shows the code and a clear message."""
    page = desktop.page()
    desktop.login(page, "radiologist")
    _open_import(page)
    body = '{"code": "PAYLOAD_TOO_LARGE", "error": "an upload is at most 10 bytes"}'
    page.route(
        "**/import?*",
        lambda route: route.fulfill(status=413, body=body, content_type="application/json"),
    )
    _choose(page, _files(seed=7170)[1])
    page.get_by_role("button", name="Import 3 file(s)").click()
    alert = page.get_by_role("alert")
    expect(alert).to_have_attribute("data-code", "PAYLOAD_TOO_LARGE")
    expect(alert).to_have_text(
        re.compile(r"^Request failed \(PAYLOAD_TOO_LARGE\): The upload is larger than")
    )
    expect(page.locator(".import-job")).to_have_count(0)


def _login_as(desktop: Watched, page: Page, username: str, password: str) -> None:
    page.goto(desktop.base + "/")
    page.wait_for_url("**/login?next=*")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.locator(f'.who[data-user="{username}"]').wait_for()


def test_who_sees_the_import_link_mirrors_the_gateway(
    dashboard: Dashboard, desktop: Watched
) -> None:
    # the gateway: a researcher imports into research archives only
    researcher = dashboard.env.tokens["researcher"]
    refused = httpx.post(
        f"{dashboard.url}/import?to={TO}",
        content=NOT_DICOM,
        headers={"Authorization": f"Bearer {researcher}", "Content-Type": "application/dicom"},
        timeout=30,
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "FORBIDDEN"

    # so the page offers the research archive only
    page = desktop.page()
    desktop.login(page, "researcher")
    expect(page.locator('.who[data-user="researcher"]')).to_be_visible()
    _open_import(page)
    options = page.get_by_label("Destination archive").locator("option")
    expect(options).to_have_count(1)
    expect(options).to_have_attribute("value", "research")

    # a researcher whose source limit leaves no research archive: no link, no destination
    dashboard.env.new_user("limited-researcher", ["RESEARCHER"], sources=["orthanc"])
    other = desktop.page()
    # a new page: its own sessionStorage, so no session yet
    _login_as(desktop, other, "limited-researcher", "limited-researcher-password-123")
    nav = _nav(other)
    expect(nav.get_by_role("link", name="API tokens")).to_be_visible()
    expect(nav.get_by_role("link", name="Import", exact=True)).to_have_count(0)
    # the page itself, reached by the dashboard's router
    other.evaluate(
        "() => { history.pushState(null, '', '/import');"
        " dispatchEvent(new PopStateEvent('popstate')); }"
    )
    expect(other.get_by_text("No archive accepts imports from you.")).to_be_visible()
    expect(other.get_by_label("Destination archive")).to_have_count(0)
