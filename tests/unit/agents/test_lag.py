from agents.lag import lag_of


def test_lag_is_end_minus_committed_or_earliest_when_never_committed() -> None:
    ends = {"a": 120, "b": 50, "c": 7}
    committed = {"a": 100, "b": None, "c": 9}  # c: end fetched before a newer commit
    assert lag_of(ends, committed, {"b": 10}) == {"a": 20, "b": 40, "c": 0}
