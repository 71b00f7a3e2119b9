"""Federated objects: Patient, Study, Series and Instance as all sources hold them."""

from __future__ import annotations

import strawberry

from gateway.core.vr import VR
from gateway.federation.merge import (
    Merged,
    merge,
    merge_instances,
    merge_series,
    merge_studies,
    split_key,
)
from gateway.sources.base import (
    InstanceRecord,
    PatientRecord,
    SeriesRecord,
    StudyQuery,
    StudyRecord,
)
from gateway.sources.matching import match_date, match_person_name, match_string
from resolvers.common import (
    FieldConflict,
    Presence,
    SourceCounts,
    check_key,
    conflicts,
    keep,
    source_obj,
    sources_of,
)
from resolvers.context import Info
from resolvers.loaders import StudiesByPatient
from resolvers.privacy import identity, identity_conflicts
from resolvers.types import Source


@strawberry.input
class StudyFilter:
    """Study-level filter; wildcards `*` and `?` where DICOM allows them."""

    patient_id: str | None = None
    patient_name: str | None = None
    study_instance_uid: str | None = None
    accession_number: str | None = None
    study_date: str | None = None
    modality: str | None = None
    description: str | None = None
    sources: list[strawberry.ID] | None = None
    presence: Presence | None = Presence.ANY

    def check(self) -> None:
        """Refuse keys that are not valid DICOM matching keys (BAD_USER_INPUT)."""
        check_key("patientId", self.patient_id, VR.LO)
        check_key("patientName", self.patient_name, VR.PN)
        check_key("studyInstanceUid", self.study_instance_uid, VR.UI)
        check_key("accessionNumber", self.accession_number, VR.SH)
        check_key("studyDate", self.study_date, VR.DA)
        check_key("modality", self.modality, VR.CS, wildcards=False)
        check_key("description", self.description, VR.LO)

    def to_query(self) -> StudyQuery:
        """The adapters' study query for this filter."""
        return StudyQuery(
            patient_id=self.patient_id,
            patient_name=self.patient_name,
            study_uids=(self.study_instance_uid,) if self.study_instance_uid else (),
            accession_number=self.accession_number,
            study_date=self.study_date,
            modality=self.modality,
            description=self.description,
        )

    def matches(self, s: StudyRecord) -> bool:
        """Local check of one record (for studies fetched through a broader query)."""
        return (
            match_string(self.patient_id, s.patient_id)
            and match_person_name(self.patient_name, s.patient_name)
            and (not self.study_instance_uid or s.study_uid == self.study_instance_uid)
            and match_string(self.accession_number, s.accession_number)
            and match_date(self.study_date, s.study_date)
            and (not self.modality or self.modality.upper() in s.modalities)
            and match_string(self.description, s.description, ignore_case=True)
        )


@strawberry.type
class Instance:
    """One instance as every source holds it."""

    m: strawberry.Private[Merged[InstanceRecord]]

    @strawberry.field
    def sop_instance_uid(self) -> str:
        """SOP Instance UID."""
        return self.m.key

    @strawberry.field
    def sop_class_uid(self) -> str | None:
        """SOP Class UID."""
        return self.m.value("sop_class_uid")

    @strawberry.field
    def instance_number(self) -> int | None:
        """Instance Number."""
        return self.m.value("instance_number")

    @strawberry.field
    def present_in(self, info: Info) -> list[Source]:
        """Sources holding it."""
        return sources_of(info.context, self.m.present_in)

    @strawberry.field
    def missing_from(self, info: Info) -> list[Source]:
        """Sources holding the series but not this instance."""
        return sources_of(info.context, self.m.missing_from)


@strawberry.type
class Series:
    """One series as every source holds it."""

    m: strawberry.Private[Merged[SeriesRecord]]

    @strawberry.field
    def series_instance_uid(self) -> str:
        """Series Instance UID."""
        return self.m.key

    @strawberry.field
    def study_instance_uid(self) -> str:
        """Study Instance UID."""
        return self.m.first.study_uid

    @strawberry.field
    def modality(self) -> str | None:
        """Modality."""
        return self.m.value("modality")

    @strawberry.field
    def series_number(self) -> int | None:
        """Series Number."""
        return self.m.value("series_number")

    @strawberry.field
    def description(self) -> str | None:
        """Series Description."""
        return self.m.value("description")

    @strawberry.field
    def present_in(self, info: Info) -> list[Source]:
        """Sources holding it."""
        return sources_of(info.context, self.m.present_in)

    @strawberry.field
    def missing_from(self, info: Info) -> list[Source]:
        """Sources holding the study but not this series."""
        return sources_of(info.context, self.m.missing_from)

    @strawberry.field
    def counts(self, info: Info) -> list[SourceCounts]:
        """Instances per source."""
        return [
            SourceCounts(
                source=source_obj(info.context, s), series=None, instances=r.instance_count
            )
            for s, r in self.m.records.items()
        ]

    @strawberry.field
    def conflicts(self, info: Info) -> list[FieldConflict]:
        """Attributes that differ between sources."""
        return conflicts(info.context, identity_conflicts(info, self.m.conflicts, self.m.key))

    @strawberry.field
    async def instances(self, info: Info) -> list[Instance]:
        """Instances, merged over the sources holding the series."""
        fed = await info.context.loaders.instances_by_study.load(self.m.first.study_uid)
        holders = self.m.present_in
        answered = {
            s: [r for r in fed.answered[s] if r.series_uid == self.m.key]
            for s in holders
            if s in fed.answered
        }
        return [Instance(m=m) for m in merge_instances(answered, list(answered))]


