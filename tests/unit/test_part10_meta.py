"""The SOP Instance UID read from a Part 10 file's meta bytes, and its fallbacks."""

from __future__ import annotations

from io import BytesIO

from pydicom import dcmread

from gateway.sources import part10
from tests.jobs_support import big_study


def test_meta_uid_equals_what_pydicom_reads() -> None:
    _, files = big_study(5, seed=3)
    for data in files:
        assert part10.meta_sop_instance_uid(data) == dcmread(BytesIO(data)).SOPInstanceUID
        assert part10.sop_instance_uid(data) == dcmread(BytesIO(data)).SOPInstanceUID


def test_not_part10_or_truncated() -> None:
    _, files = big_study(1, seed=4)
    assert part10.meta_sop_instance_uid(b"not a dicom file") is None
    assert part10.meta_sop_instance_uid(files[0][:140]) is None
    assert part10.sop_instance_uid(b"not a dicom file") is None
    no_preamble = files[0][132:]
    assert part10.meta_sop_instance_uid(no_preamble) is None


def test_a_bad_uid_in_the_meta_is_not_trusted() -> None:
    _, files = big_study(1, seed=5)
    uid = part10.meta_sop_instance_uid(files[0])
    assert uid is not None
    broken = files[0].replace(uid.encode(), b"x" * len(uid), 1)
    assert part10.meta_sop_instance_uid(broken) is None
