"""Two corpora: a PHI corpus of our own, and public real-world files (issue 16 §1).

1. Our own: every Table E.1-1 attribute with a marker value, then a scan.
Markers: text "PHIMARK" (with multibyte letters), the date 19471113 in DA/DT form,
4711 in times, numbers and UIDs (root 1.2.999.4711), bytes b"PHIMARK!". Private elements, a private
sequence and sequences three levels deep are added. After de-identification with
the Basic Profile no marker may remain in the parsed output at any depth, nor in
the raw bytes of the written file.

2. Real-world files, assembled at test time from packages the project installs
(`make setup`; pyproject.toml's `dev` extra), none committed here:

- pydicom's wheel (a runtime dependency): its test files (CT, MR, RT dose, plan and
  structure set, SR, waveform, secondary captures in every compression pydicom
  decodes, big endian, deflated, overlays, palette colour, the DICOMDIR test tree
  of CR, CT and MR) and its character-set examples (chr*.dcm: Arabic, French,
  German, Greek, Hebrew, Japanese, Korean, Russian, Chinese);
- pynetdicom's wheel (a runtime dependency): its test files (CT, MR big endian and
  JPEG 2000, RT image, deflated secondary capture);
- deid-data (the data package of pydicom's deid, MIT): photographs of cookies as JPEG
  secondary captures ("dicom-cookies", no Modality), CT heads as JPEG secondary
  captures with private sequences, an animal (a cat's radiograph, DX: Patient Species
  present), ultrasound stills (greyscale, RGB) and multi-frame cines (greyscale, RGB:
  zipped in the package, read from the zip here);
- nibabel (MIT): its DICOM test data, Siemens and Philips MR with private CSA headers
  (some gzipped, read decompressed).

Each instance goes the way an ANONYMIZE job sends it (`workers/jobs/anonymize.py`):
`process_instance` with the job's configuration (key, the default project, options:
Clean Pixel Data), which de-identifies, re-reads the output and compares dciodvfy's
errors before and after. An `InvalidOutput` is a failed instance, no bytes a
quarantined one; any other exception would fail the job and counts as failed here.

Skipped, and why (everything else counts, deliberately malformed files included):
files that are not DICOM (README, dumps, JSON, an ICC profile); datasets without a SOP
Class UID (DICOMDIRs, whose class is only in their file meta, and bare test fragments
such as priv_SQ.dcm, nested_priv_SQ.dcm, no_meta.dcm, chrSQEncoding*.dcm,
decimal_rescale.dcm: nothing a PACS stores or a job retrieves); a file pydicom cannot
write as Part 10 (ExplVR_LitEndNoMeta.dcm, Explicit VR without file meta); the
same bytes shipped twice. A file without a Part 10 header is given one
(`save_as(enforce_file_format=True)`, as storing it into an archive would) and counts.

Goals: at least 95 % of the instances exported, each export without a dciodvfy error
the original did not have (`process_instance` refuses them, as in the job), and no
leak: every identifying value of the original is looked for in the output, at every
depth of its dataset and in its raw bytes, as UTF-8 and encoded in the file's
character set, as a whole token (not inside a longer word or UID). Identifying: the
value of each attribute whose Table E.1-1 action under the job's options is not K, at
any depth, and everything inside a sequence that is removed, emptied or replaced by
dummies, except the code strings and numbers a dummy sequence keeps; text of four
characters or more (two when not ASCII), digits only from six, no UID of the
standard's own root, each component of a person name too. Values that the original
also holds in an attribute the table keeps, and the engine's own dummy texts, do not
count.
`python -m tests.unit.test_deid_corpus` prints the report file by file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import re
import shutil
import time
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.charset import convert_encodings, encode_string
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import PersonName

from workers.dicom.deid import EDITION, OPTIONS, DeidConfig, deidentify, rows, values
from workers.dicom.deid.options import PROFILE_CODE
from workers.dicom.deid.table import compile_actions
from workers.dicom.deid.validate import InvalidOutput, process_instance

MARK = "PHIMARK"
MARK_DATE = "19471113"
MARK_ROOT = "1.2.999.4711"
MARK_TIME = "134711"  # numbers and times carry 4711
NAME = "PHIMARK^Jörg=山田^太郎"
CT = "1.2.840.10008.5.1.4.1.1.2"
KEY = "unit-test-key-0123456789abcdef"
_TEXT = {"LO", "LT", "SH", "ST", "UT", "UC"}


def marker(vr: str, n: int) -> Any:
    """A value for `vr` that carries a marker where the VR allows one."""
    if vr in _TEXT:
        return f"{MARK} {n} Ærø" if vr != "SH" else f"{MARK}{n}"[:16]
    if vr in ("CS", "AE"):
        return MARK
    if vr == "PN":
        return NAME
    if vr == "DA":
        return MARK_DATE
    if vr == "DT":
        return MARK_DATE + MARK_TIME
    if vr == "TM":
        return MARK_TIME
    if vr == "UI":
        return f"{MARK_ROOT}.{n}"
    if vr == "UR":
        return "http://phimark.example/"
    if vr in ("OB", "OW", "UN", "OD", "OF", "OL", "OV"):
        return b"PHIMARK!"
    if vr == "AS":
        return "047Y"
    if vr == "DS":
        return "4711.4711"
    if vr == "IS":
        return "4711"
    if vr in ("FL", "FD"):
        return 4711.4711
    return 4711  # US, SS, UL, SL, ...


def leaf_item(n: int, depth: int) -> Dataset:
    """A sequence item with marker values, nested `depth` more levels."""
    item = Dataset()
    item.PersonName = NAME  # (0040,A123) D
    item.InstitutionName = f"{MARK} {n}"  # X/Z/D
    item.PatientComments = f"{MARK} comment {n}"  # X
    item.StudyDate = MARK_DATE  # Z
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-1", "99X", "Some code"
    item.ReferencedSOPInstanceUID = f"{MARK_ROOT}.9{n}"
    item.ReferencedSOPClassUID = CT
    if depth > 0:
        item.ConceptNameCodeSequence = Sequence([leaf_item(n * 10 + 1, depth - 1)])
    return item


def corpus() -> Dataset:
    """Every concrete Table E.1-1 attribute, plus private data and deep sequences."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for n, row in enumerate(rows()):
        if "X" in row.tag or row.tag.startswith(("GGGG", "0002", "0000", "FFFA")):
            continue
        tag = int(row.tag, 16)
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        value = Sequence([leaf_item(n, 2)]) if vr == "SQ" else marker(vr, n)
        ds.add_new(tag, vr, value)
    ds.SOPClassUID, ds.Modality = CT, "CT"
    ds.PatientID, ds.PatientName = f"{MARK}-ID-1", NAME
    ds.add_new(0x60003000, "OW", b"PHIMARK!")  # overlay data
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x50000010, "US", 1)  # curve (retired)
    block = ds.private_block(0x0011, "PHI CORP 1.0", create=True)
    block.add_new(0x01, "LO", f"{MARK} private")
    block.add_new(0x02, "SQ", Sequence([leaf_item(7, 1)]))
    safe = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    safe.add_new(0x23, "DS", "1.5")  # on the safe-list (Table E.3.10-1)
    safe.add_new(0x30, "LO", f"{MARK} unsafe")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = MARK
    return ds


