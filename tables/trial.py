"""Whether a user is in a trial at an instant (seed 001's `user.subscription.is_trial`), from the
subscription log the revenue section keeps (tables.revenue).

The log is replayed up to the instant only, so the answer is relative to the evaluation time
like every other value of the profile. A trial is open from its start until it ends
(converted or not), the user pays, or its end date arrives: the trial is over once the local
day `trial_end_date` begins — the same reading as the trial_expiring trigger, whose
days_remaining = trial_end_date − today is 0 on that day and which stops reminding then.
A trial with no end date stays open until an event ends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tables.revenue import RevenueConfig, RevenueState, replay


@dataclass(frozen=True)
class Trial:
    is_trial: bool
    end_day: int | None  # local day the open trial ends; None when not in trial or unknown


NO_TRIAL = Trial(False, None)


def trial_at(state: RevenueState | None, cfg: RevenueConfig | None, now: float,
             today: int) -> Trial:
    """The user's trial at instant `now` (local day `today`)."""
    if state is None or cfg is None or not state.log:
        return NO_TRIAL
    log = [e for e in state.log if e.ts <= now]
    sub = replay(RevenueState(state.first_day, log), cfg)
    if sub.status != "trial":
        return NO_TRIAL
    start = next(e for e in reversed(log)
                 if e.action == "trial_started" and e.ts == sub.trial_started_at)
    if start.end_day is not None and today >= start.end_day:
        return NO_TRIAL  # its end date came without a conversion
    return Trial(True, start.end_day)
