"""Walks that yield: current values, removed users skipped, turns taken; the collector pause."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from agents import yielding
from agents.yielding import Turns, owned_users, pause_collector, resume_collector


def test_walk_reads_each_state_when_it_reaches_it() -> None:
    store: dict[bytes, bytes | None] = {b"a": b"1", b"b": b"2", b"c": b"3", b"d": None}
    parts = {b"a": 0, b"b": 1, b"c": 0, b"d": 0}

    async def walk() -> list[tuple[bytes, int, bytes]]:
        seen = []
        turns = Turns(budget=0.0)  # a turn before every user: others run in between
        async for key, part, raw in owned_users(store, {0}, parts.__getitem__, turns):
            seen.append((key, part, raw))
            store[b"c"] = b"written meanwhile"  # the agent writes a later user
        assert turns.yields == 4
        return seen

    assert asyncio.run(walk()) == [(b"a", 0, b"1"), (b"c", 0, b"written meanwhile")]


def test_walk_skips_users_removed_during_it() -> None:
    store = {b"a": b"1", b"b": b"2"}

    async def walk() -> list[bytes]:
        keys = []
        async for key, _, _ in owned_users(store, {0}, lambda _: 0, Turns(budget=0.0)):
            keys.append(key)
            store.pop(b"b", None)
        return keys

    assert asyncio.run(walk()) == [b"a"]


def test_turns_yield_only_after_the_budget() -> None:
    async def run() -> int:
        turns = Turns(budget=3600.0)
        for _ in range(1000):
            await turns.maybe()
        return turns.yields

    assert asyncio.run(run()) == 0


def test_a_background_walk_stays_away_for_the_rest_of_its_share(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock the test moves, and the sleeps the walk asks for: no timing of the machine.
    clock = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(yielding.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(yielding.asyncio, "sleep", sleep)

    async def walk(share: float) -> list[float]:
        slept.clear()
        turns = Turns(budget=0.01, share=share)
        for step in (0.004, 0.004, 0.004, 0.02):  # walked 0.012 s, then 0.02 s
            clock[0] += step
            await turns.maybe()
        return list(slept)

    assert asyncio.run(walk(0.25)) == pytest.approx([0.036, 0.06])  # 3 s away per s walked
    assert asyncio.run(walk(0.5)) == pytest.approx([0.012, 0.02])
    assert asyncio.run(walk(1.0)) == [0.0, 0.0]  # a rebuild: a bare turn, no rest
    with pytest.raises(ValueError):
        Turns(share=0.0)


class Node:
    """A cycle's member that a weak reference can watch."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_collector_is_paused_then_the_rebuilds_cycles_go_and_the_survivors_stay_frozen() -> None:
    pending = [5]
    assert gc.isenabled()
    kept = Node()  # alive throughout: the long-lived heap

    async def run() -> tuple[bool, bool, bool, bool]:
        enabled = pause_collector()
        paused = gc.isenabled()
        a, b = Node(), Node()  # garbage cycle made during the rebuild
        a.other, b.other = b, a
        cycle = weakref.ref(a)
        del a, b
        resume_collector(enabled, lambda: pending[0], 1, poll_seconds=0.01)
        gc.collect()  # as the collector would while the sinks drain: frozen, so it stays
        frozen_while_draining = cycle() is not None
        pending[0] = 0
        for _ in range(100):
            await asyncio.sleep(0.01)
            if cycle() is None:
                break
        return paused, frozen_while_draining, cycle() is None, gc.get_freeze_count() > 0

    try:
        paused, held, collected, refrozen = asyncio.run(run())
        kept_is_frozen = any(o is kept for o in gc.get_objects()) is False
    finally:
        gc.unfreeze()
        gc.enable()
    assert paused is False
    assert held  # nothing collected before the sinks drain
    assert collected  # the rebuild's cycle is freed once they have
    assert refrozen and kept_is_frozen  # what survived is frozen: full collections skip it
    assert gc.isenabled()