def values_of(ds: Dataset) -> list[str]:
    """Every element value at every depth (file meta included), as text."""
    out: list[str] = []
    meta = getattr(ds, "file_meta", None)
    for elem in [*(meta or []), *ds]:
        if elem.VR == "SQ":
            for item in elem.value:
                out += values_of(item)
        else:
            value = elem.value
            out.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return out


def write(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def leaks(text: str) -> list[str]:
    found = re.findall(r"(?i)phimark|19471113|4711|jörg|山田", text)
    return sorted(set(found))


@pytest.fixture(scope="module")
def original() -> Dataset:
    return corpus()


def test_corpus_is_complete(original: Dataset) -> None:
    assert len(original) > 450
    raw = write(original)
    assert MARK.encode() in raw and MARK_DATE.encode() in raw
    assert leaks(" ".join(values_of(original)))


def test_no_marker_survives_parsed_or_raw(original: Dataset) -> None:
    outcome = deidentify(original, DeidConfig(KEY, "proj"))
    assert outcome.dataset is not None
    assert leaks(" ".join(values_of(outcome.dataset))) == []
    raw = write(outcome.dataset)
    assert leaks(raw.decode("latin-1")) == [] and leaks(raw.decode("utf-8", "replace")) == []
    reread = dcmread(BytesIO(raw))
    assert reread.PatientIdentityRemoved == "YES"
    assert leaks(" ".join(values_of(reread))) == []


def test_every_uid_replaced_and_valid(original: Dataset) -> None:
    ds = deidentify(original, DeidConfig(KEY, "proj")).dataset
    assert ds is not None
    uids = [v for v in values_of(ds) if re.fullmatch(r"[0-9.]+", v) and "." in v]
    assert uids
    for uid in uids:
        assert len(uid) <= 64
        assert re.fullmatch(r"2\.25\.[1-9][0-9]*", uid) or uid.startswith("1.2.840.10008."), uid
    assert ds.SOPClassUID == CT and ds.file_meta.MediaStorageSOPClassUID == CT
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in ds.file_meta


def test_private_removed_except_safe_list(original: Dataset) -> None:
    plain = deidentify(original, DeidConfig(KEY, "proj")).dataset
    assert plain is not None
    assert not [e for e in plain if e.tag.is_private]
    safe = deidentify(original, DeidConfig(KEY, "proj", frozenset({"RetainSafePrivate"}))).dataset
    assert safe is not None
    kept = {int(e.tag): e.value for e in safe if e.tag.is_private}
    block = safe.private_block(0x0019, "GEMS_ACQU_01")
    assert kept[block.get_tag(0x23)] == "1.5"
    assert block.get_tag(0x30) not in kept
    assert not any(int(t) >> 16 == 0x0011 for t in kept)  # unsafe creator block gone whole


def test_nested_sequences_three_deep(original: Dataset) -> None:
    ds = deidentify(original, DeidConfig(KEY, "proj")).dataset
    assert ds is not None
    assert "ReferencedImageSequence" not in ds  # X/Z/U* on a Type 3 of the CT IOD: X
    item = ds.ContentSequence[0]  # D: kept as a dummy structure, references renewed
    deep = item.ConceptNameCodeSequence[0].ConceptNameCodeSequence[0]
    assert deep.PersonName == "ANONYMIZED" and "PatientComments" not in deep
    assert deep.InstitutionName == "ANONYMIZED" and not deep.StudyDate
    assert deep.ReferencedSOPInstanceUID.startswith("2.25.")
    assert deep.ReferencedSOPClassUID == CT
    assert ds.ContentSequence[0].CodeMeaning == "ANONYMIZED"  # D: dummy structure


def test_caller_dataset_unchanged(original: Dataset) -> None:
    before = write(original)
    deidentify(original, DeidConfig(KEY, "proj", frozenset({"CleanDescriptors"})))
    assert write(original) == before


@pytest.mark.parametrize(
    "options",
    [
        frozenset(),
        frozenset({"CleanDescriptors", "CleanStructuredContent"}),
    ],
)
def test_the_job_path_leaks_nothing(original: Dataset, options: frozenset[str]) -> None:
    """The bytes-in, bytes-out path the job runs (its own writer), with options on."""
    from workers.dicom.deid import deidentify_bytes

    out, _, _ = deidentify_bytes(write(original), DeidConfig(KEY, "proj", options))
    assert out is not None
    assert leaks(out.decode("latin-1")) == [] and leaks(out.decode("utf-8", "replace")) == []
    assert leaks(" ".join(values_of(dcmread(BytesIO(out))))) == []


def test_modified_dates_shift_every_date_and_keep_times(original: Dataset) -> None:
    """PS3.15 E.3.6 with modified dates: dates move by one shift, times stay as they were."""
    from workers.dicom.deid import deidentify_bytes

    options = frozenset({"RetainLongitudinalTemporalInformationModifiedDates"})
    out, _, _ = deidentify_bytes(write(original), DeidConfig(KEY, "proj", options))
    assert out is not None
    ds = dcmread(BytesIO(out))
    text = " ".join(values_of(ds))
    assert MARK_DATE not in text and MARK_DATE not in out.decode("latin-1")
    assert ds.StudyTime == MARK_TIME and ds.StudyDate and ds.StudyDate != MARK_DATE
    assert not [m for m in leaks(text) if m != "4711"], "nothing else survives"


# -- 2. public real-world files (issue 16 §1) --------------------------------------------

REAL_OPTIONS = frozenset({"CleanPixelData"})  # the job's options, Clean Pixel Data on
REAL_CONFIG = DeidConfig("corpus-test-key-0123456789abcdef", "default", REAL_OPTIONS)
GOAL_EXPORTED = 0.95
MIN_TEXT, MIN_DIGITS = 4, 6
# the VRs whose values are text (binary values are not scanned one by one; the raw
# bytes of the output are, for every value found)
SCANNED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC"}
    | {"UI", "UR", "UT"}
)
needs_dciodvfy = pytest.mark.skipif(
    shutil.which("dciodvfy") is None, reason="dicom3tools not installed"
)


