"""Sync planning: what moves under each conflict strategy."""

from __future__ import annotations

from gateway.sources.base import InstanceRecord
from workers.jobs.sync_plan import extra_in, missing_after, plan_study

STUDY = "1.2.3"


def inst(k: int, series: str = "1.2.3.1", number: int | None = None) -> InstanceRecord:
    return InstanceRecord(f"1.2.3.1.{k}", series, STUDY, "1.2.840.10008.5.1.4.1.1.2", number or k)


SOURCE = [inst(1), inst(2), inst(3)]
# instance 2 disagrees (another instance number); instance 3 is missing; 9 is the destination's own
DESTINATION = [inst(1), inst(2, number=7), inst(9)]


def test_report_only_sends_what_is_missing_and_lists_conflicts() -> None:
    plan = plan_study(STUDY, SOURCE, DESTINATION, "REPORT_ONLY")
    assert [i.sop_instance_uid for i in plan.to_send] == ["1.2.3.1.3"]
    assert [i.sop_instance_uid for i in plan.conflicting] == ["1.2.3.1.2"]
    assert plan.conflict_fields == ("instance_number",)
    assert not plan.skipped


def test_skip_leaves_a_conflicting_study_untouched() -> None:
    plan = plan_study(STUDY, SOURCE, DESTINATION, "SKIP")
    assert plan.skipped and plan.to_send == ()
    assert [i.sop_instance_uid for i in plan.missing] == ["1.2.3.1.3"]


def test_skip_still_syncs_a_study_without_conflicts() -> None:
    plan = plan_study(STUDY, SOURCE, [inst(1)], "SKIP")
    assert not plan.skipped
    assert [i.sop_instance_uid for i in plan.to_send] == ["1.2.3.1.2", "1.2.3.1.3"]


def test_source_wins_resends_the_conflicting_instances() -> None:
    plan = plan_study(STUDY, SOURCE, DESTINATION, "SOURCE_WINS")
    assert sorted(i.sop_instance_uid for i in plan.to_send) == ["1.2.3.1.2", "1.2.3.1.3"]


def test_whole_series_is_named_when_every_instance_is_missing() -> None:
    other = [inst(4, series="1.2.3.2"), inst(5, series="1.2.3.2")]
    plan = plan_study(STUDY, SOURCE + other, SOURCE, "REPORT_ONLY")
    assert plan.whole_series == ("1.2.3.2",)


def test_verification_counts() -> None:
    assert missing_after(SOURCE, DESTINATION) == 1
    assert extra_in(SOURCE, DESTINATION) == 1
    assert missing_after(SOURCE, SOURCE) == 0 and extra_in(SOURCE, SOURCE) == 0
