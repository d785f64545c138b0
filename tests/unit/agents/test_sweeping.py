"""Sweeps walk the store in steps: other tasks run in between, and each state is read when it
is visited, so a newer state written meanwhile is the one the sweep sees."""

from __future__ import annotations

import asyncio

from agents.sweeping import owned_users, owned_users_in_steps
from streams.envelope import user_key


def store_of(n: int) -> dict[bytes, bytes]:
    store = {user_key("onepercent", f"u{i}"): b"v0" for i in range(n)}
    store[user_key("ton18", "t1")] = b"v0"  # another app
    store[user_key("onepercent", "gone")] = b""  # a deleted state
    return store


def partition_of(key: bytes) -> int:
    return 1 if key.endswith(b"u3") else 0


def test_only_stored_users_of_the_apps_in_owned_partitions() -> None:
    found = list(owned_users(store_of(5), {0}, partition_of, {"onepercent"}))
    assert sorted(user for _, _, _, user, _ in found) == ["u0", "u1", "u2", "u4"]
    assert {(part, app, raw) for _, part, app, _, raw in found} == {(0, "onepercent", b"v0")}


def test_steps_let_other_tasks_run_and_states_are_read_when_visited() -> None:
    async def scenario() -> tuple[list[tuple[str, bytes]], list[int]]:
        store = store_of(10)
        visits: list[tuple[str, bytes]] = []
        others: list[int] = []

        async def writer() -> None:
            # Runs only when the sweep yields: after its first step of 4 states.
            others.append(len(visits))
            store[user_key("onepercent", "u9")] = b"v1"
            del store[user_key("onepercent", "u8")]

        task = asyncio.get_running_loop().create_task(writer())
        async for _, _, _, user, raw in owned_users_in_steps(store, {0, 1}, partition_of,
                                                             {"onepercent"}, step=4):
            visits.append((user, raw))
        await task
        return visits, others

    visits, others = asyncio.run(scenario())
    assert others == [4]  # the other task ran after the first step, before the sweep ended
    assert ("u9", b"v1") in visits  # the newer state, not the one stored when it began
    assert "u8" not in {user for user, _ in visits}  # deleted meanwhile: not visited
    assert len(visits) == 9