def _package_dir(name: str) -> Path:
    """The installed folder of a package (`make setup` installs them all)."""
    return Path(next(iter(importlib.import_module(name).__path__)))


def real_sources() -> dict[str, tuple[Path, list[Path]]]:
    """Every candidate file of each source: (the package's folder, the files)."""
    pydicom_dir, deid, nib = (_package_dir(n) for n in ("pydicom", "deid_data", "nibabel"))
    netdicom = _package_dir("pynetdicom")
    test_files = sorted(p for p in (pydicom_dir / "data" / "test_files").rglob("*") if p.is_file())
    return {
        "pydicom": (
            pydicom_dir,
            test_files + sorted((pydicom_dir / "data" / "charset_files").glob("*.dcm")),
        ),
        "pynetdicom": (netdicom, sorted((netdicom / "tests" / "dicom_files").glob("*"))),
        "deid-data": (deid, sorted(p for p in deid.rglob("*") if p.suffix in (".dcm", ".zip"))),
        "nibabel": (
            nib,
            sorted((nib / "nicom" / "tests" / "data").glob("*.dcm*"))
            + sorted((nib / "tests" / "data").glob("*.dcm")),
        ),
    }


@dataclass(slots=True)
class RealCase:
    name: str  # source/folder/file (zip member)
    data: bytes  # Part 10 bytes, as an archive hands them to the job


