"""The data path and the neighbour table with a fake UDP socket and a SEQPACKET pair as the
TAP: forwarding decisions, the batched paths against the one-by-one paths, relaying with
TTL, heartbeats and probes, and garbage that must be counted, never raised."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.sleeve import wire
from weave_cli.sleeve.control import Heard, Pmtu, SleeveConfig
from weave_cli.sleeve.engine import Datapath
from weave_cli.sleeve.links import HEARD_EVERY, LinkTable, peer_bytes
from weave_cli.sleeve.tap import F_NEEDS_CSUM, GSO_TCPV4, PLAIN_VNET, vnet_header

P1, P2, P3, P4 = (f"02:00:00:00:00:0{i}" for i in range(1, 5))
B1, B2, B3 = peer_bytes(P1), peer_bytes(P2), peer_bytes(P3)
ADDR2, ADDR3 = ("198.18.0.2", 6783), ("198.18.0.3", 6783)
MAC3 = "02:aa:00:00:00:03"
MAC4 = "02:aa:00:00:00:04"


class FakeSock:
    """Records sends datagram by datagram (splitting UDP_SEGMENT sends); serves ``inbox``."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.calls = 0
        self.inbox: list[tuple[bytes, int, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.calls += 1
        self.sent.append((bytes(data), addr))
        return len(data)

    def sendmsg(self, parts: list[memoryview], cmsg: list[tuple[int, int, bytes]], flags: int,
                addr: tuple[str, int]) -> int:
        self.calls += 1
        data = b"".join(parts)
        seg = struct.unpack("H", cmsg[0][2])[0] if cmsg else len(data)
        for pos in range(0, len(data), seg):
            self.sent.append((data[pos : pos + seg], addr))
        return len(data)

    def recvmsg_into(self, bufs: list[memoryview], ancsize: int
                     ) -> tuple[int, list[tuple[int, int, bytes]], int, tuple[str, int]]:
        if not self.inbox:
            raise BlockingIOError
        data, seg, addr = self.inbox.pop(0)
        bufs[0][: len(data)] = data
        anc = [(17, 104, struct.pack("i", seg))] if seg else []
        return len(data), anc, 0, addr


@pytest.fixture
def tap() -> Iterator[tuple[int, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.settimeout(0)
    yield ours.fileno(), theirs
    ours.close()
    theirs.close()


def make(local: str, tap_fd: int, neighbours: dict[str, tuple[str, int]] | None = None,
         routes: dict[str, str] | None = None, sleeve: set[str] | None = None,
         macs: dict[str, str] | None = None) -> tuple[Datapath, FakeSock]:
    sock = FakeSock()
    dp = Datapath(tap_fd, sock, LinkTable(lambda addr: 1500))  # type: ignore[arg-type]
    dp.configure(SleeveConfig(local=local, neighbours=neighbours or {}, routes=routes or {},
                              sleeve_peers=frozenset(sleeve or ()), macs=macs or {}))
    return dp, sock


def frame(dst_mac: str, size: int, vnet: bytes = PLAIN_VNET) -> bytes:
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("02bb00000001") + b"\x08\x00"
    return vnet + eth + bytes(i % 251 for i in range(size - 14))


def received(theirs: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(theirs.recv(1 << 17))
        except BlockingIOError:
            return out


def test_unicast_broadcast_and_not_sleeve(tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    dp, sock = make(P1, fd, {P2: ADDR2}, {P2: P2, P3: P2, P4: P2}, {P2, P3},
                    {MAC3: P3, MAC4: P4})
    theirs.send(frame(MAC3, 100))
    theirs.send(frame("ff:ff:ff:ff:ff:ff", 60))
    theirs.send(frame(MAC4, 100))  # behind P4, which the sleeve does not carry
    theirs.send(frame("02:cc:00:00:00:09", 60))  # unknown: flooded like a broadcast
    assert dp.drain_tap(64) is False
    heads = [(wire.parse(d), a) for d, a in sock.sent]
    assert [(h.dst, a) for h, a in heads if h] == [(B3, ADDR2), (B2, ADDR2), (B3, ADDR2),
                                                   (B2, ADDR2), (B3, ADDR2)]
    assert dp.not_sleeve == 1 and dp.tap_rx == 4


def deliver(dp: Datapath, datagrams: list[bytes], batch: bool, addr: tuple[str, int] = ADDR2
            ) -> None:
    """Hand datagrams to the receiver, as one GRO batch per equal-size run or one by one."""
    sock = dp.sock
    assert isinstance(sock, FakeSock)
    if not batch:
        sock.inbox += [(d, 0, addr) for d in datagrams]
    else:  # like GRO: equal sizes, a shorter one ends the batch, at most 64
        groups: list[list[bytes]] = []
        cur: list[bytes] = []
        for d in datagrams:
            if cur and (len(d) > len(cur[0]) or len(cur) == 64
                        or (len(cur) + 1) * len(cur[0]) > 65535):
                groups.append(cur)
                cur = []
            cur.append(d)
            if len(d) < len(cur[0]):
                groups.append(cur)
                cur = []
        groups += [cur] if cur else []
        sock.inbox += [(b"".join(g), len(g[0]) if len(g) > 1 else 0, addr) for g in groups]
    dp.drain_udp(64, 0.0)


@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("size", [60, 1434, 1435, 5000, 65000])
def test_frames_cross_intact(tap: tuple[int, socket.socket], batch: bool, size: int) -> None:
    fd, theirs = tap
    tx, txsock = make(P1, fd, {P2: ADDR2}, {P2: P2}, {P2})
    tx.links.links[B2].cap, tx.links.links[B2].gso = 1444, True
    vnet = vnet_header(F_NEEDS_CSUM, GSO_TCPV4, 54, 1400, 34, 16) if size > 1500 else PLAIN_VNET
    original = frame("02:dd:00:00:00:02", size, vnet)
    theirs.send(original)
    tx.drain_tap(1)
    assert size < 1500 or txsock.calls <= 2  # a super-packet costs one or two sends
    rx, _ = make(P2, fd, {P1: ("198.18.0.1", 6783)}, {P1: P1}, {P1})
    one_by_one: list[int] = []
    slow = rx._datagram

    def spy(pos: int, end: int, addr: tuple[str, int], now: float) -> None:
        one_by_one.append(pos)
        slow(pos, end, addr, now)

    rx._datagram = spy  # type: ignore[method-assign]
    deliver(rx, [d for d, _ in txsock.sent], batch)
    assert received(theirs) == [original]
    assert rx.tap_tx == 1 and rx.rx_bad == 0 and rx.reasm.pending() == 0
    if batch and len(txsock.sent) > 1:
        assert not one_by_one  # the batched path took every GRO batch whole


def test_relay_decrements_ttl_and_drops_at_one(tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    mid, sock = make(P2, fd, {P1: ("198.18.0.1", 6783), P3: ADDR3}, {P1: P1, P3: P3},
                     {P1, P3})
    mid.links.links[B3].cap, mid.links.links[B3].gso = 1444, True
    dgs = wire.fragment(frame(MAC3, 3000), 1444, B1, B3, 9, ttl=5)
    deliver(mid, dgs, batch=True)
    assert [(wire.parse(d).ttl, a) for d, a in sock.sent] == [(4, ADDR3)] * 3  # type: ignore
    sock.sent.clear()
    deliver(mid, wire.fragment(frame(MAC3, 100), 1444, B1, B3, 10, ttl=1), batch=False)
    assert sock.sent == [] and mid.ttl_expired == 1
    deliver(mid, wire.fragment(frame(MAC3, 100), 1444, B1, peer_bytes(P4), 11), batch=False)
    assert mid.no_route == 1 and received(theirs) == []


def test_relay_resplits_for_a_narrower_link(tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    mid, sock = make(P2, fd, {P1: ("198.18.0.1", 6783), P3: ADDR3}, {P1: P1, P3: P3},
                     {P1, P3})
    mid.links.links[B3].cap = 600
    original = frame(MAC3, 3000)
    deliver(mid, wire.fragment(original, 1444, B1, B3, 9), batch=True)
    assert all(len(d) <= 628 for d, _ in sock.sent)
    end, _ = make(P3, fd, {P2: ADDR2}, {P1: P2, P2: P2}, {P1, P2})
    deliver(end, [d for d, _ in sock.sent], batch=False)
    assert received(theirs) == [original]


def test_unknown_sources_and_bad_vnet_headers(tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    rx, _ = make(P2, fd, {P1: ("198.18.0.1", 6783)}, {P1: P1}, {P1})
    deliver(rx, wire.fragment(frame(MAC3, 100), 1444, peer_bytes(P4), B2, 1), batch=False)
    assert rx.rx_unknown == 1
    bad = vnet_header(0x40) + frame(MAC3, 100)[10:]
    deliver(rx, wire.fragment(bad, 1444, B1, B2, 2), batch=False)
    short_csum = vnet_header(F_NEEDS_CSUM, 0, 0, 0, 90, 16) + frame(MAC3, 100)[10:]
    deliver(rx, wire.fragment(short_csum, 1444, B1, B2, 3), batch=False)
    assert rx.tap_tx_bad == 2 and received(theirs) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=3000), st.integers(0, 3000)), max_size=10))
def test_garbage_is_counted_never_raised(batches: list[tuple[bytes, int]]) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        a.setblocking(False)
        rx, sock = make(P2, a.fileno(), {P1: ("198.18.0.1", 6783)}, {P1: P1, P3: P1}, {P1})
        sock.inbox = [(data, seg, ("198.18.0.1", 6783)) for data, seg in batches]
        rx.drain_udp(64, 0.0)
        rx.drain_udp(64, 1.0)
        assert not sock.inbox
    finally:
        a.close()
        b.close()


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.integers(0, 2000), st.integers(0, 27),
       st.integers(1, 255))
def test_tampered_real_datagrams_never_raise(body: bytes, seg: int, where: int, flip: int
                                             ) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        a.setblocking(False)
        rx, sock = make(P2, a.fileno(), {P1: ("198.18.0.1", 6783)}, {P1: P1}, {P1})
        data = bytearray(b"".join(wire.fragment(body, 500, B1, B2, 1)))
        data[where] ^= flip
        sock.inbox = [(bytes(data), seg, ("198.18.0.1", 6783))]
        rx.drain_udp(64, 0.0)
    finally:
        a.close()
        b.close()


def test_heartbeats_teach_addresses_and_raise_heard() -> None:
    lt = LinkTable(lambda addr: 1500)
    lt.configure(B1, {B2: ADDR2})
    out = lt.tick(0.0)
    assert [(o.data, o.link.addr) for o in out] == [(wire.heartbeat(B1, B2), ADDR2)]
    lt.heartbeat(B2, ("198.18.9.9", 7000), 0.1)
    lt.heartbeat(B2, ("198.18.9.9", 7000), 0.2)  # rate limited
    lt.heartbeat(B2, ("198.18.9.9", 7000), 0.1 + HEARD_EVERY)
    lt.heartbeat(peer_bytes(P4), ADDR3, 0.3)  # not a neighbour: ignored
    heard = [e for e in lt.take_events() if isinstance(e, Heard)]
    assert heard == [Heard(P2, ("198.18.9.9", 7000))] * 2
    lt.configure(B1, {B2: ADDR2})  # the router repeats the config address: learned one wins
    assert lt.links[B2].addr == ("198.18.9.9", 7000)


def test_probes_are_acked_and_acks_finish_discovery() -> None:
    lt = LinkTable(lambda addr: 1500)
    lt.configure(B1, {B2: ADDR2})
    lt.heartbeat(B2, ADDR2, 0.0)  # appears: discovery starts at the safe size
    assert lt.links[B2].cap == wire.payload_capacity(552)
    probes = [o for o in lt.tick(0.0) if o.probe]
    assert [o.probe for o in probes] == [1500]
    assert lt.probe(B2, ADDR2, 1, 1500) == wire.probe_ack(B1, B2, 1, 1500)
    assert lt.probe(peer_bytes(P4), ADDR2, 1, 1500) is None
    lt.ack(B2, 1500, 0.001)
    assert lt.links[B2].cap == 1444 and not lt.links[B2].gso
    assert [e for e in lt.take_events() if isinstance(e, Pmtu)] == [Pmtu(P2, 1434)]
    checks = [o for o in lt.tick(0.002) if o.probe]
    assert [(o.probe, o.batch) for o in checks] == [(1500, True)]
    assert wire.parse(checks[0].data).offset == 1  # type: ignore[union-attr]
    lt.ack(B2, 1500, 0.003, batch=True)
    assert lt.links[B2].gso


@pytest.mark.parametrize("gso", [True, False])
def test_batching_only_where_the_check_passed(tap: tuple[int, socket.socket], gso: bool) -> None:
    fd, theirs = tap
    tx, sock = make(P1, fd, {P2: ADDR2}, {P2: P2}, {P2})
    tx.links.links[B2].cap, tx.links.links[B2].gso = 1444, gso
    theirs.send(frame("02:dd:00:00:00:02", 30000))
    tx.drain_tap(1)
    assert len(sock.sent) == 21 and sock.calls == (1 if gso else 21)
