"""Connection targets: parsing, backoff, states, discovery membership."""

from __future__ import annotations

import math
import random

import pytest

from weave_cli.router.peer import PeerName
from weave_cli.router.targets import TargetSet, parse_peer


@pytest.mark.parametrize(("spec", "expected"), [
    ("10.0.0.1", ("10.0.0.1", 6783)),
    ("10.0.0.1:7000", ("10.0.0.1", 7000)),
    ("host-a", ("host-a", 6783)),
    ("[fd00::1]:7000", ("fd00::1", 7000)),
    ("[fd00::1]", ("fd00::1", 6783)),
    ("fd00::1", ("fd00::1", 6783)),
])
def test_parse_peer(spec: str, expected: tuple[str, int]) -> None:
    assert parse_peer(spec, 6783) == expected


@pytest.mark.parametrize("spec", ["", "a:b", "a:0", "a:70000", "[::1]x"])
def test_parse_peer_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_peer(spec, 6783)


def make() -> TargetSet:
    return TargetSet(6783, retry_initial=2.0, retry_max=60.0)


def test_direct_targets_keep_the_operator_spelling_and_order() -> None:
    ts = make()
    assert ts.add_direct(["10.0.0.2", "10.0.0.1:6783", "bad:port"], now=0)
    assert not ts.add_direct(["10.0.0.2"], now=0)
    assert ts.direct() == ("10.0.0.2", "10.0.0.1:6783")
    assert ts.remove_direct(["10.0.0.2:6783"])
    assert ts.direct() == ("10.0.0.1:6783",)


def test_backoff_grows_by_half_and_is_capped() -> None:
    ts = make()
    ts.add_direct(["10.0.0.2"], now=0)
    rng = random.Random(1)
    key = "10.0.0.2:6783"
    intervals = []
    now = 0.0
    for _ in range(15):
        [target] = ts.due(now + 1000)
        ts.attempting(key)
        intervals.append(target.interval)
        ts.failed(key, "dial tcp 10.0.0.2:6783: connection refused", now, rng)
        assert now + target.interval / 1.5 / 2 <= target.try_after or target.interval == 60
        now = target.try_after
    assert intervals[:3] == [2.0, 3.0, 4.5] and intervals[-1] == 60.0


def test_states_and_info() -> None:
    ts = make()
    ts.add_direct(["10.0.0.2"], now=0)
    [target] = ts.due(0)
    ts.attempting(target.key)
    assert (target.state(), target.info(0, None)) == ("connecting", "")
    ts.failed(target.key, "boom", 0, random.Random(0))
    assert target.state() == "failed"
    assert target.info(0, 1_700_000_000.0).startswith("boom, retry: 2023-11-14T22:1")
    ts.attempting(target.key)
    assert (target.state(), target.info(5, None)) == ("retrying", "boom")
    ts.never(target.key, "cannot connect to ourself")
    assert target.info(5, None) == "cannot connect to ourself, retry: never"
    assert ts.due(1e12) == [] and ts.next_deadline() is None
    assert math.isinf(target.try_after)


def test_a_long_lived_connection_is_retried_at_once() -> None:
    ts = make()
    ts.add_direct(["10.0.0.2"], now=0)
    key = "10.0.0.2:6783"
    ts.attempting(key)
    ts.connected(key, PeerName(2), now=1)
    ts.peer_lost(PeerName(2), "connection reset", now=500, rng=random.Random(0))
    assert [t.key for t in ts.due(500)] == [key]


def test_discovered_targets_follow_the_discovered_set() -> None:
    ts = make()
    ts.add_direct(["10.0.0.2"], now=0)
    ts.set_discovered({"10.0.0.2:6783", "10.0.0.3:6783", "10.0.0.4:6783"}, now=0)
    ts.attempting("10.0.0.3:6783")
    ts.set_discovered(set(), now=1)
    assert sorted(t.key for t in ts) == ["10.0.0.2:6783", "10.0.0.3:6783"]
    assert ts.direct() == ("10.0.0.2",)
