"""The pure part of /dicomweb: QIDO-RS parameters, DICOM JSON of merged records, warnings."""

from __future__ import annotations

import pytest

from gateway.core.errors import InvalidInput
from gateway.core.settings import ConfigError, parse_settings
from gateway.federation import dicomweb as qido
from gateway.federation.fanout import Outcome
from gateway.federation.merge import merge_studies
from gateway.sources.base import StudyQuery, StudyRecord


def test_parameters_become_a_study_query() -> None:
    query = qido.study_query(
        {
            "PatientName": ["DOE*"],
            "00100020": ["P1"],
            "StudyDate": ["20200101-20201231"],
            "StudyInstanceUID": ["1.2.3,1.2.4", "1.2.5"],
            "includefield": ["all"],
            "fuzzymatching": ["true"],
        }
    )
    assert query == StudyQuery(
        patient_name="DOE*",
        patient_id="P1",
        study_date="20200101-20201231",
        study_uids=("1.2.3", "1.2.4", "1.2.5"),
    )
    for bad in ({"Nope": ["1"]}, {"StudyInstanceUID": ["01.2"]}, {"PatientID": ["x" * 400]}):
        with pytest.raises(InvalidInput):
            qido.study_query(bad)


def test_window() -> None:
    assert qido.window({}) == qido.Window(0, qido.DEFAULT_LIMIT)
    assert qido.window({"limit": ["5"], "offset": ["10"]}).cut(list(range(20))) == [
        10,
        11,
        12,
        13,
        14,
    ]
    for bad in ({"limit": ["-1"]}, {"limit": [str(qido.MAX_LIMIT + 1)]}, {"offset": ["x"]}):
        with pytest.raises(InvalidInput):
            qido.window(bad)


def test_a_merged_study_as_dicom_json() -> None:
    merged = merge_studies(
        {
            "a": [StudyRecord("1.2.3", patient_id="P1", modalities=("CT",), instance_count=4)],
            "b": [StudyRecord("1.2.3", patient_name="DOE^J", modalities=("RTSTRUCT", "CT"))],
        }
    )
    item = qido.study_json(merged[0], "http://gw/dicomweb")
    assert item["0020000D"] == {"vr": "UI", "Value": ["1.2.3"]}
    assert item["00080061"]["Value"] == ["CT", "RTSTRUCT"], "modalities: the union"
    assert item["00100010"]["Value"] == [{"Alphabetic": "DOE^J"}]
    assert item["00201208"]["Value"] == [4]
    assert item["00081030"] == {"vr": "LO"}, "absent: an empty element"


def test_warning_names_failed_archives_only() -> None:
    ok = Outcome("a", "OK", 1.0, value=[])
    assert qido.warning([ok, Outcome("s", "SKIPPED")]) is None
    text = qido.warning([ok, Outcome("b", "TIMEOUT", 5000.0, error="no answer")])
    assert text == '299 pacs-gateway "partial result: b TIMEOUT"'


def test_the_dicomweb_table() -> None:
    sources = [{"id": "a", "kind": "orthanc", "url": "http://127.0.0.1:1", "roles": ["store"]}]
    settings = parse_settings({"sources": sources, "dicomweb": {"default_store": "a"}}, {})
    assert settings.dicomweb.default_store == "a" and settings.dicomweb.enabled
    for bad in ({"default_store": "nope"}, {"enabled": "yes"}, {"other": 1}):
        with pytest.raises(ConfigError):
            parse_settings({"sources": sources, "dicomweb": bad}, {})
