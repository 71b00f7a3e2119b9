"""DICOM matching-key syntax (gateway/core/vr.py): DA, TM, ranges, UIDs, strings."""

from __future__ import annotations

import pytest

from gateway.core.vr import VR, is_date_key, is_time_key, key_refusal

GOOD_DATES = ["20160101", "20160229", "20160101-20161231", "20160101-", "-20160101"]
BAD_DATES = [
    "2016*",
    "?",
    "*",
    "2016-13-01",
    "20161301",
    "20160230",
    "20170229",
    "2016010",
    "201601011",
    "-",
    "20161231-20160101",
    "20160101-20160102-20160103",
    "2016.01.01",
    "20160101\\20160102",
    "２０１６０１０１",
]


@pytest.mark.parametrize("value", GOOD_DATES)
def test_date_keys_dicom_takes(value: str) -> None:
    assert is_date_key(value) and key_refusal(value, VR.DA) is None


@pytest.mark.parametrize("value", BAD_DATES)
def test_date_keys_refused_without_echo(value: str) -> None:
    assert not is_date_key(value)
    reason = key_refusal(value, VR.DA)
    assert reason is not None and (len(value) < 2 or value not in reason)


@pytest.mark.parametrize(
    "value", ["07", "0730", "073015", "073015.123456", "235960", "0700-1200", "0700-", "-1200"]
)
def test_time_keys_dicom_takes(value: str) -> None:
    assert is_time_key(value)


@pytest.mark.parametrize(
    "value", ["7", "24", "0760", "073061", "07*", "?", "073015.1234567", "1200-0700", "-", "07:30"]
)
def test_time_keys_refused(value: str) -> None:
    assert not is_time_key(value) and key_refusal(value, VR.TM) is not None


def test_strings_by_vr() -> None:
    assert key_refusal("MRN*", VR.LO) is None
    assert key_refusal("M" * 65, VR.LO) == "at most 64 characters"
    assert key_refusal("SMITH^J*", VR.PN) is None
    assert key_refusal("A\x00B", VR.LO) is not None
    assert key_refusal("A\\B", VR.SH) is not None
    assert key_refusal("MRN*", VR.LO, wildcards=False) is not None
    assert key_refusal("CT", VR.CS, wildcards=False) is None
    assert key_refusal("C*", VR.CS, wildcards=False) is not None
    assert key_refusal("ct-", VR.CS) is not None
    assert key_refusal("1.2.840.10008.1", VR.UI) is None
    assert key_refusal("1.2.*", VR.UI) is not None
    assert key_refusal(None, VR.DA) is None and key_refusal("", VR.UI) is None
