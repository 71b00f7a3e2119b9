"""The key index's store on SQLite: writes, keyset pages, name prefixes, removals, counts.

Pages are walked to the end with several page sizes over data where one patient has
studies in several archives (several rows per patient ID) and one study is dated
differently in two archives: every walk must give each patient or study exactly once, in
order, with `has_next` false only on the last page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from gateway.db.models import IndexedStudy, utcnow
from gateway.index import store
from gateway.index.refresh import build, refresh
from gateway.index.store import fold_name, name_prefix
from gateway.sources.base import StudyRecord
from gateway.sources.matching import match_person_name
from tests.index_support import Archive, as_source

SOURCES = ("a", "b", "c")
NAMES = ("MARTIN^PAUL", "Müller^Jürgen", "SMITH^ANN", "martinez^luis", "Ma^Li", "O'BRIEN^SEAN")


def rec(
    uid: str,
    pid: str,
    name: str | None = "DOE^JOHN",
    date: str | None = "20200101",
    time: str | None = "120000",
    **more: object,
) -> StudyRecord:
    return StudyRecord(
        study_uid=uid,
        patient_id=pid,
        patient_name=name,
        study_date=date,
        study_time=time,
        **more,  # type: ignore[arg-type]
    )


async def rows(sessions: async_sessionmaker, source: str | None = None) -> list[IndexedStudy]:
    async with sessions() as session:
        query = select(IndexedStudy).order_by(IndexedStudy.source, IndexedStudy.study_uid)
        if source is not None:
            query = query.where(IndexedStudy.source == source)
        return list((await session.scalars(query)).all())


# -- a federation of three archives --------------------------------------------------------

HOLDERS = (("a",), ("b",), ("a", "b"), ("a", "b", "c"), ("c",))


def federation() -> dict[str, list[StudyRecord]]:
    """30 patients, 1 to 3 studies each, each study held by one to three archives; patient
    P015 has 150 studies (more rows than one read of a page); names cycle through NAMES."""
    per: dict[str, list[StudyRecord]] = {s: [] for s in SOURCES}
    for i in range(30):
        pid = f"P{i:03d}"
        n = 150 if i == 15 else 1 + i % 3
        for j in range(n):
            uid = f"1.2.{i}.{j}"
            for s in HOLDERS[(i + j) % len(HOLDERS)]:
                per[s].append(
                    rec(uid, pid, NAMES[i % len(NAMES)], f"2020{1 + j % 12:02d}{1 + i % 28:02d}")
                )
    return per


async def load(sessions: async_sessionmaker, per: dict[str, list[StudyRecord]]) -> None:
    for source, records in per.items():
        await store.upsert(sessions, source, records)


async def walk_patients(
    sessions: async_sessionmaker,
    sources: Sequence[str],
    first: int,
    name: str | None = None,
) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        page = await store.patient_page(sessions, sources, first, after, name=name)
        assert len(page.patient_ids) <= first
        pages.append(page.patient_ids)
        if not page.has_next:
            return pages
        assert len(page.patient_ids) == first, "a page before the last is full"
        after = page.patient_ids[-1]
        assert len(pages) < 1000


async def walk_studies(
    sessions: async_sessionmaker, sources: Sequence[str], first: int
) -> list[list[tuple[str, str, str]]]:
    pages: list[list[tuple[str, str, str]]] = []
    after = None
    while True:
        page = await store.study_page(sessions, sources, first, after)
        assert len(page.keys) <= first
        pages.append(page.keys)
        if not page.has_next:
            return pages
        assert len(page.keys) == first, "a page before the last is full"
        after = page.keys[-1]
        assert len(pages) < 1000


# -- fold_name / name_prefix ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folded"),
    [
        ("Müller^Jürgen", "MÜLLER^JÜRGEN"),
        ("  doe^john ", "DOE^JOHN"),
        (None, ""),
        ("", ""),
        ("Παπαδόπουλος^Νίκος", "ΠΑΠΑΔΌΠΟΥΛΟΣ^ΝΊΚΟΣ"),
    ],
)
def test_fold_name(name: str | None, folded: str) -> None:
    assert fold_name(name) == folded


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("M*", "M"),
        ("mar*", "MAR"),
        ("Mü*", "MÜ"),
        ("MARTIN^P*", "MARTIN^P"),
        ("*", None),  # everything: not a prefix search
        ("*x", None),
        ("x*y*", None),
        ("a?b*", None),
        ("a_b*", None),  # LIKE's wildcards are never passed on
        ("a%*", None),
        ("\\", None),
        ("a\\*", None),
        ("M", None),  # an exact name is not a prefix
        ("", None),
        (None, None),
        ("M *", "M "),  # the space is part of the prefix: "MARTIN" does not match "M *"
    ],
)
def test_name_prefix(pattern: str | None, prefix: str | None) -> None:
    assert name_prefix(pattern) == prefix


TRICKY = (
    "Straße^Anna",
    "STRASSE^ANNA",
    "Strasser^Bo",
    "Weiß^Eva",
    "WEISS^EVA",
    "İlker^Can",
    "Işık^Ada",
    "ILKER^X",
    "ǅemal^A",
    "ﬁsher^A",
    "FISHER^B",
    "Σίσυφος^Α",
    "σίσυφοσ^β",
    "\u212aelvin^K",
    "ſam^S",
    "SAM^T",
    "Müller^Jürgen",
    "MULLER^JURGEN",
    "Ma^Li",
    "M ^Space",
)


def test_prefix_of_folded_name_is_what_the_live_pattern_matches() -> None:
    """For every name and every prefix of every name: the index's test (folded name starts
    with the folded prefix) agrees with the live PN matching of `PREFIX*`."""
    for name in TRICKY:
        for other in TRICKY:
            for end in range(1, len(other) + 1):
                pattern = other[:end] + "*"
                prefix = name_prefix(pattern)
                assert prefix is not None, pattern
                live = match_person_name(pattern, name)
                assert fold_name(name).startswith(prefix) == live, (pattern, name, live)


# -- writes --------------------------------------------------------------------------------


async def test_upsert_replaces_a_study_and_keeps_archives_apart(
    sessions: async_sessionmaker,
) -> None:
    await store.upsert(sessions, "a", [rec("1.1", "P1", "Doe^John", modalities=("CT", "MR"))])
    await store.upsert(sessions, "b", [rec("1.1", "P1", "Doe^John")])
    await store.upsert(
        sessions, "a", [rec("1.1", "P2", "Roe^Jane", "20210202", "080000", series_count=3)]
    )
    got = await rows(sessions)
    assert [(r.source, r.study_uid) for r in got] == [("a", "1.1"), ("b", "1.1")]
    a = got[0]
    assert (a.patient_id, a.patient_name, a.name_key) == ("P2", "Roe^Jane", "ROE^JANE")
    assert (a.study_date, a.study_time, a.series_count) == ("20210202", "080000", 3)
    assert a.modalities == "", "replaced, not merged with the old row"
    assert got[1].patient_id == "P1", "the other archive's row is untouched"


async def test_upsert_of_repeated_uids_and_more_than_a_batch(sessions: async_sessionmaker) -> None:
    records = [rec(f"1.{k}", f"P{k % 7}") for k in range(store.BATCH * 2 + 17)]
    repeats = [rec("1.3", "PX", "LAST^ONE"), rec("1.3", "PY", "REALLY^LAST")]
    await store.upsert(sessions, "a", [*records, rec("1.3", "PZ"), *repeats])
    got = {r.study_uid: r for r in await rows(sessions, "a")}
    assert len(got) == len(records)
    assert got["1.3"].patient_id == "PY", "the last record of a UID wins"
    none = rec("1.9999", "", None, None, None)
    await store.upsert(sessions, "a", [none])
    row = {r.study_uid: r for r in await rows(sessions, "a")}["1.9999"]
    assert (row.patient_id, row.name_key, row.study_date, row.study_time) == ("", "", "", "")


async def test_upsert_of_nothing(sessions: async_sessionmaker) -> None:
    await store.upsert(sessions, "a", [])
    assert await rows(sessions) == []


async def test_remove_and_remove_unseen(sessions: async_sessionmaker) -> None:
    await store.upsert(sessions, "a", [rec("1.1", "P1"), rec("1.2", "P1"), rec("1.3", "P2")])
    await store.upsert(sessions, "b", [rec("1.1", "P1")])
    assert await store.remove(sessions, "a", []) == 0
    assert await store.remove(sessions, "a", ["1.1", "9.9"]) == 1
    assert [(r.source, r.study_uid) for r in await rows(sessions)] == [
        ("a", "1.2"),
        ("a", "1.3"),
        ("b", "1.1"),
    ]
    mark = utcnow()
    await store.upsert(sessions, "a", [rec("1.3", "P2")])  # seen again after `mark`
    assert await store.remove_unseen(sessions, "a", mark) == 1
    assert [(r.source, r.study_uid) for r in await rows(sessions)] == [("a", "1.3"), ("b", "1.1")]
    assert await store.remove_unseen(sessions, "a", mark - timedelta(hours=1)) == 0
    assert await store.remove_unseen(sessions, "b", utcnow() + timedelta(seconds=1)) == 1
    assert [(r.source, r.study_uid) for r in await rows(sessions)] == [("a", "1.3")]


async def test_state_counts_the_archive_rows(sessions: async_sessionmaker) -> None:
    assert await store.state(sessions, "a") is None
    await store.upsert(sessions, "a", [rec("1.1", "P1"), rec("1.2", "P1")])
    await store.upsert(sessions, "b", [rec("1.1", "P1")])
    now = utcnow()
    await store.save_state(sessions, "a", cursor="feed:7", complete=True, refreshed_at=now)
    st = await store.state(sessions, "a")
    assert st is not None
    assert (st.cursor, st.complete, st.studies) == ("feed:7", True, 2)
    await store.remove(sessions, "a", ["1.1"])
    await store.save_state(sessions, "a", cursor="feed:8")
    all_states = await store.states(sessions)
    assert list(all_states) == ["a"]
    assert (all_states["a"].cursor, all_states["a"].studies) == ("feed:8", 1)
    assert all_states["a"].complete is True, "values not given are kept"


# -- patient pages -------------------------------------------------------------------------


@pytest.mark.parametrize("first", [1, 2, 3, 7, 10, 29, 30, 31, 500])
async def test_patient_walk_is_ordered_complete_and_without_repeats(
    sessions: async_sessionmaker, first: int
) -> None:
    per = federation()
    await load(sessions, per)
    expected = sorted({r.patient_id or "" for rs in per.values() for r in rs})
    assert len(expected) == 30
    pages = await walk_patients(sessions, SOURCES, first)
    flat = [pid for p in pages for pid in p]
    assert flat == expected
    assert len(pages) == max(1, -(-30 // first))


async def test_patient_pages_of_some_archives_only(sessions: async_sessionmaker) -> None:
    per = federation()
    await load(sessions, per)
    for sources in (("c",), ("a", "c"), ("b",)):
        expected = sorted({r.patient_id or "" for s in sources for r in per[s]})
        pages = await walk_patients(sessions, sources, 4)
        assert [pid for p in pages for pid in p] == expected, sources


async def test_patient_page_after_an_id_no_longer_indexed(sessions: async_sessionmaker) -> None:
    await store.upsert(sessions, "a", [rec(f"1.{k}", f"P{k}") for k in (1, 3, 5)])
    page = await store.patient_page(sessions, ["a"], 5, "P2")
    assert (page.patient_ids, page.has_next) == (["P3", "P5"], False)
    page = await store.patient_page(sessions, ["a"], 5, "P9")
    assert (page.patient_ids, page.has_next) == ([], False)
    page = await store.patient_page(sessions, ["a"], 0, None)
    assert (page.patient_ids, page.has_next) == ([], True)


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("MAR*", {"MARTIN^PAUL", "martinez^luis"}),
        ("martin^*", {"MARTIN^PAUL"}),
        ("mü*", {"Müller^Jürgen"}),
        ("M*", {"MARTIN^PAUL", "Müller^Jürgen", "martinez^luis", "Ma^Li"}),
        ("O'*", {"O'BRIEN^SEAN"}),
        ("Z*", set()),
    ],
)
@pytest.mark.parametrize("rare_rows", [10_000, 40, 0], ids=["read-whole", "either", "ordered"])
async def test_patient_pages_by_name_prefix(
    sessions: async_sessionmaker,
    monkeypatch: pytest.MonkeyPatch,
    pattern: str,
    names: set[str],
    rare_rows: int,
) -> None:
    monkeypatch.setattr(store, "RARE_ROWS", rare_rows)  # which of the two ways reads a page
    per = federation()
    await load(sessions, per)
    prefix = name_prefix(pattern)
    assert prefix is not None
    expected = sorted(
        {r.patient_id or "" for rs in per.values() for r in rs if r.patient_name in names}
    )
    pages = await walk_patients(sessions, SOURCES, 3, name=prefix)
    assert [pid for p in pages for pid in p] == expected
    assert await store.count_patients(sessions, SOURCES, prefix) == len(expected)


async def test_name_prefix_is_literal_in_like(sessions: async_sessionmaker) -> None:
    await store.upsert(
        sessions,
        "a",
        [rec("1.1", "P1", "A_B^C"), rec("1.2", "P2", "AXB^C"), rec("1.3", "P3", "A%^C")],
    )
    # name_prefix never yields LIKE wildcards; the store gets them only from a caller's bug
    assert name_prefix("A_*") is None and name_prefix("A%*") is None
    page = await store.patient_page(sessions, ["a"], 10, None, name="AX")
    assert page.patient_ids == ["P2"]


# -- study pages ---------------------------------------------------------------------------


def dated_federation() -> tuple[dict[str, list[StudyRecord]], list[str]]:
    """Studies over three archives with ties on date and on (date, time), empty dates and
    times, one study dated differently in two archives and one undated in one archive; and
    the expected order: each study once, newest first by its newest (date, time, UID)."""
    per: dict[str, list[StudyRecord]] = {s: [] for s in SOURCES}
    for k in range(160):
        date = "" if k % 23 == 0 else f"2021{1 + k % 6:02d}{1 + k % 3:02d}"
        time = "" if k % 17 == 0 else f"{k % 4:02d}0000"
        for s in HOLDERS[k % len(HOLDERS)]:
            per[s].append(rec(f"1.3.{k}", f"P{k % 11}", date=date, time=time))
    per["a"].append(rec("9.1", "PX", date="20240301", time="101010"))
    per["b"].append(rec("9.1", "PX", date="20190101", time="101010"))
    per["c"].append(rec("9.2", "PY", date="", time=""))
    per["b"].append(rec("9.2", "PY", date="20210103", time="000000"))
    newest: dict[str, tuple[str, str, str]] = {}
    for rs in per.values():
        for r in rs:
            key = (r.study_date or "", r.study_time or "", r.study_uid)
            newest[r.study_uid] = max(newest.get(r.study_uid, key), key)
    order = [k[2] for k in sorted(newest.values(), reverse=True)]
    return per, order


@pytest.mark.parametrize("first", [1, 2, 5, 7, 50, 163, 164, 500])
async def test_study_walk_newest_first_each_study_once(
    sessions: async_sessionmaker, first: int
) -> None:
    per, order = dated_federation()
    await load(sessions, per)
    pages = await walk_studies(sessions, SOURCES, first)
    keys = [k for p in pages for k in p]
    assert [k[2] for k in keys] == order
    assert keys == sorted(keys, reverse=True)
    by_uid = {k[2]: k for k in keys}
    assert by_uid["9.1"] == ("20240301", "101010", "9.1"), "ordered by its newest date"
    assert by_uid["9.2"] == ("20210103", "000000", "9.2")
    assert len(pages) == max(1, -(-len(order) // first))


async def test_study_walk_of_one_archive_uses_its_own_dates(sessions: async_sessionmaker) -> None:
    per, _ = dated_federation()
    await load(sessions, per)
    pages = await walk_studies(sessions, ["b"], 9)
    keys = [k for p in pages for k in p]
    assert len(keys) == len({r.study_uid for r in per["b"]})
    assert ("20190101", "101010", "9.1") in keys
    assert keys == sorted(keys, reverse=True)


async def test_study_page_after_the_study_dated_twice(sessions: async_sessionmaker) -> None:
    """A cursor just after the twice-dated study: its older row is not met again."""
    per, order = dated_federation()
    await load(sessions, per)
    page = await store.study_page(sessions, SOURCES, 3, ("20240301", "101010", "9.1"))
    assert [k[2] for k in page.keys] == order[1:4]
    assert "9.1" not in [k[2] for k in (await walk_rest(sessions, page))]


async def walk_rest(
    sessions: async_sessionmaker, page: store.StudyPage
) -> list[tuple[str, str, str]]:
    keys = list(page.keys)
    while page.has_next:
        page = await store.study_page(sessions, SOURCES, 4, keys[-1])
        keys += page.keys
    return keys


# -- lookups and counts --------------------------------------------------------------------


async def test_holders_and_studies_of_patients(sessions: async_sessionmaker) -> None:
    per = federation()
    await load(sessions, per)
    held = await store.holders(sessions, SOURCES, ["1.2.3.0", "1.2.4.1", "0.0"])
    assert {s: sorted(u) for s, u in held.items()} == {
        "a": ["1.2.3.0", "1.2.4.1"],  # HOLDERS[3] and HOLDERS[0]
        "b": ["1.2.3.0"],
        "c": ["1.2.3.0"],
    }
    assert await store.holders(sessions, ["a"], []) == {"a": []}
    of = await store.studies_of_patients(sessions, ["a", "c"], ["P003", "P004"])
    expected = {
        s: sorted(r.study_uid for r in per[s] if r.patient_id in ("P003", "P004"))
        for s in ("a", "c")
    }
    assert {s: sorted(u) for s, u in of.items()} == expected
    assert await store.studies_of_patients(sessions, ["a"], []) == {"a": []}


async def test_counts_are_distinct_over_archives(sessions: async_sessionmaker) -> None:
    per = federation()
    await load(sessions, per)
    assert await store.count_patients(sessions, SOURCES) == 30
    assert await store.count_studies(sessions, SOURCES) == len(
        {r.study_uid for rs in per.values() for r in rs}
    )
    for s in SOURCES:
        assert await store.count_studies(sessions, [s]) == len(per[s])
        assert await store.count_patients(sessions, [s]) == len({r.patient_id for r in per[s]})
    assert await store.count_patients(sessions, []) == 0


async def test_records_round_trip_the_index_rows(sessions: async_sessionmaker) -> None:
    full = StudyRecord(
        study_uid="1.02.3",
        patient_id="P1",
        patient_name="Doe^John",
        issuer="HOSP",
        birth_date="19700101",
        sex="M",
        study_date="20200101",
        study_time="101010",
        description="CHEST",
        accession_number="A1",
        modalities=("CT", "SR"),
        series_count=2,
        instance_count=40,
    )
    bare = StudyRecord(study_uid="1.4")
    await store.upsert(sessions, "a", [full, bare])
    got = await store.records(sessions, ["a", "b"], ["1.02.3", "1.4", "9.9"])
    assert sorted(got["a"], key=lambda r: r.study_uid) == [full, bare]
    assert got["b"] == []
    assert await store.records(sessions, [], ["1.4"]) == {}


# -- build and refresh, with an archive in memory -------------------------------------------


class DatedArchive(Archive):
    """The same without a change feed (refreshed by date windows)."""

    study_changes = None  # type: ignore[assignment]


async def test_build_then_refresh_from_the_feed(sessions: async_sessionmaker) -> None:
    archive = Archive([rec(f"1.{k}", f"P{k}") for k in range(5)])
    source = as_source(archive)
    assert await refresh(sessions, source) is None, "never built: nothing to refresh"
    done = await build(sessions, source)
    assert (done.upserted, done.removed, done.full) == (5, 0, True)
    st = await store.state(sessions, "mem")
    assert st is not None and st.complete and st.studies == 5 and st.cursor == "feed:0"
    archive.add(rec("1.9", "P9"))
    archive.add(rec("1.02", "P10"))  # a UID that cannot be asked for
    archive.changes.append("1.3")
    del archive.studies["1.3"]  # named by the feed, no longer found: deleted
    again = await refresh(sessions, source, reconcile_s=3600)
    assert again is not None and (again.upserted, again.removed, again.full) == (1, 1, False)
    uids = {r.study_uid for r in await rows(sessions, "mem")}
    assert uids == {"1.0", "1.1", "1.2", "1.4", "1.9"}
    done = await build(sessions, source)  # the full listing: the unaskable one too, 1.3 gone
    assert (done.upserted, done.removed) == (6, 0)
    archive.changes.append("1.02")
    assert (await refresh(sessions, source)) is not None
    assert "1.02" in {r.study_uid for r in await rows(sessions, "mem")}, "not found is no proof"


async def test_reconcile_lists_everything_again(sessions: async_sessionmaker) -> None:
    archive = DatedArchive([rec(f"1.{k}", f"P{k}", date="20000101") for k in range(4)])
    source = as_source(archive)
    await build(sessions, source)
    st = await store.state(sessions, "mem")
    assert st is not None and st.cursor is not None and st.cursor.startswith("date:")
    del archive.studies["1.0"]
    archive.studies["1.7"] = rec("1.7", "P7", date=utcnow().strftime("%Y%m%d"))
    done = await refresh(sessions, source, reconcile_s=3600)
    assert done is not None and not done.full and done.upserted == 1
    assert "1.0" in {r.study_uid for r in await rows(sessions, "mem")}, "no feed: not seen yet"
    await store.save_state(sessions, "mem", reconciled_at=utcnow() - timedelta(hours=2))
    done = await refresh(sessions, source, reconcile_s=3600)
    assert done is not None and done.full and done.removed == 1
    assert {r.study_uid for r in await rows(sessions, "mem")} == {"1.1", "1.2", "1.3", "1.7"}
