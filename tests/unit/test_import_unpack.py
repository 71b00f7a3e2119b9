"""Safe listing of an upload (workers.jobs.unpack): traversal, links, bombs, bounds, nesting."""

from __future__ import annotations

import stat
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.core.settings import ImportConfig, Settings
from gateway.jobs import spool
from workers.jobs.unpack import UploadRefused, batches, list_upload, unsafe_path

LIMITS = ImportConfig()


def _zip(path: Path, members: dict[str, bytes], **infos: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in infos:
                info.external_attr = infos[name] << 16
            archive.writestr(info, data)
    return path


def _reasons(listing: object) -> dict[str, str]:
    return {r.name: r.reason for r in listing.refused}  # type: ignore[attr-defined]


def test_nested_folders_are_listed_and_read(tmp_path: Path) -> None:
    upload = _zip(
        tmp_path / "u", {"a/b/c/one.dcm": b"1" * 10, "two.dcm": b"22", "a/": b"", "a/b/x": b"3"}
    )
    listing = list_upload([(upload, "study.zip")], LIMITS)
    assert not listing.refused
    names = {m.name: m.read() for m in listing.members}
    assert names == {
        "study.zip/a/b/c/one.dcm": b"1" * 10,
        "study.zip/two.dcm": b"22",
        "study.zip/a/b/x": b"3",
    }


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.dcm", "leaving"),
        ("a/../../evil.dcm", "leaving"),
        ("a\\..\\..\\evil.dcm", "leaving"),
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share\\x.dcm", "absolute"),
        ("C:/Windows/x.dcm", "absolute"),
        ("ok\x00.dcm", "NUL"),
    ],
)
def test_unsafe_names_are_refused(name: str, why: str) -> None:
    reason = unsafe_path(name)
    assert reason is not None and why in reason


def test_traversal_and_symlinks_are_refused_and_listed(tmp_path: Path) -> None:
    members = {
        "good.dcm": b"x" * 100,
        "../../outside.dcm": b"y",
        "/abs.dcm": b"z",
        "link.dcm": b"/etc/passwd",
        "dir/../../up.dcm": b"w",
    }
    upload = _zip(tmp_path / "u", members, **{"link.dcm": stat.S_IFLNK | 0o777})
    listing = list_upload([(upload, "up.zip")], LIMITS)
    assert [m.name for m in listing.members] == ["up.zip/good.dcm"]
    reasons = _reasons(listing)
    assert "leaving" in reasons["up.zip/../../outside.dcm"]
    assert "absolute" in reasons["up.zip//abs.dcm"]
    assert reasons["up.zip/link.dcm"] == "a symbolic link"
    assert "leaving" in reasons["up.zip/dir/../../up.dcm"]
    assert not (tmp_path / "outside.dcm").exists() and not (tmp_path.parent / "up.dcm").exists()


def test_a_bomb_member_is_refused_by_its_ratio(tmp_path: Path) -> None:
    upload = _zip(tmp_path / "u", {"bomb.dcm": b"\x00" * (8 << 20), "small.dcm": b"\x00" * 50_000})
    listing = list_upload([(upload, "b.zip")], LIMITS)
    assert "ZIP bomb" in _reasons(listing)["b.zip/bomb.dcm"]
    assert [m.name for m in listing.members] == ["b.zip/small.dcm"], "small members pass"
    lenient = replace(LIMITS, max_ratio=1e9)
    assert not list_upload([(upload, "b.zip")], lenient).refused


def test_total_unpacked_size_and_file_count_are_bounded(tmp_path: Path) -> None:
    upload = _zip(tmp_path / "u", {f"f{i}.dcm": bytes(1000) for i in range(20)})
    with pytest.raises(UploadRefused, match="more than 10 files"):
        list_upload([(upload, "u.zip")], replace(LIMITS, max_files=10))
    with pytest.raises(UploadRefused, match="larger than 5000 bytes"):
        list_upload([(upload, "u.zip")], replace(LIMITS, max_unpacked_bytes=5000))
    plain = tmp_path / "plain"
    plain.write_bytes(b"p" * 10)
    with pytest.raises(UploadRefused):
        list_upload([(plain, "a"), (plain, "b"), (plain, "c")], replace(LIMITS, max_files=2))
    assert len(list_upload([(upload, "u.zip")], LIMITS).members) == 20


def test_a_member_larger_than_declared_is_not_read_beyond(tmp_path: Path) -> None:
    upload = _zip(tmp_path / "u", {"a.dcm": b"A" * 5000})
    raw = bytearray(upload.read_bytes())
    # shrink the declared size in the central directory: zipfile must stop and say corrupt
    at = raw.rfind(b"PK\x01\x02")
    raw[at + 24 : at + 28] = (100).to_bytes(4, "little")
    upload.write_bytes(bytes(raw))
    [member] = list_upload([(upload, "u.zip")], LIMITS).members
    with pytest.raises(ValueError, match="corrupt"):
        member.read()


def test_a_corrupt_zip_and_plain_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_bytes(_zip(tmp_path / "z", {"a": b"a" * 100}).read_bytes()[:-30])
    plain = tmp_path / "plain"
    plain.write_bytes(b"PK not really")
    listing = list_upload([(broken, "b.zip"), (plain, "p.dcm")], LIMITS)
    assert _reasons(listing) == {"b.zip": "a corrupt or truncated ZIP archive"}
    assert [m.name for m in listing.members] == ["p.dcm"]


def test_batches_bound_files_and_bytes(tmp_path: Path) -> None:
    plain = tmp_path / "p"
    plain.write_bytes(b"1")
    members = list_upload([(plain, str(i)) for i in range(40)], LIMITS).members
    assert [len(b) for b in batches(members, 16, 1 << 20)] == [16, 16, 8]
    assert [len(b) for b in batches(members, 16, 3)] == [3] * 13 + [1]


def test_spool_manifest_and_sweep(tmp_path: Path) -> None:
    settings = Settings(sources=(), results_dir=tmp_path)
    sp = spool.new_spool(settings)
    sp.part("../../etc/passwd\n").write_bytes(b"x")
    assert spool.read_manifest(sp.path) is None, "not sealed: not importable yet"
    sp.seal()
    [(path, name)] = spool.read_manifest(sp.path) or []
    assert path.parent == sp.path and path.name == "00000", "a client name is never a path"
    assert name == "../../etc/passwd?"
    with pytest.raises(ValueError):
        spool.spool_path(settings, "../x")
    assert spool.sweep(settings) == 0
    assert spool.sweep(settings, now=time.time() + settings.imports.spool_keep_s + 1) == 1
    assert not sp.path.exists()