def patient_from_studies(m: Merged[StudyRecord]) -> Merged[PatientRecord]:
    """The patient of a merged study, as each source's study record names it."""
    answered = {
        s: [PatientRecord(r.patient_id or "", r.issuer, r.patient_name, r.birth_date, r.sex)]
        for s, r in m.records.items()
    }
    merged = merge(answered, lambda r: r.patient_id, ("name", "birth_date", "sex", "issuer"))
    out = merged[0]
    out.missing_from = m.missing_from
    return out


@strawberry.type
class Study:
    """One study as every source holds it."""

    m: strawberry.Private[Merged[StudyRecord]]

    @strawberry.field
    def study_instance_uid(self) -> str:
        """Study Instance UID."""
        return self.m.key

    @strawberry.field
    def patient_id(self, info: Info) -> str | None:
        """Patient ID."""
        return identity(info, "patientId", self.m.value("patient_id"), self.m.key)

    @strawberry.field
    def patient_name(self, info: Info) -> str | None:
        """Patient's Name."""
        return identity(info, "patientName", self.m.value("patient_name"), self.m.key)

    @strawberry.field
    def patient(self) -> Patient | None:
        """The patient, as the study's sources name it."""
        return Patient(m=patient_from_studies(self.m)) if self.m.value("patient_id") else None

    @strawberry.field
    def study_date(self) -> str | None:
        """Study Date."""
        return self.m.value("study_date")

    @strawberry.field
    def study_time(self) -> str | None:
        """Study Time."""
        return self.m.value("study_time")

    @strawberry.field
    def description(self) -> str | None:
        """Study Description."""
        return self.m.value("description")

    @strawberry.field
    def accession_number(self, info: Info) -> str | None:
        """Accession Number (identifies the patient's visit: an identity field)."""
        return identity(info, "accessionNumber", self.m.value("accession_number"), self.m.key)

    @strawberry.field
    def modalities(self) -> list[str]:
        """Modalities in Study, over every source."""
        return sorted({x for r in self.m.records.values() for x in r.modalities})

    @strawberry.field
    def present_in(self, info: Info) -> list[Source]:
        """Sources holding it."""
        return sources_of(info.context, self.m.present_in)

    @strawberry.field
    def missing_from(self, info: Info) -> list[Source]:
        """Sources that answered and lack it."""
        return sources_of(info.context, self.m.missing_from)

    @strawberry.field
    def counts(self, info: Info) -> list[SourceCounts]:
        """Series and instances per source."""
        return [
            SourceCounts(
                source=source_obj(info.context, s),
                series=r.series_count,
                instances=r.instance_count,
            )
            for s, r in self.m.records.items()
        ]

    @strawberry.field
    def conflicts(self, info: Info) -> list[FieldConflict]:
        """Attributes that differ between sources."""
        return conflicts(info.context, identity_conflicts(info, self.m.conflicts, self.m.key))

    @strawberry.field
    async def series(self, info: Info) -> list[Series]:
        """Series, merged over the sources holding the study."""
        fed = await info.context.loaders.series_by_study.load(self.m.key)
        holders = [s for s in self.m.present_in if s in fed.answered]
        answered = {s: fed.answered[s] for s in holders}
        return [Series(m=m) for m in merge_series(answered, holders)]


@strawberry.type
class Patient:
    """One patient as every source holds them."""

    m: strawberry.Private[Merged[PatientRecord]]
    loader: strawberry.Private[StudiesByPatient | None] = None  # the page's, when from a page

    @strawberry.field
    def patient_id(self, info: Info) -> str:
        """Patient ID."""
        return identity(info, "patientId", split_key(self.m.key)[0], self.m.key)

    @strawberry.field
    def issuer_of_patient_id(self, info: Info) -> str | None:
        """Issuer of Patient ID."""
        return identity(info, "issuerOfPatientId", self.m.value("issuer"), self.m.key)

    @strawberry.field
    def name(self, info: Info) -> str | None:
        """Patient's Name ("FAMILY^GIVEN")."""
        return identity(info, "name", self.m.value("name"), self.m.key)

    @strawberry.field
    def birth_date(self, info: Info) -> str | None:
        """Patient's Birth Date."""
        return identity(info, "birthDate", self.m.value("birth_date"), self.m.key)

    @strawberry.field
    def sex(self, info: Info) -> str | None:
        """Patient's Sex."""
        return identity(info, "sex", self.m.value("sex"), self.m.key)

    @strawberry.field
    def present_in(self, info: Info) -> list[Source]:
        """Sources holding the patient."""
        return sources_of(info.context, self.m.present_in)

    @strawberry.field
    def missing_from(self, info: Info) -> list[Source]:
        """Sources that answered and lack the patient."""
        return sources_of(info.context, self.m.missing_from)

    @strawberry.field
    def conflicts(self, info: Info) -> list[FieldConflict]:
        """Attributes that differ between sources."""
        return conflicts(info.context, identity_conflicts(info, self.m.conflicts, self.m.key))

    @strawberry.field
    async def studies(self, info: Info, filter: StudyFilter | None = None) -> list[Study]:
        """The patient's studies in every source."""
        loader = self.loader or info.context.loaders.studies_by_patient
        patient_id, issuer = split_key(self.m.key)
        fed = await loader.load(patient_id)
        answered = fed.answered
        if issuer is not None:  # one of several issuers of this ID: its studies only
            answered = {
                s: [r for r in rs if (r.issuer or "") == issuer] for s, rs in answered.items()
            }
        merged = merge_studies(answered)
        f = filter or StudyFilter()
        f.check()
        return [Study(m=m) for m in merged if f.matches(m.first) and keep(m, f.presence)]
