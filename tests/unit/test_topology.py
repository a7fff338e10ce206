"""Topology CRDT: merge rule, incarnations, routes, broadcast trees, GC, wire codec."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.errors import ProtocolError
from weave_cli.router import topology_wire as wire
from weave_cli.router.peer import PeerName
from weave_cli.router.topology import ConnSummary, PeerEntry, Topology


def n(i: int) -> PeerName:
    return PeerName(i)


def entry(i: int, links: list[int], version: int = 1, uid: int = 0, est: bool = True) -> PeerEntry:
    conns = tuple(ConnSummary(n(j), f"10.0.0.{j}:6783", i < j, est) for j in sorted(links))
    return PeerEntry(n(i), f"h{i}", uid or 1000 + i, version, i, conns)


def graph(me: int, edges: dict[int, list[int]]) -> Topology:
    topo = Topology(entry(me, edges.get(me, [])))
    topo.merge(entry(i, links) for i, links in edges.items() if i != me)
    return topo


def full_mesh(k: int) -> dict[int, list[int]]:
    return {i: [j for j in range(1, k + 1) if j != i] for i in range(1, k + 1)}


def test_newer_version_wins_and_equal_version_higher_uid_wins() -> None:
    topo = Topology(entry(1, [2]))
    assert topo.merge([entry(2, [1], version=3)]).news
    assert not topo.merge([entry(2, [], version=2)]).news
    assert not topo.merge([entry(2, [], version=3, uid=5)]).news  # lower uid
    assert topo.merge([entry(2, [], version=3, uid=99999)]).news
    assert topo.entries[n(2)].uid == 99999


def test_old_incarnation_of_ourselves_bumps_our_version() -> None:
    topo = Topology(entry(1, [2], version=2))
    result = topo.merge([entry(1, [], version=7, uid=42)])
    assert result.local_bumped and not result.news
    assert topo.local.version == 8 and topo.local.uid == 1001
    assert not topo.merge([entry(1, [], version=1, uid=42)]).local_bumped


def test_set_local_bumps_only_on_change() -> None:
    topo = Topology(entry(1, []))
    conn = ConnSummary(n(2), "10.0.0.2:6783", True)
    assert topo.set_local([conn]) is not None
    assert topo.set_local([conn]) is None
    assert topo.local.version == 2


def test_unicast_routes_need_symmetric_established_connections() -> None:
    topo = graph(1, {1: [2], 2: [1, 3], 3: [2, 4], 4: []})  # 4 does not announce 3
    assert topo.unicast_routes() == {n(2): n(2), n(3): n(2)}
    topo.merge([entry(4, [3], version=2)])
    assert topo.next_hop(n(4)) == n(2)
    topo.merge([entry(2, [1, 3], version=2, est=False)])
    assert topo.unicast_routes() == {}


def test_broadcast_trees_deliver_exactly_once_in_any_connected_graph() -> None:
    edges = {1: [2, 3], 2: [1, 3, 4], 3: [1, 2, 5], 4: [2, 5, 6], 5: [3, 4, 6], 6: [4, 5]}
    views = {i: graph(i, edges) for i in edges}
    for source in edges:
        received = [source]
        frontier = [source]
        while frontier:
            frontier = [c for p in frontier for c in views[p].broadcast_children(source)]
            received += frontier
        assert sorted(received) == sorted(edges), source


def test_full_mesh_broadcast_is_a_star_and_a_dropped_edge_is_repaired_by_one_relay() -> None:
    edges = full_mesh(6)
    assert graph(1, edges).broadcast_children(n(1)) == tuple(n(i) for i in range(2, 7))
    assert graph(2, edges).broadcast_children(n(1)) == ()
    edges[1].remove(4)
    edges[4].remove(1)
    relays = [i for i in range(2, 7) if n(4) in graph(i, edges).broadcast_children(n(1))]
    assert relays == [2]


def test_gc_removes_peers_no_longer_reachable() -> None:
    topo = graph(1, {1: [2], 2: [1, 3], 3: [2]})
    assert len(topo) == 3
    topo.set_local([])
    assert topo.gc() == [n(2), n(3)]
    assert list(topo.entries) == [n(1)]


def test_diff_gives_what_they_lack_and_wants_what_they_have_newer() -> None:
    topo = graph(1, {1: [2], 2: [1], 3: []})
    give, want = topo.diff({n(2): (1002, 1), n(3): (1003, 5), n(9): (1, 1)})
    assert sorted(e.name for e in give) == [n(1)]
    assert sorted(want) == [n(3), n(9)]


def test_peer_cap_bounds_what_we_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("weave_cli.router.topology.MAX_PEERS", 3)
    topo = Topology(entry(1, []))
    topo.merge(entry(i, []) for i in range(2, 10))
    assert len(topo) == 3


# -- codec ---------------------------------------------------------------------------------

addresses = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(1, 65535)).map(
        lambda t: f"10.{t[0]}.{t[1]}.1:{t[2]}"),
    st.just("[fd00::1]:6783"), st.just("host-a.example:6783"),
)
conn_lists = st.dictionaries(st.integers(1, 2**48 - 1), st.tuples(addresses, st.booleans(),
                                                                 st.booleans()), max_size=8)


@given(st.integers(1, 2**48 - 1), st.integers(1, 2**64 - 1), st.integers(0, 2**62 - 1),
       st.integers(0, 4095), conn_lists)
def test_entries_round_trip(name: int, uid: int, version: int, short: int, conns: dict) -> None:  # type: ignore[type-arg]
    summaries = tuple(ConnSummary(n(k), a, o, e) for k, (a, o, e) in sorted(conns.items())
                      if k != name)
    original = PeerEntry(n(name), "nick-1", uid, version, short, summaries)
    [payload] = wire.encode_entries([original, original])
    assert wire.decode(payload) == (wire.ENTRIES, [original, original])


def test_digest_and_request_round_trip() -> None:
    digest = {n(5): (7, 9), n(6): (1, 0)}
    assert wire.decode(wire.encode_digest(digest)) == (wire.DIGEST, digest)
    assert wire.decode(wire.encode_request([n(3), n(4)])) == (wire.REQUEST, [n(3), n(4)])


def test_entries_are_chunked_under_a_budget() -> None:
    entries = [entry(i, list(range(20, 60))) for i in range(1, 11)]
    chunks = wire.encode_entries(entries, budget=2000)
    assert len(chunks) > 1 and all(len(c) < 2000 + 600 for c in chunks)
    decoded = list(itertools.chain.from_iterable(wire.decode(c)[1] for c in chunks))  # type: ignore[arg-type]
    assert decoded == entries


@given(st.binary(max_size=200))
def test_garbage_never_escapes_as_anything_but_protocol_error(data: bytes) -> None:
    try:
        wire.decode(data)
    except ProtocolError:
        pass


@given(st.data())
def test_mutated_valid_payloads_raise_only_protocol_error(data: st.DataObject) -> None:
    payload = bytearray(wire.encode_entries([entry(1, [2, 3]), entry(2, [1])])[0])
    for _ in range(data.draw(st.integers(1, 4))):
        payload[data.draw(st.integers(0, len(payload) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    try:
        wire.decode(bytes(payload[:cut]))
    except ProtocolError:
        pass


def test_specific_violations_are_rejected() -> None:
    good = wire.encode_entries([entry(1, [2, 3])])[0]
    with pytest.raises(ProtocolError):
        wire.decode(good + b"x")
    with pytest.raises(ProtocolError):
        wire.decode(bytes([9, 0, 0]))
    dup = wire.encode_entries([PeerEntry(n(1), "a", 1, 1, 0, (
        ConnSummary(n(2), "1.2.3.4:1", True), ConnSummary(n(2), "1.2.3.4:2", True)))])[0]
    with pytest.raises(ProtocolError, match="connection list"):
        wire.decode(dup)
