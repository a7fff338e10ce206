"""The sleeve's datagram codec: headers, fragmentation and the bounded reassembler, and the
batch header blocks (``batch``) that stand in for per-datagram work."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.sleeve import batch, wire

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")


def test_header_round_trip() -> None:
    dgs = wire.fragment(b"x" * 3000, 1000, A, B, 7, ttl=9)
    assert [len(d) for d in dgs] == [1028, 1028, 1028]
    heads = [wire.parse(d) for d in dgs]
    assert heads == [wire.Header(wire.DATA, 9, A, B, 7, off, 3000) for off in (0, 1000, 2000)]
    assert wire.HEADER_SIZE == 28 and wire.FRAME_OVERHEAD == 66


def test_control_messages_round_trip() -> None:
    assert wire.parse(wire.heartbeat(A, B)) == wire.Header(wire.HEARTBEAT, 1, A, B, 0, 0, 0)
    probe = wire.probe(A, B, 5, 700)
    assert len(probe) + wire.IP_UDP_OVERHEAD == 700
    assert wire.parse(probe) == wire.Header(wire.PROBE, 1, A, B, 5, 0, 700)
    assert wire.parse(wire.probe_ack(B, A, 5, 700)) == wire.Header(wire.PROBE_ACK, 1, B, A, 5,
                                                                   0, 700)
    assert wire.parse(probe[:-1]) is None  # a probe must be exactly the size it claims
    assert wire.parse(wire.heartbeat(A, B) + b"x") is None


def test_mtu_arithmetic() -> None:
    assert wire.payload_capacity(1500) == 1444
    assert wire.ethernet_mtu(1500) == 1434  # + vnet header 10 + sleeve 28 + UDP/IP 28
    assert wire.ethernet_mtu(700) == 634


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_raises(data: bytes) -> None:
    head = wire.parse(data)
    assert head is None or head.kind in wire.KINDS


@settings(deadline=None)
@given(st.binary(min_size=28, max_size=28), st.binary(max_size=64))
def test_parse_of_any_header_never_raises(head: bytes, body: bytes) -> None:
    wire.parse(head + body)


def _pieces(frame: bytes, chunk: int, seq: int = 1) -> list[wire.Header | None]:
    return [wire.parse(d) for d in wire.fragment(frame, chunk, A, B, seq)]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=5000), st.integers(1, 1500), st.randoms(),
       st.integers(0, 5))
def test_any_split_reassembles_in_any_order_with_duplicates(
    frame: bytes, chunk: int, rnd: random.Random, dups: int
) -> None:
    dgs = wire.fragment(frame, chunk, A, B, 42)
    dgs += [rnd.choice(dgs) for _ in range(dups)]
    rnd.shuffle(dgs)
    r = wire.Reassembler()
    done = []
    for d in dgs:
        head = wire.parse(d)
        assert head is not None
        if head.offset == 0 and len(d) - 28 == head.total:
            done.append(d[28:])
            continue
        got = r.add(head.src, head.seq, head.offset, head.total, d[28:], 0.0)
        if got is not None:
            done.append(bytes(got))
    assert done[0] == frame
    assert all(d == frame for d in done)  # a late duplicate may at most start a new partial


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=2, max_size=4000), st.integers(2, 900), st.integers(1, 300),
       st.randoms())
def test_a_relay_may_split_pieces_further(frame: bytes, chunk: int, sub: int,
                                          rnd: random.Random) -> None:
    pieces = []
    for d in wire.fragment(frame, chunk, A, B, 3):
        head = wire.parse(d)
        assert head is not None
        body = d[28:]
        out = bytearray(28 + sub)
        for start in range(0, len(body), sub):
            used = wire.fragment_into(out, memoryview(body)[start:], head.offset + start,
                                      head.total, sub, 5, A, B, 3, max_segments=1)
            pieces.append(bytes(out[: 28 + used]))
    rnd.shuffle(pieces)
    r = wire.Reassembler()
    results = []
    for p in pieces:
        head = wire.parse(p)
        assert head is not None
        got = r.add(A, head.seq, head.offset, head.total, p[28:], 0.0)
        if got is not None:
            results.append(bytes(got))
    if len(pieces) > 1 or len(frame) > sub:
        assert results == [frame]


def test_overlapping_piece_is_ignored() -> None:
    r = wire.Reassembler()
    assert r.add(A, 1, 0, 10, b"aaaaa", 0.0) is None
    assert r.add(A, 1, 3, 10, b"bbbbb", 0.0) is None  # overlaps [0, 5): dropped
    assert r.add(A, 1, 5, 10, b"ccccc", 0.0) == bytearray(b"aaaaaccccc")
    assert r.pending() == 0 and r.total_bytes == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([A, B, b"\x01" * 6]), st.integers(0, 2**32 - 1),
                          st.integers(-5, 70000), st.integers(-5, 70000),
                          st.integers(0, 3000)), max_size=300))
def test_hostile_pieces_stay_within_bounds(pieces: list[tuple[bytes, int, int, int, int]]
                                           ) -> None:
    r = wire.Reassembler(max_partials=8, max_bytes=200_000, max_total_bytes=300_000, timeout=1)
    for i, (src, seq, off, total, n) in enumerate(pieces):
        r.add(src, seq % 16, off, total, bytes(n), i * 0.01)
        assert r.total_bytes <= 300_000
        for parts in r._sources.values():
            assert len(parts) <= 8
            assert sum(len(p.buf) for p in parts.values()) <= 200_000
    r.expire(10_000.0)
    assert r.pending() == 0 and r.total_bytes == 0


def test_expiry_and_eviction_count_drops() -> None:
    r = wire.Reassembler(max_partials=2, timeout=1.0)
    for seq in range(3):
        r.add(A, seq, 0, 100, b"x", 0.0)
    assert r.pending() == 2 and r.dropped == 1  # the oldest went
    r.add(B, 9, 0, 100, b"x", 0.9)
    r.expire(1.5)
    assert r.pending() == 1 and r.dropped == 3
    assert r.add(A, 1, 0, 0, b"", 0.0) is None and r.dropped == 4


# --- batch header blocks -----------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.integers(1, 20000), st.integers(64, 1500), st.integers(0, 2**32 - 1))
def test_block_equals_per_datagram_headers(n: int, cap: int, seq: int) -> None:
    frame = bytes(n)
    dgs = wire.fragment(frame, cap, A, B, seq)
    common = batch.common_header(wire.DEFAULT_TTL, A, B, seq, n)
    assert batch.block(common, cap, 0, len(dgs)) == b"".join(d[:28] for d in dgs)
    if len(dgs) > 2:
        assert batch.block(common, cap, 1, 2) == dgs[1][:28] + dgs[2][:28]


def _run(frame: bytes, cap: int, first: int, count: int) -> bytes:
    return b"".join(wire.fragment(frame, cap, A, B, 77)[first : first + count])


def test_layout_accepts_one_frames_run() -> None:
    frame = bytes(range(256)) * 40
    cap = 1000
    run = _run(frame, cap, 3, 5)
    layout = batch.Layout(cap + 28, 5)
    head = layout.parse(run, len(run))
    assert head == wire.Header(wire.DATA, wire.DEFAULT_TTL, A, B, 77, 3000, len(frame))
    bodies = layout.bodies(memoryview(run)) + (memoryview(run)[4 * 1028 + 28 :],)
    assert b"".join(bodies) == frame[3000:8000]
    tail = _run(frame, cap, 8, 3)  # the frame's last pieces: the last is shorter
    assert batch.Layout(cap + 28, 3).parse(tail, len(tail)) is not None


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 8), st.data())
def test_layout_rejects_any_tampered_header(count: int, data: st.DataObject) -> None:
    frame = bytes(5000)
    cap = 500
    run = bytearray(_run(frame, cap, 0, count))
    i = data.draw(st.integers(0, count - 1))
    byte = data.draw(st.integers(0, 27))
    run[i * (cap + 28) + byte] ^= data.draw(st.integers(1, 255))
    assert batch.Layout(cap + 28, count).parse(run, len(run)) is None


def test_layout_rejects_two_frames_in_one_batch() -> None:
    one = wire.fragment(bytes(1000), 500, A, B, 1)
    two = wire.fragment(bytes(1000), 500, A, B, 2)
    run = one[1] + two[0]
    assert batch.Layout(528, 2).parse(run, len(run)) is None
