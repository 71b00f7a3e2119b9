"""Studies by receive time (dcm4chee's StudyReceiveDateTime): an archive without a change
feed that matches receive times is refreshed by them, so a study stored today with an old
study date reaches the key index at the next refresh.

dcm4chee's own server cannot run here: its QIDO is faked behind an httpx.MockTransport
(the receive-time range, StudyDate ranges, limit and offset). The Orthanc stand-in of the
local stack ignores the key, which the integration tests cover."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import httpx

from gateway.core.settings import SourceConfig
from gateway.index.feed import detect, since_mark
from gateway.sources.dicomweb.source import DicomWebSource

ROOT = "http://dcm4chee.test/dcm4chee-arc/aets/DCM4CHEE/rs"
DAY = since_mark()  # the refresh window's first day (yesterday)
OLD = ("1.2.826.0.1.3680043.10.999.31", "19990101", f"{DAY}093000")  # a prior, stored now
NEW = ("1.2.826.0.1.3680043.10.999.32", DAY, f"{DAY}101500")
EARLIER = ("1.2.826.0.1.3680043.10.999.33", "20200101", "20200101120000")


@dataclass
class FakeArchive:
    """dcm4chee's study-level QIDO over (UID, study date, receive time) rows."""

    studies: list[tuple[str, str, str]]
    matches_receipts: bool = True
    asked: list[dict[str, str]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/studies")
        params = dict(parse_qsl(request.url.query.decode()))
        self.asked.append(params)
        rows = self.studies
        if self.matches_receipts and (received := params.get("StudyReceiveDateTime")):
            rows = [r for r in rows if r[2] >= received.rstrip("-")]
        if dated := params.get("StudyDate"):
            rows = [r for r in rows if r[1] >= dated.rstrip("-")]
        offset = int(params.get("offset", 0))
        rows = rows[offset : offset + int(params.get("limit", 1000))]
        body = [
            {
                "0020000D": {"vr": "UI", "Value": [uid]},
                "00080020": {"vr": "DA", "Value": [date]},
                "00100020": {"vr": "LO", "Value": ["MRN1"]},
            }
            for uid, date, _ in rows
        ]
        return httpx.Response(200, json=body, headers={"Content-Type": "application/dicom+json"})


def source(archive: FakeArchive, dialect: str = "dcm4chee") -> DicomWebSource:
    config = SourceConfig(id="dcm4chee", kind="dicomweb", url=ROOT, dialect=dialect)  # type: ignore[arg-type]
    return DicomWebSource(config, transport=httpx.MockTransport(archive.handle))


async def test_a_study_stored_today_with_an_old_date_is_found_by_its_receive_time() -> None:
    archive = FakeArchive([OLD, NEW, EARLIER])
    dcm = source(archive)
    changes = await detect(dcm, f"date:{DAY}")
    assert changes.studies is not None
    assert sorted(s.study_uid for s in changes.studies) == sorted([OLD[0], NEW[0]])
    assert changes.cursor == f"date:{DAY}"
    assert archive.asked[-1]["StudyReceiveDateTime"] == f"{DAY}000000-"
    assert "StudyDate" not in archive.asked[-1]
    asked = len(archive.asked)
    await detect(dcm, f"date:{DAY}")
    assert len(archive.asked) == asked + 1, "an idle look costs one request once probed"


async def test_an_archive_that_ignores_the_key_is_refreshed_by_study_date() -> None:
    archive = FakeArchive([OLD, NEW, EARLIER], matches_receipts=False)
    dcm = source(archive)
    assert await dcm.studies_received(DAY) is None
    probes = len(archive.asked)
    assert probes == 1, "a receive time ahead answered a study: the key is ignored"
    changes = await detect(dcm, f"date:{DAY}")
    assert [s.study_uid for s in changes.studies or []] == [NEW[0]]  # the prior waits
    assert archive.asked[-1]["StudyDate"] == f"{DAY}-"
    assert len(archive.asked) == probes + 1, "asked once, remembered"


async def test_an_empty_archive_is_asked_again_and_other_dialects_never() -> None:
    archive = FakeArchive([])
    dcm = source(archive)
    assert await dcm.studies_received(DAY) is None  # cannot tell yet
    archive.studies.append(OLD)
    received = await dcm.studies_received(DAY)
    assert [s.study_uid for s in received or []] == [OLD[0]]
    other = FakeArchive([OLD])
    generic = source(other, "generic")
    assert await generic.studies_received(DAY) is None
    assert await generic.matches_receipts() is False
    assert other.asked == []
