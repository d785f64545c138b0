"""Walking every user state of this worker without stalling it.

The periodic sweeps (profiles, triggers, data lifecycle) visit every user. Done in one go, a
sweep over a few hundred thousand states holds the event loop for seconds: events wait, the
lag spikes and /metrics stops answering (soak run 2 in docs/reliability.md). So the timers walk
in steps and let the loop run between them. Each state is read when it is visited, not from a
snapshot taken before: between steps the agent may have written a newer one, and visiting a
stale copy would write it back over the newer state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Container, Iterator, MutableMapping

from streams.envelope import split_user_key

STEP = 500  # states per step: a few milliseconds of work


def owned_users(store: MutableMapping[bytes, bytes], owned: Container[int],
                partition_of: Callable[[bytes], int],
                apps: Container[str]) -> Iterator[tuple[bytes, int, str, str, bytes]]:
    """(key, partition, app, user_id, raw state) of every stored user of `apps` in the
    `owned` partitions, in one go (for the recovery rebuild, which runs before any event)."""
    for key in list(store):
        found = _visit(store, key, owned, partition_of, apps)
        if found is not None:
            yield found


async def owned_users_in_steps(
    store: MutableMapping[bytes, bytes], owned: Container[int],
    partition_of: Callable[[bytes], int], apps: Container[str], step: int = STEP,
) -> AsyncIterator[tuple[bytes, int, str, str, bytes]]:
    """The same, yielding to the event loop every `step` states. The caller must not await
    between receiving a state and writing it back."""
    for i, key in enumerate(list(store)):
        if i and i % step == 0:
            await asyncio.sleep(0)
        found = _visit(store, key, owned, partition_of, apps)
        if found is not None:
            yield found


def _visit(store: MutableMapping[bytes, bytes], key: bytes, owned: Container[int],
           partition_of: Callable[[bytes], int],
           apps: Container[str]) -> tuple[bytes, int, str, str, bytes] | None:
    raw = store.get(key)
    if not raw:
        return None
    app, user_id = split_user_key(key)
    if app not in apps:
        return None
    part = partition_of(key)
    if part not in owned:
        return None
    return key, part, app, user_id, raw
