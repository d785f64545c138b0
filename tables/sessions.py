"""Session lengths for the live duration histogram (seed 000 "session duration", seed 004).

A user's newest session is over once an event starts a later one (the plan's session gap has
passed). Exact session counts stay in the per-user state; this only reports lengths as sessions
close, in arrival order: a late event that later stretches a closed session is not re-counted.
"""

from __future__ import annotations

from tables.activity import UserState


def newest_session(state: UserState) -> tuple[float, float] | None:
    """(start, end) of the user's newest session, before an event is applied."""
    if not state.sessions:
        return None
    newest = state.sessions[-1]
    return newest.start, newest.end


def closed_length(before: tuple[float, float] | None, state: UserState) -> float | None:
    """Seconds of the session `before` if the event just applied started a later one."""
    if before is None or not state.sessions or state.sessions[-1].start <= before[1]:
        return None
    return before[1] - before[0]
