"""The overlay gossip channel: MAC table CRDT, reports, hostile payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.errors import ProtocolError
from weave_cli.overlay import channel as ch
from weave_cli.overlay.links import PeerReport
from weave_cli.router.peer import PeerName

A, B, C = (PeerName(n) for n in (0x020000000001, 0x020000000002, 0x020000000003))
macs = st.frozensets(st.binary(min_size=6, max_size=6), max_size=5)
entries = st.dictionaries(st.sampled_from([A, B, C]),
                          st.tuples(st.integers(0, 2**64 - 1), macs), max_size=3)


def merged(*msgs: dict[PeerName, ch.Entry]) -> dict[PeerName, ch.Entry]:
    chan = ch.OverlayChannel(PeerName(0x020000000009), lambda p, r: None)
    for m in msgs:
        chan.on_broadcast(A, ch.encode_entries(m.items()))
    return chan.table


def test_codec_round_trip() -> None:
    data = {A: (5, frozenset({b"\x02" * 6, b"\x04" * 6})), B: (1, frozenset())}
    kind, content = ch.decode(ch.encode_entries(data.items()))
    assert kind == ch.ENTRIES and content == data
    kind, content = ch.decode(ch.encode_digest([(A, 7)]))
    assert kind == ch.DIGEST and content == {A: 7}
    rep = PeerReport(True, False, True)
    assert ch.decode(ch.encode_report(rep)) == (ch.REPORT, rep)


@given(entries, entries, entries)
def test_merge_is_a_join(x: dict, y: dict, z: dict) -> None:  # type: ignore[type-arg]
    # same versions with different MACs are not something owners produce; skip such inputs
    for owner in set(x) & set(y) | set(y) & set(z) | set(x) & set(z):
        vals = [d[owner] for d in (x, y, z) if owner in d]
        if len({v[0] for v in vals}) != len(vals):
            return
    assert merged(x, y) == merged(y, x)
    assert merged(merged(x, y), z) == merged(x, merged(y, z))
    assert merged(x, x) == merged(x)


@given(st.binary(max_size=200))
def test_garbage_is_refused_with_protocol_error_only(data: bytes) -> None:
    chan = ch.OverlayChannel(A, lambda p, r: None)
    for call in (chan.on_broadcast, chan.on_unicast):
        try:
            call(B, data)
        except ProtocolError:
            pass
    try:
        chan.on_gossip(B, data)
    except ProtocolError:
        pass


def test_counts_are_bounded_before_reading() -> None:
    huge = bytes([ch.ENTRIES]) + (ch.MAX_OWNERS + 1).to_bytes(2, "big")
    with pytest.raises(ProtocolError, match="at most"):
        ch.decode(huge)
    too_many_macs = bytes([ch.ENTRIES, 0, 1]) + A.to_bytes6() + bytes(8) + b"\xff\xff"
    with pytest.raises(ProtocolError):
        ch.decode(too_many_macs)
    with pytest.raises(ProtocolError, match="trailing"):
        ch.decode(ch.encode_digest([(A, 1)]) + b"x")


def test_local_entry_versions_grow_and_only_change_on_news() -> None:
    chan = ch.OverlayChannel(A, lambda p, r: None)
    first = chan.set_local([b"\x02" * 6], now_wall=100.0)
    assert first is not None
    assert chan.set_local([b"\x02" * 6], now_wall=200.0) is None
    v1 = chan.table[A][0]
    chan.set_local([b"\x04" * 6], now_wall=50.0)  # clock went back: version still grows
    assert chan.table[A][0] == v1 + 1
    # others cannot speak for us
    chan.on_broadcast(B, ch.encode_entries([(A, (2**63, frozenset()))]))
    assert chan.table[A][0] == v1 + 1


def test_anti_entropy_answers_only_what_the_other_lacks() -> None:
    a = ch.OverlayChannel(A, lambda p, r: None)
    b = ch.OverlayChannel(B, lambda p, r: None)
    a.set_local([b"\x02" * 6], 1.0)
    b.set_local([b"\x04" * 6], 1.0)
    replies, _ = a.on_gossip(B, b.digest())
    for reply in replies:
        b.on_gossip(A, reply)
    assert b.table[A] == a.table[A]
    replies, _ = a.on_gossip(B, b.digest())
    assert replies == []
    assert b.owner_of() == {b"\x02" * 6: A}


def test_reports_are_handed_over() -> None:
    got = []
    chan = ch.OverlayChannel(A, lambda p, r: got.append((p, r)))
    rep = PeerReport(True, True, False)
    chan.on_unicast(B, ch.encode_report(rep))
    assert got == [(B, rep)]
    with pytest.raises(ProtocolError):
        chan.on_unicast(B, ch.encode_digest([]))


def test_our_entry_from_a_past_life_is_outbid() -> None:
    chan = ch.OverlayChannel(A, lambda p, r: None)
    chan.set_local([b"\x02" * 6], now_wall=100.0)
    # a neighbour still holds our entry from before a restart with a clock that was ahead
    chan.on_gossip(B, ch.encode_entries([(A, (10**15, frozenset({b"\x04" * 6})))]))
    payload = chan.set_local([b"\x02" * 6], now_wall=100.0)  # same MACs, but must republish
    assert payload is not None and chan.table[A][0] == 10**15 + 1
    assert chan.set_local([b"\x02" * 6], now_wall=100.0) is None
