"""CT and MR image instances as Part 10 bytes (CT Image / MR Image IODs, PS3.3 A.3, A.4).

Everything above instance level is encoded once per series copy; each instance
then adds only its UID, number, position and pixels.
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.devstack.seed.encode import UTF8, Value, encode_values, part10
from gateway.devstack.seed.model import CopySpec, SeriesSpec, StudySpec
from gateway.devstack.seed.pixels import CT_INTERCEPT, frame, phantom_frame

INSTITUTION = "Demo General Hospital"
ISSUER = "DEMO"
_MR_SEQUENCES = {  # description prefix -> ScanningSequence, TR, TE, echo train length
    "T1": ("SE", 500, 12, 1),
    "T2": ("SE", 4000, 100, 16),
    "FLAIR": ("IR", 9000, 120, 20),
    "DWI": ("EP", 6000, 80, 1),
    "PD": ("SE", 3000, 30, 8),
}


def charset_for(values: dict[str, Value]) -> str | None:
    """ISO_IR 192 when any text value is non-ASCII, otherwise none (default repertoire)."""
    for value in values.values():
        if isinstance(value, str) and not value.isascii():
            return UTF8
    return None


def _age(birth: str, on: str) -> str:
    years = int(on[:4]) - int(birth[:4]) - (on[4:] < birth[4:])
    return f"{max(years, 0):03d}Y"


def patient_study_values(study: StudySpec, copy: CopySpec) -> dict[str, Value]:
    """Patient and General Study attributes as this copy spells them."""
    p = study.patient
    values: dict[str, Value] = {
        "PatientName": p.name,
        "PatientID": p.patient_id,
        "IssuerOfPatientID": ISSUER,
        "PatientBirthDate": p.birth_date,
        "PatientSex": p.sex,
        "PatientAge": _age(p.birth_date, study.date),
        "StudyInstanceUID": study.study_uid,
        "StudyDate": study.date,
        "StudyTime": study.time,
        "StudyID": study.study_id,
        "AccessionNumber": study.accession,
        "ReferringPhysicianName": study.referring,
        "StudyDescription": study.description,
        "Manufacturer": study.manufacturer,
        "InstitutionName": INSTITUTION,
    }
    values.update(copy.overrides)
    return values


def _modality_values(study: StudySpec, series: SeriesSpec) -> dict[str, Value]:
    reformatted = series.orientation != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    if series.modality == "CT":
        image_type = (
            ["DERIVED", "SECONDARY", "MPR"] if reformatted else ["ORIGINAL", "PRIMARY", "AXIAL"]
        )
        return {
            "ImageType": image_type,
            "KVP": "120",
            "RescaleIntercept": str(CT_INTERCEPT),
            "RescaleSlope": "1",
            "RescaleType": "HU",
            "WindowCenter": "40",
            "WindowWidth": "400",
        }
    seq, tr, te, etl = _MR_SEQUENCES.get(series.description.split()[0], ("SE", 2000, 20, 1))
    return {
        "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
        "ScanningSequence": seq,
        "SequenceVariant": "SK",
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "RepetitionTime": tr,
        "EchoTime": te,
        "EchoTrainLength": etl,
        "MagneticFieldStrength": "1.5" if "GE" in series.description else "3",
        "WindowCenter": "600",
        "WindowWidth": "1200",
    }


def series_values(study: StudySpec, copy: CopySpec, series: SeriesSpec) -> dict[str, Value]:
    """Every attribute shared by the instances of one series copy."""
    values = patient_study_values(study, copy)
    values.update(
        {
            "SOPClassUID": series.sop_class_uid,
            "SeriesInstanceUID": series.series_uid,
            "SeriesNumber": series.number,
            "SeriesDescription": series.description,
            "SeriesDate": study.date,
            "SeriesTime": study.time,
            "Modality": series.modality,
            "BodyPartExamined": study.body_part,
            "PatientPosition": "HFS",
            "FrameOfReferenceUID": study.frame_uid,
            "PositionReferenceIndicator": "",
            "AcquisitionNumber": 1,
            "ContentDate": study.date,
            "ContentTime": study.time,
            "ImageOrientationPatient": list(series.orientation),
            "PixelSpacing": [series.pixel_spacing, series.pixel_spacing],
            "SliceThickness": series.slice_thickness,
            "SamplesPerPixel": 1,
            "PhotometricInterpretation": "MONOCHROME2",
            "Rows": series.rows,
            "Columns": series.columns,
            "BitsAllocated": 16,
            "BitsStored": 12,
            "HighBit": 11,
            "PixelRepresentation": 0,
        }
    )
    values.update(_modality_values(study, series))
    return values


def slice_position(series: SeriesSpec, k: int) -> tuple[float, float, float]:
    """ImagePositionPatient of slice `k`: the stack is centred on the origin."""
    r, c = series.orientation[:3], series.orientation[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    offset = (k - (len(series.instance_uids) - 1) / 2) * series.slice_thickness
    half_c = (series.columns - 1) / 2 * series.pixel_spacing
    half_r = (series.rows - 1) / 2 * series.pixel_spacing
    return (
        -half_c * r[0] - half_r * c[0] + offset * n[0],
        -half_c * r[1] - half_r * c[1] + offset * n[1],
        -half_c * r[2] - half_r * c[2] + offset * n[2],
    )


def iter_series(study: StudySpec, copy: CopySpec, series: SeriesSpec) -> Iterator[bytes]:
    """Part 10 bytes of each instance of `series` that `copy` holds."""
    values = series_values(study, copy, series)
    charset = charset_for(values)
    if charset:
        values["SpecificCharacterSet"] = charset
    static = encode_values(values, charset)
    count = len(series.instance_uids)
    for k, uid in enumerate(series.instance_uids):
        if uid in copy.missing:
            continue
        if series.phantom and study.rt is not None:
            pixels = phantom_frame(study.rt.grid, study.rt.shapes, k)
        else:
            pixels = frame(series.modality, series.rows, series.columns, k, count)
        position = slice_position(series, k)
        offset = (k - (count - 1) / 2) * series.slice_thickness
        dynamic = encode_values(
            {
                "SOPInstanceUID": uid,
                "InstanceNumber": k + 1,
                "ImagePositionPatient": list(position),
                "SliceLocation": offset,
                "PixelData": pixels,
            }
        )
        yield part10(series.sop_class_uid, uid, {**static, **dynamic})
