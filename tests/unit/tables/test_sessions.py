from tables.activity import Session, UserState
from tables.sessions import closed_length, newest_session


def state(*spans: tuple[float, float]) -> UserState:
    return UserState(sessions=[Session(start, end, 0) for start, end in spans])


def test_a_later_session_closes_the_newest_one() -> None:
    before = newest_session(state((0, 10), (100, 400)))
    assert before == (100, 400)
    assert closed_length(before, state((0, 10), (100, 400), (5000, 5000))) == 300


def test_extending_or_late_sessions_close_nothing() -> None:
    before = newest_session(state((100, 400)))
    assert closed_length(before, state((100, 900))) is None  # extended
    assert closed_length(before, state((-9000, -9000), (100, 400))) is None  # a late one
    assert closed_length(None, state((100, 100))) is None  # the first session
    assert newest_session(UserState()) is None
