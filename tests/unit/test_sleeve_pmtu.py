"""PMTU discovery on a fake clock and a simulated path that silently drops big datagrams."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.sleeve.pmtu import PathMtu, Search


def run(search: Search | PathMtu, limit: int, rtt: float = 0.001, max_time: float = 30.0,
        emsgsize_above: int | None = None, start: float = 0.0,
        batches_add_up: bool = False) -> tuple[float, int]:
    """Drive the machine: probes up to ``limit`` bytes are acked after ``rtt``, the rest lost
    (with ``batches_add_up`` a batch check counts as twice its size, like nft on a veth).
    Returns (the time it finished, probes sent)."""
    now = start
    pending: list[tuple[float, int, bool]] = []
    max_time += start
    sent = 0
    while now < max_time:
        polled = search.poll(now)
        size, batch = polled if isinstance(polled, tuple) else (polled, False)
        if size is not None:
            sent += 1
            if emsgsize_above is not None and size > emsgsize_above:
                search.fail(size, now)
                continue
            if size * (2 if batch and batches_add_up else 1) <= limit:
                pending.append((now + rtt, size, batch))
        for due, acked, was_batch in [p for p in pending if p[0] <= now]:
            pending.remove((due, acked, was_batch))
            if isinstance(search, Search):
                search.ack(acked, now)
            else:
                search.ack(acked, now, was_batch)
        if isinstance(search, Search):
            done = search.done
        else:
            done = search.search is None and search.check_deadline is None
        if done:
            return now, sent
        now += 0.001
    raise AssertionError("discovery did not finish")


def test_finds_700_when_everything_above_is_lost() -> None:
    s = Search(1500, 0.0)
    took, sent = run(s, 700)
    assert s.result == 700
    assert took < 3.0 and sent < 60


def test_finds_the_route_mtu_when_nothing_is_lost() -> None:
    s = Search(1500, 0.0)
    took, sent = run(s, 10_000)
    assert s.result == 1500 and sent == 1 and took < 0.01


def test_emsgsize_fails_at_once() -> None:
    s = Search(9000, 0.0)
    took, _ = run(s, 10_000, emsgsize_above=1500)
    assert s.result == 1500 and took < 0.1


def test_floor_when_everything_is_lost() -> None:
    s = Search(1500, 0.0)
    run(s, 0)
    assert s.result == 552


def test_retries_double_from_ten_ms() -> None:
    s = Search(1500, 0.0, attempts=4)
    times = []
    now = 0.0
    while now < 1.0 and not s.done:
        if s.poll(now) is not None:
            times.append(round(now, 3))
        now = round(now + 0.001, 3)
    assert times[:4] == [0.0, 0.01, 0.03, 0.07]  # then the next candidate at 0.15
    assert abs(times[4] - 0.15) <= 0.0015 and s.candidate < 1500


@settings(max_examples=100, deadline=None)
@given(st.integers(552, 9000), st.integers(552, 9000))
def test_finds_any_threshold_exactly(route: int, limit: int) -> None:
    s = Search(route, 0.0)
    run(s, limit, max_time=60.0)
    assert s.result == max(552, min(route, limit))


def test_path_mtu_uses_the_floor_until_done_then_reruns() -> None:
    pm = PathMtu(rerun=60.0)
    assert pm.current == 552 and pm.poll(0.0) is None  # not started until the peer is heard
    pm.restart(1500, 0.0)
    assert pm.current == 552
    took, _ = run(pm, 700)
    assert pm.current == 700 and pm.take_report() == 700 and pm.take_report() is None
    assert not pm.due(took + 59.0) and pm.due(took + 60.0)
    pm.rerun_now(1500, took + 60.0)
    assert pm.current == 700  # kept while the re-run is in flight
    run(pm, 1500, start=took + 60.0)
    assert pm.current == 1500 and pm.take_report() == 1500
    pm.restart(1500, 200.0)  # the neighbour re-appeared: safe size, reported again
    assert pm.current == 552
    run(pm, 1500, start=200.0)
    assert pm.take_report() == 1500


def test_a_late_ack_still_counts() -> None:
    s = Search(1500, 0.0)
    assert s.poll(0.0) == 1500
    s.ack(1200, 0.001)  # an answer to nothing we asked about now, but evidence all the same
    assert s.lo == 1200 and s.candidate == (1200 + 1501) // 2


def test_batch_check_passes_on_an_honest_path_and_fails_where_batches_add_up() -> None:
    pm = PathMtu()
    pm.restart(1500, 0.0)
    run(pm, 700)
    assert pm.current == 700 and pm.batch_ok
    pm.restart(1500, 100.0)
    run(pm, 700, start=100.0, batches_add_up=True)
    assert pm.current == 700 and not pm.batch_ok
    assert pm.take_report() == 700
