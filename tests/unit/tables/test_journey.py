"""Seed 001's 30-day journey as onepercent's plan configures it (windows 0-3, 4-7, 8-14, 22-30;
goals: 3 habits, 2 AI-coach messages, 3 journal entries (the seed's), 5 habits), hand-computed:
windows, late events, events after a window, a registration day that moves earlier, and
completion_rate = completed / started milestones."""

from __future__ import annotations

import msgspec
import pytest

from streams.plan import load_plans
from tables.journey import Goal, JourneyConfig, JourneyCounts, Milestone, evaluate, observe

PLAN = load_plans()["onepercent"]
assert PLAN.journey is not None
CFG: JourneyConfig = PLAN.journey
R = 20_000  # registration day


def counts_of(events: list[tuple[str, int]], reg: int | None = R) -> JourneyCounts | None:
    counts = None
    for name, day in events:
        counts = observe(counts, CFG, name, day, reg)
    return counts


def test_the_plan_holds_the_seed_milestones() -> None:
    assert [(m.id, m.title, m.days) for m in CFG.milestones] == [
        (0, "Первые шаги", (0, 3)), (1, "Исследователь", (4, 7)), (2, "Развитие", (8, 14)),
        (3, "Итоги месяца", (22, 30))]
    seeds = CFG.milestones[2]
    assert (seeds.goal.events, seeds.goal.count, seeds.xp_bonus, seeds.description) == (
        ["journal_entry"], 3, 50, "Заполни дневник 3 раза")


def test_the_seed_api_example_day_12() -> None:
    """API 2's example: lifecycle_day 12, milestones 0 and 1 done, «Развитие» current with
    progress 1 of 3 (+50 XP)."""
    counts = counts_of([("habit_completed", R), ("habit_completed", R + 1),
                        ("habit_completed", R + 3), ("ai_coach_message", R + 5),
                        ("ai_coach_message", R + 7), ("journal_entry", R + 9)])
    j = evaluate(counts, CFG, R, R + 12)
    assert j.current_milestone == 2
    assert j.completed_milestones == [0, 1]
    assert j.next_milestone == {"id": 2, "title": "Развитие",
                                "description": "Заполни дневник 3 раза", "xp_bonus": 50,
                                "progress": 1, "target": 3}
    assert j.completion_rate == round(2 / 3, 4) == 0.6667  # three windows have started


def test_events_outside_a_window_do_not_count() -> None:
    # Two habits inside 0-3, one on day 4 (milestone 1's window, whose goal is the AI coach).
    counts = counts_of([("habit_completed", R + 2), ("habit_completed", R + 3),
                        ("habit_completed", R + 4), ("ai_coach_message", R + 3)])
    j = evaluate(counts, CFG, R, R + 5)
    assert j.completed_milestones == []
    assert j.current_milestone == 1
    # Milestone 0's window closed at day 3: the next goal is milestone 1's, nothing yet (the
    # AI message on day 3 was before its window).
    assert j.next_milestone is not None
    assert (j.next_milestone["id"], j.next_milestone["progress"]) == (1, 0)
    assert j.completion_rate == 0.0


def test_a_late_event_inside_a_window_completes_it_after_the_window_closed() -> None:
    counts = counts_of([("journal_entry", R + 8), ("journal_entry", R + 14)])
    assert evaluate(counts, CFG, R, R + 16).completed_milestones == []
    counts = observe(counts, CFG, "journal_entry", R + 15, R)  # after the window: no
    assert evaluate(counts, CFG, R, R + 16).completed_milestones == []
    counts = observe(counts, CFG, "journal_entry", R + 10, R)  # late, inside: yes
    j = evaluate(counts, CFG, R, R + 16)
    assert j.completed_milestones == [2]
    assert j.completion_rate == round(1 / 3, 4)


def test_events_after_the_evaluation_day_do_not_count_yet() -> None:
    counts = counts_of([("habit_completed", R), ("habit_completed", R + 1),
                        ("habit_completed", R + 2)])
    assert evaluate(counts, CFG, R, R + 1).completed_milestones == []
    assert evaluate(counts, CFG, R, R + 2).completed_milestones == [0]


@pytest.mark.parametrize("lifecycle,current,started", [
    (0, 0, 1), (3, 0, 1), (4, 1, 2), (14, 2, 3), (15, 3, 3), (21, 3, 3), (22, 3, 4),
    (30, 3, 4), (31, None, 4)])
def test_current_milestone_and_started_windows(lifecycle: int, current: int | None,
                                               started: int) -> None:
    """The gap 15-21 points at the next milestone; after day 30 the journey is over."""
    counts = counts_of([("habit_completed", R)] * 3)  # milestone 0 done on the first day
    j = evaluate(counts, CFG, R, R + lifecycle)
    assert j.current_milestone == current
    assert j.completed_milestones == [0]
    assert j.completion_rate == round(1 / started, 4)


def test_next_milestone_skips_closed_windows_and_ends_with_the_journey() -> None:
    j = evaluate(None, CFG, R, R + 18)
    assert j.next_milestone is not None and j.next_milestone["id"] == 3
    assert evaluate(None, CFG, R, R + 31).next_milestone is None
    assert evaluate(None, CFG, R, R + 31).completion_rate == 0.0


def test_completion_rate_is_zero_before_the_first_window_starts() -> None:
    later = JourneyConfig([Milestone(5, "later", (2, 4), Goal(["journal_entry"], 1))])
    assert evaluate(None, later, R, R + 1).completion_rate == 0.0
    assert evaluate(None, later, R, R + 1).current_milestone == 5


def test_an_earlier_registration_day_shifts_every_window() -> None:
    """A late first session moves registration two days back: the habit of day R+3 leaves
    milestone 0's window; state kept per day stays exact."""
    counts = counts_of([("habit_completed", R + 1), ("habit_completed", R + 2),
                        ("habit_completed", R + 3)])
    assert evaluate(counts, CFG, R, R + 5).completed_milestones == [0]
    counts = observe(counts, CFG, "session_start", R - 2, R - 2)  # not a goal event: no-op
    j = evaluate(counts, CFG, R - 2, R + 5)
    assert j.completed_milestones == []
    assert j.next_milestone is not None and j.next_milestone["id"] == 1


def test_state_keeps_only_days_that_can_still_count() -> None:
    counts = counts_of([("habit_completed", R + 29), ("habit_completed", R + 31),
                        ("feature_used", R + 1)])
    assert counts == {R + 29: [1, 0, 0, 1]}  # day 31 is past the last window
    counts = observe(counts, CFG, "journal_entry", R + 9, R - 2)  # registration moved back
    assert counts == {R + 9: [0, 0, 1, 0]}  # R+29 is now lifecycle day 31
    unknown = counts_of([("habit_completed", R + 40)], reg=None)  # no registration day yet
    assert unknown == {R + 40: [1, 0, 0, 1]}


def test_counts_survive_the_state_encoding() -> None:
    counts = counts_of([("habit_completed", R), ("journal_entry", R + 9)])
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(counts), type=dict[int, list[int]])
    assert decoded == counts
