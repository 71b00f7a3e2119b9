"""PS3.4 matching of records, the one rule every adapter applies (HTTP records, DIMSE answers)."""

from __future__ import annotations

from gateway.sources.base import (
    InstanceQuery,
    InstanceRecord,
    PatientQuery,
    PatientRecord,
    SeriesQuery,
    SeriesRecord,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.dimse import records as dimse
from gateway.sources.matching import (
    instance_matches,
    match_any,
    patient_matches,
    series_matches,
    study_matches,
)


def test_patient_matches() -> None:
    r = PatientRecord("PID-1", name="Martin^Paul", birth_date="19700101")
    assert patient_matches(PatientQuery(), r)
    assert patient_matches(PatientQuery(patient_id="PID-?", name="martin"), r)
    assert not patient_matches(PatientQuery(birth_date="1980-"), r)
    assert not patient_matches(PatientQuery(name="Paul"), r)


def test_study_matches_modality_against_modalities_in_study() -> None:
    r = StudyRecord("1.2", patient_id="P", modalities=("CT", "MR"), study_date="20200101")
    assert study_matches(StudyQuery(modality="MR", study_uids=("1.2", "1.3")), r)
    assert study_matches(StudyQuery(modality="M?"), r)
    assert not study_matches(StudyQuery(modality="US"), r)
    assert not study_matches(StudyQuery(study_uids=("1.3",)), r)
    assert not study_matches(StudyQuery(accession_number="A1"), r)  # absent value: no match
    assert not study_matches(StudyQuery(modality="*"), StudyRecord("1.2"))
    assert match_any(None, ()) and match_any("", ()) and not match_any("CT", ())


def test_series_and_instance_matches() -> None:
    s = SeriesRecord("2.1", "1.2", modality="CT")
    assert series_matches(SeriesQuery(("1.2",), ("2.1",), "CT"), s)
    assert not series_matches(SeriesQuery(("1.3",)), s)
    assert not series_matches(SeriesQuery(("1.2",), modality="MR"), s)
    i = InstanceRecord("3.1", "2.1", "1.2")
    assert instance_matches(InstanceQuery("1.2", ("2.1",), ("3.1",)), i)
    assert not instance_matches(InstanceQuery("1.3"), i)
    assert not instance_matches(InstanceQuery("1.2", sop_instance_uids=("3.2",)), i)


def test_dimse_answers_are_matched_by_the_same_rules() -> None:
    answer = {"PatientID": "PID-1", "PatientName": "MARTIN^PAUL", "PatientBirthDate": "19700101"}
    assert dimse.keep_patient(answer, PatientQuery(name="martin"))
    assert not dimse.keep_patient(answer, PatientQuery(patient_id="PID-2"))
    study = {"StudyInstanceUID": "1.2", "ModalitiesInStudy": "CT\\MR", "StudyDate": "20200101"}
    assert dimse.keep_study(study, StudyQuery(modality="MR", study_date="2020-"))
    assert not dimse.keep_study(study, StudyQuery(modality="US"))
    series = {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "2.1", "Modality": "CT"}
    assert dimse.keep_series(series, SeriesQuery(("1.2",), modality="CT"))
    assert not dimse.keep_series(series, SeriesQuery(("1.2",), ("2.2",)))
    image = {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "2.1", "SOPInstanceUID": "3.1"}
    assert dimse.keep_instance(image, InstanceQuery("1.2", sop_instance_uids=("3.1",)))
    assert not dimse.keep_instance(image, InstanceQuery("1.3"))


def test_dimse_trusts_the_scp_for_keys_it_did_not_return() -> None:
    assert dimse.keep_patient({"PatientID": "P"}, PatientQuery(name="Nobody", birth_date="1999"))
    assert not dimse.keep_patient({"PatientID": "P", "PatientName": "A^B"}, PatientQuery(name="X"))
    # no ModalitiesInStudy returned: modality is matched later on derived modalities
    assert dimse.keep_study({"StudyInstanceUID": "1.2"}, StudyQuery(modality="US"))
    assert not dimse.keep_study({"StudyInstanceUID": "1.2"}, StudyQuery(study_uids=("1.3",)))
    assert dimse.keep_series({"SeriesInstanceUID": "2.1"}, SeriesQuery(("1.9",), modality="MR"))
    assert dimse.keep_instance({"SOPInstanceUID": "3.1"}, InstanceQuery("1.2", ("2.9",)))
    assert not dimse.keep_instance({"SOPInstanceUID": "3.1"}, InstanceQuery("1.2", (), ("3.2",)))
    counts = dimse.StudyCounts(series=2, modalities=("CT",))
    assert dimse.keep_modality("CT", counts) and not dimse.keep_modality("MR", counts)
    assert not dimse.keep_modality("CT", None)


def test_dimse_values_are_normalised_before_matching() -> None:
    # a padded, multi-component DICOM value matches as its normalised form does
    answer = {"PatientID": "P ", "PatientName": "Doe^John^^^", "PatientBirthDate": "19700101"}
    assert dimse.keep_patient(answer, PatientQuery(patient_id="P", name="DOE^JOHN"))
