"""The blocking C-FIND logic of `DimseSource`: one association per public query.

Counts: NumberOfPatientRelatedStudies, NumberOfStudyRelatedSeries/Instances,
NumberOfSeriesRelatedInstances and ModalitiesInStudy are taken from the SCP
when it returns them (Orthanc does). When it does not (dcmqrscp), they are
derived with series- and image-level queries, for the returned page only
(after sorting and limit/offset), so records are the same whatever the
archive; modality matching on such an SCP needs the derivation for every
candidate study. Patients come from Patient Root; when the SCP refuses it or
omits the study counts, from one study-level query grouped by patient id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from pynetdicom.association import Association

from gateway.core.errors import NotSupported
from gateway.sources import normalize as n
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
from gateway.sources.dimse import records as r
from gateway.sources.dimse.assoc import PATIENT_FIND, STUDY_FIND, DimseClient, FindRefused
from gateway.sources.paging import page, sort_instances


def find_patients(c: DimseClient, a: Association, q: PatientQuery) -> list[PatientRecord]:
    """Patients ordered by patient id, then limit/offset.

    Once an SCP is seen to omit NumberOfPatientRelatedStudies (or to refuse
    Patient Root), patients are derived from one study-level query, which
    gives the counts too, instead of two queries.
    """
    rows: list[r.Answer] | None = None
    counts: Counter[str] = Counter()
    if c.patient_counts is not False:
        try:
            rows = c.find(a, PATIENT_FIND, [r.patient_identifier(q)])
        except (NotSupported, FindRefused):
            c.patient_counts = False
        if rows:
            c.patient_counts = all("NumberOfPatientRelatedStudies" in p for p in rows)
    if rows is None:
        rows = r.unique(_studies_of(c, a, q), "StudyInstanceUID")
        counts = Counter(r.uid(s, "PatientID") for s in rows)
    patients = r.unique((p for p in rows if r.keep_patient(p, q)), "PatientID")
    patients.sort(key=lambda p: r.uid(p, "PatientID"))
    result = page(patients, q.offset, q.limit)
    if result and not counts and any("NumberOfPatientRelatedStudies" not in p for p in result):
        studies = r.unique(_studies_of(c, a, q), "StudyInstanceUID")
        counts = Counter(r.uid(s, "PatientID") for s in studies)
    return [r.patient_record(p, counts.get(r.uid(p, "PatientID"), 0)) for p in result]


def _studies_of(c: DimseClient, a: Association, q: PatientQuery) -> list[r.Answer]:
    rows = c.find(a, STUDY_FIND, [r.studies_of_patients_identifier(q)])
    return [s for s in rows if r.keep_patient(s, q)]


def find_studies(c: DimseClient, a: Association, q: StudyQuery) -> list[StudyRecord]:
    """Studies ordered by study UID, then limit/offset."""
    idents = [r.study_identifier(q, chunk) for chunk in r.chunks(q.study_uids)]
    rows = r.unique(
        (s for s in c.find(a, STUDY_FIND, idents) if r.keep_study(s, q)), "StudyInstanceUID"
    )
    rows.sort(key=lambda s: r.uid(s, "StudyInstanceUID"))
    derived: dict[str, r.StudyCounts] = {}
    if q.modality:
        blind = [r.uid(s, "StudyInstanceUID") for s in rows if "ModalitiesInStudy" not in s]
        derived = study_counts(c, a, blind, instances=False)
        rows = [
            s
            for s in rows
            if "ModalitiesInStudy" in s
            or r.keep_modality(q.modality, derived.get(r.uid(s, "StudyInstanceUID")))
        ]
    result = page(rows, q.offset, q.limit)
    missing = [r.uid(s, "StudyInstanceUID") for s in result if not r.has_study_counts(s)]
    if missing:
        derived.update(study_counts(c, a, missing, instances=True))
    return [r.study_record(s, derived.get(r.uid(s, "StudyInstanceUID"))) for s in result]


def study_counts(
    c: DimseClient, a: Association, study_uids: Sequence[str], instances: bool
) -> dict[str, r.StudyCounts]:
    """Series count, modalities and (optionally) instance count per study."""
    if not study_uids:
        return {}
    idents = [r.series_identifier(chunk) for chunk in r.chunks(study_uids)]
    series = r.unique(c.find(a, STUDY_FIND, idents), "SeriesInstanceUID")
    per_study: dict[str, list[r.Answer]] = defaultdict(list)
    for s in series:
        per_study[r.uid(s, "StudyInstanceUID")].append(s)
    totals: dict[str, int | None] = {}
    if instances:
        totals = dict(_instances_per(c, a, study_uids, per_study))
    out = {}
    for study in study_uids:
        rows = per_study.get(study, [])
        mods = n.modalities(r.value(s, "Modality") for s in rows)
        out[study] = r.StudyCounts(len(rows), mods, totals.get(study) if instances else None)
    return out


def _instances_per(
    c: DimseClient, a: Association, study_uids: Sequence[str], series: dict[str, list[r.Answer]]
) -> dict[str, int | None]:
    """Instances per study: summed series counts when given, else an image-level query."""
    out: dict[str, int | None] = {}
    blind = []
    for study in study_uids:
        rows = series.get(study, [])
        if rows and all("NumberOfSeriesRelatedInstances" in s for s in rows):
            out[study] = sum(
                n.integer(r.value(s, "NumberOfSeriesRelatedInstances")) or 0 for s in rows
            )
        else:
            blind.append(study)
    if blind:
        idents = [r.image_identifier(chunk) for chunk in r.chunks(blind)]
        images = r.unique(c.find(a, STUDY_FIND, idents), "SOPInstanceUID")
        counted = Counter(r.uid(i, "StudyInstanceUID") for i in images)
        out.update({study: counted.get(study, 0) for study in blind})
    return out


def find_series(c: DimseClient, a: Association, q: SeriesQuery) -> list[SeriesRecord]:
    """Series of the given studies, ordered by (study UID, series UID)."""
    if not q.study_uids:
        return []
    idents = [
        r.series_identifier(chunk, q.series_uids, q.modality) for chunk in r.chunks(q.study_uids)
    ]
    rows = r.unique(
        (s for s in c.find(a, STUDY_FIND, idents) if r.keep_series(s, q)), "SeriesInstanceUID"
    )
    rows.sort(key=lambda s: (r.uid(s, "StudyInstanceUID"), r.uid(s, "SeriesInstanceUID")))
    counts: Counter[str] = Counter()
    blind = [s for s in rows if "NumberOfSeriesRelatedInstances" not in s]
    if blind:
        studies = sorted({r.uid(s, "StudyInstanceUID") for s in blind})
        wanted = [r.uid(s, "SeriesInstanceUID") for s in blind]
        idents = [r.image_identifier(chunk, wanted) for chunk in r.chunks(studies)]
        images = r.unique(c.find(a, STUDY_FIND, idents), "SOPInstanceUID")
        counts = Counter(r.uid(i, "SeriesInstanceUID") for i in images)
    return [r.series_record(s, counts.get(r.uid(s, "SeriesInstanceUID"), 0)) for s in rows]


def find_instances(c: DimseClient, a: Association, q: InstanceQuery) -> list[InstanceRecord]:
    """Instances of one study, in the HTTP adapters' order (series, number, SOP UID)."""
    ident = r.image_identifier((q.study_uid,), q.series_uids, q.sop_instance_uids)
    rows = r.unique(
        (i for i in c.find(a, STUDY_FIND, [ident]) if r.keep_instance(i, q)), "SOPInstanceUID"
    )
    return sort_instances(r.instance_record(i) for i in rows)
