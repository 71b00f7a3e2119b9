"""Checking a de-identified output (DICOM PS3.15 E.1.1: the result must remain a valid IOD).

`process_instance` is what the job runs in the process pool: de-identify, re-read
the output with pydicom (pixel data included), check the attributes every
composite instance needs (PS3.3 C.12.1 SOP Common, C.7.1.1 Patient, C.7.2.1
General Study, C.7.3.1 General Series; one the original lacked too is not refused:
the engine removes none of them), and, when Debian's dicom3tools is
installed, run `dciodvfy` on the original and on the output and refuse errors the
original did not have. Failure raises `InvalidOutput` (a `ValueError`) naming the
instance by its new SOP Instance UID and the attributes at fault by keyword; its
message holds no attribute values.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from io import BytesIO
from pathlib import Path

from pydicom import dcmread

from workers.dicom.deid.engine import DeidConfig, DeidReport, deidentify_bytes

REQUIRED = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "Modality",
)
# the attribute a dciodvfy line is about: "Element=<Keyword>"
_ELEMENT = re.compile(r"Element=<(\w+)>")
# a value as dciodvfy quotes it (" = <value>", quoted text, a UID or number in angle
# brackets: "StudyInstanceUID has same value as FrameOfReferenceUID <1.2.3>", a bare UID:
# "... but have IMAGE ReferencedSOPInstanceUID 1.2.3.4" or "... UID 0"); the names in
# "Element=<Name> Module=<Name>" stay, so different missing attributes stay different
_VALUE = re.compile(
    r"\s+=\s+<[^>]*>|\s+=\s+[^<].*$|\"[^\"]*\"|\s*<[\d.]+>|\s+\d+(?:\.\d+){2,}(?![\w.])"
    r"|(?<=UID)\s+[\d.]+$"
)


class InvalidOutput(ValueError):
    """A de-identified instance that did not validate: which one (its new SOP Instance
    UID, an opaque reference) and which attributes (keywords); never a value."""

    def __init__(self, reason: str, sop_uid: str = "", attributes: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sop_uid = sop_uid
        self.attributes = attributes

    @property
    def kind(self) -> str:
        """What failed, in words that quote nothing of the instance."""
        if self.reason.startswith("dciodvfy"):
            return "new dciodvfy error"
        return "output check failed"

    def __reduce__(self) -> tuple[type[InvalidOutput], tuple[str, str, tuple[str, ...]]]:
        return InvalidOutput, (self.reason, self.sop_uid, self.attributes)  # across the pool


def check_output(data: bytes, required: tuple[str, ...] = REQUIRED) -> None:
    """Re-read `data` fully; `ValueError` when it does not parse or lacks a `required`
    attribute."""
    try:
        ds = dcmread(BytesIO(data))
        ds.get("PixelData")  # force parsing to the end
        if ds.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID:
            raise ValueError("file meta does not match the SOP Instance UID")
    except ValueError:
        raise
    except Exception as exc:  # any parse failure: the type is enough, values stay out
        raise ValueError(f"output does not re-read ({type(exc).__name__})") from None
    missing = [k for k in required if k not in ds]
    if missing:
        raise ValueError(f"output lacks {', '.join(missing)}")


def _present(data: bytes) -> tuple[str, ...]:
    """The `REQUIRED` attributes the original instance holds (only read on a failed check)."""
    ds = dcmread(BytesIO(data), stop_before_pixels=True)
    return tuple(k for k in REQUIRED if k in ds)


def dciodvfy_errors(data: bytes) -> set[str] | None:
    """dciodvfy's error lines for `data`, values removed; None when dicom3tools is absent."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "i.dcm"
        path.write_bytes(data)
        proc = subprocess.run(
            [tool, str(path)], capture_output=True, text=True, errors="replace", timeout=60
        )
    lines = (proc.stdout + proc.stderr).splitlines()
    return {_VALUE.sub("", line).strip() for line in lines if line.startswith("Error")}


def process_instance(
    data: bytes, config: DeidConfig
) -> tuple[bytes | None, DeidReport, dict[str, str]]:
    """De-identify one Part 10 instance and validate the output (see module doc)."""
    out, report, identity = deidentify_bytes(data, config)
    if out is not None:
        try:
            check_output(out)
        except ValueError:
            try:  # an attribute the original lacked too is not the engine's to add
                check_output(out, _present(data))
            except ValueError as exc:
                missing = tuple(k for k in REQUIRED if k in str(exc))
                raise InvalidOutput(str(exc), report.sop_uid, missing) from None
        after = dciodvfy_errors(out)
        if after:
            new = after - (dciodvfy_errors(data) or set())
            if new:
                lines = sorted(new)
                names = tuple(dict.fromkeys(m.group(1) for x in lines if (m := _ELEMENT.search(x))))
                raise InvalidOutput("dciodvfy: " + "; ".join(lines[:3]), report.sop_uid, names)
    return out, report, identity