@dataclass(slots=True)
class RealCorpus:
    cases: list[RealCase] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why


def _contents(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith("/"):
                    yield f"{path.name}:{member}", archive.read(member)
    elif path.suffix == ".gz":
        yield path.name, gzip.decompress(path.read_bytes())
    else:
        yield path.name, path.read_bytes()


def _as_part10(raw: bytes) -> tuple[bytes | None, str]:
    """The bytes as an archive would store them, or None and why the file is skipped."""
    try:
        dcmread(BytesIO(raw), stop_before_pixels=True)
        part10 = True
    except Exception:
        part10 = False
    try:
        ds = dcmread(BytesIO(raw), force=True)
        sop_class = ds.get("SOPClassUID")
    except Exception as exc:
        return None, f"not DICOM ({type(exc).__name__})"
    if not sop_class:
        if "DirectoryRecordSequence" in ds:
            return None, "DICOMDIR (no SOP Class UID in the dataset)"
        return None, "no SOP Class UID (not DICOM, or a fragment)"
    meta = getattr(ds, "file_meta", None)
    if part10 and meta is not None and "TransferSyntaxUID" in meta:
        return raw, ""
    out = BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception as exc:
        return None, f"cannot be written as Part 10 ({type(exc).__name__})"
    return out.getvalue(), ""


@cache
def real_corpus() -> RealCorpus:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings on malformed test files
        return _assemble()


def _assemble() -> RealCorpus:
    out = RealCorpus()
    seen: set[str] = set()
    for source, (root, paths) in real_sources().items():
        for path in paths:
            for member, raw in _contents(path):
                name = f"{source}/{path.parent.relative_to(root)}/{member}"
                digest = hashlib.sha256(raw).hexdigest()
                if digest in seen:
                    out.skipped[name] = "duplicate"
                    continue
                seen.add(digest)
                data, why = _as_part10(raw)
                if data is None:
                    out.skipped[name] = why
                else:
                    out.cases.append(RealCase(name, data))
    return out


# the leak scanner


def _strings(value: object) -> list[str]:
    """A value as the texts to look for: each value of a multi-valued element, each
    component group of a person name and each of its components."""
    if value is None or isinstance(value, bytes):
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [s for v in value for s in _strings(v)]
    text = str(value).strip(" \x00")
    out = [text] if text else []
    if isinstance(value, PersonName):
        for group in map(str, value.components):  # alphabetic, ideographic, phonetic
            out += [c.strip() for c in [group, *group.split("^")] if c.strip()]
    return out


def _identifying(text: str) -> bool:
    if text.startswith("1.2.840.10008."):  # a UID the standard defines (a class, a code)
        return False
    if not text.isascii():  # two ideographs are a whole name (山田)
        return len(text) >= 2
    return len(text) >= MIN_TEXT and not (text.isdigit() and len(text) < MIN_DIGITS)


def _token(value: str) -> re.Pattern[str]:
    """`value` as a whole token: not inside a longer word, number or UID."""
    edge = r"[0-9.]" if re.fullmatch(r"[0-9.]+", value) else r"[A-Za-z0-9]"
    return re.compile(rf"(?<!{edge}){re.escape(value)}(?!{edge})")


def _engine_texts() -> list[str]:
    """What the engine writes whatever the input: dummies, method and code meanings."""
    texts = {str(values.dummy(vr)) for vr in SCANNED_VRS}
    texts |= {EDITION, PROFILE_CODE[1], *(o.meaning for o in OPTIONS.values())}
    return sorted(texts)


def identifying_values(ds: Dataset) -> set[str]:
    """The values of `ds` that the table does not keep (see the module doc), at any depth,
    less those the original also holds in kept attributes."""
    actions = compile_actions(REAL_OPTIONS)
    removed: set[str] = set()
    kept: list[str] = list(_engine_texts())

    def visit(item: Dataset, inherited: str | None) -> None:
        for elem in item:
            tag = int(elem.tag)
            action = actions.private if (tag >> 16) & 1 else actions.lookup(tag)
            if elem.VR == "SQ":
                within = action if action in ("X", "Z", "D") else inherited
                for child in elem.value or ():
                    visit(child, within)
                continue
            if elem.VR not in SCANNED_VRS:
                continue
            texts = [v for v in _strings(elem.value) if _identifying(v)]
            if action is None and inherited is not None:
                # inside a removed or emptied sequence everything goes; in a dummy one
                # code strings and numbers stay (the structure, `walk.py`)
                structure = elem.VR in ("CS", "IS", "DS")
                action = None if inherited == "D" and structure else inherited
            if action is None or action == "K":
                kept.extend(texts)
            else:
                removed.update(texts)

    visit(ds, None)
    return {v for v in removed if not any(_token(v).search(k) for k in kept)}


def _encodings(ds: Dataset) -> list[str]:
    try:
        return list(convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 6"))
    except Exception:
        return ["iso8859"]


def real_leaks(original: Dataset, output: bytes) -> list[str]:
    """The identifying values of `original` found in `output` (parsed, and raw bytes)."""
    wanted = identifying_values(original)
    if not wanted:
        return []
    found: set[str] = set()
    patterns = {v: _token(v) for v in wanted}

    def visit(item: Dataset) -> None:
        for elem in item:
            if elem.VR == "SQ":
                for child in elem.value or ():
                    visit(child)
            elif elem.VR in SCANNED_VRS:
                for text in _strings(elem.value):
                    found.update(v for v, p in patterns.items() if v in text and p.search(text))

    out = dcmread(BytesIO(output))
    visit(out.file_meta)
    visit(out)
    encodings = _encodings(original)
    for value in wanted - found:
        forms = {value.encode("utf-8", "replace")}
        for codecs in (encodings, ["iso8859"]):
            with contextlib.suppress(Exception), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                forms.add(encode_string(value, codecs))
        for form in forms:
            if len(form) >= MIN_TEXT and form in output:
                edge = rb"[0-9.]" if re.fullmatch(rb"[0-9.]+", form) else rb"[A-Za-z0-9]"
                if re.search(
                    rb"(?<!" + edge + rb")" + re.escape(form) + rb"(?!" + edge + rb")", output
                ):
                    found.add(value)
    return sorted(found)


@dataclass(slots=True)
class RealResult:
    name: str
    exported: bool = False
    reason: str = ""  # why not exported
    leaked: list[str] = field(default_factory=list)


def run_real(case: RealCase) -> RealResult:
    """One instance the way the job runs it; exported, or why not, and any leak."""
    result = RealResult(case.name)
    try:
        out, report, _ = process_instance(case.data, REAL_CONFIG)
    except InvalidOutput as exc:
        result.reason = f"failed ({exc.reason[:160]})"
        return result
    except Exception as exc:  # would fail the job: counted as failed
        result.reason = f"error ({type(exc).__name__}: {str(exc)[:120]})"
        return result
    if out is None:
        result.reason = f"quarantined ({report.quarantined})"
        return result
    result.exported = True
    result.leaked = real_leaks(dcmread(BytesIO(case.data)), out)
    return result


@cache
def real_results() -> tuple[RealResult, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings on the malformed test files
        return tuple(run_real(case) for case in real_corpus().cases)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's, on malformed test files
def test_real_corpus_covers_every_kind() -> None:
    """Several sources; photographs, CR, CT, US, cine, SC, character sets, private SQ."""
    cases = real_corpus().cases
    assert len(cases) >= 150, f"{len(cases)} instances only"
    assert {c.name.split("/", 1)[0] for c in cases} == {
        "pydicom",
        "pynetdicom",
        "deid-data",
        "nibabel",
    }
    kinds = dict.fromkeys(
        ("CR", "CT", "US", "photograph", "cine", "SC", "charset", "private SQ", "animal"), 0
    )
    for case in cases:
        ds = dcmread(BytesIO(case.data), stop_before_pixels=True)
        modality, charset = ds.get("Modality"), ds.get("SpecificCharacterSet")
        for kind, present in (
            ("CR", modality == "CR"),
            ("CT", modality == "CT"),
            ("US", modality == "US"),
            ("photograph", "cookies" in case.name),  # photographs stored as SC
            ("cine", modality == "US" and int(ds.get("NumberOfFrames") or 1) > 1),
            ("SC", str(ds.SOPClassUID).startswith("1.2.840.10008.5.1.4.1.1.7")),
            ("charset", isinstance(charset, MultiValue) or "/chr" in case.name),
            ("private SQ", any(e.VR == "SQ" and e.tag.is_private for e in ds)),
            ("animal", "PatientSpeciesDescription" in ds),
        ):
            kinds[kind] += int(bool(present))
    assert all(kinds.values()), f"missing kinds: {kinds}"


def test_the_leak_scanner_finds_what_is_left() -> None:
    """The scanner is not blind: on an output that kept the original's identity (the
    original itself), it finds the names, IDs, dates, UIDs, at depth and in any charset."""
    cases = {c.name.rsplit("/", 1)[1]: c.data for c in real_corpus().cases}
    for name, expected in (
        (
            "CT_small.dcm",
            {"CompressedSamples^CT1", "1CT1", "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"},
        ),
        ("chrH31.dcm", {"Yamada^Tarou=山田^太郎=やまだ^たろう", "山田^太郎", "山田", "やまだ"}),
        ("image1.dcm", set()),
    ):
        original = dcmread(BytesIO(cases[name]))
        found = real_leaks(original, cases[name])
        assert found, name
        assert expected <= set(found), (name, found)
    ds = dcmread(BytesIO(cases["test-SR.dcm"]))  # names inside a sequence, one non-ASCII
    deep = [str(e.value) for e in _all_elements(ds) if e.keyword == "VerifyingObserverName"]
    assert deep and set(deep) <= set(real_leaks(ds, cases["test-SR.dcm"]))


def _all_elements(ds: Dataset) -> Iterator[Any]:
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _all_elements(item)


@needs_dciodvfy
def test_real_corpus_exported_and_valid() -> None:
    """At least 95 % exported; every export passed dciodvfy with no new error (the job's
    check: `process_instance` raises `InvalidOutput` otherwise)."""
    done = real_results()
    exported = sum(r.exported for r in done)
    lost = "; ".join(f"{r.name}: {r.reason}" for r in done if not r.exported)
    assert exported / len(done) >= GOAL_EXPORTED, f"{exported}/{len(done)} exported; {lost}"


@needs_dciodvfy
def test_real_corpus_leaks_nothing() -> None:
    """No identifying value of an original in its output, at any depth or in the bytes."""
    leaked = "; ".join(f"{r.name}: {r.leaked[:3]}" for r in real_results() if r.leaked)
    assert not leaked, f"leaks: {leaked}"


if __name__ == "__main__":  # the corpus report, file by file
    started = time.monotonic()
    corpus_ = real_corpus()
    for skipped, why in corpus_.skipped.items():
        print(f"skipped  {skipped}: {why}")
    done = real_results()
    for r in done:
        state = "exported" if r.exported else "NOT     "
        print(f"{state} {r.name} {r.reason} {'LEAK ' + str(r.leaked) if r.leaked else ''}")
    n, ok = len(done), sum(r.exported for r in done)
    print(
        f"{len(corpus_.cases) + len(corpus_.skipped)} files, {n} instances, {ok} exported "
        f"({ok / n:.1%}), {n - ok} not, {sum(bool(r.leaked) for r in done)} with a leak, "
        f"{time.monotonic() - started:.1f} s"
    )
