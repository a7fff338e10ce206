"""The encrypted data path with fake sockets: frames of every size cross sealed (GRO batches
and one by one); any tampered byte is refused (S11); replays are dropped (S09); plaintext is
dropped when encrypted (S12); rekeying and key switches keep the link; heartbeats and probes
only count when they authenticate; relays re-seal hop by hop; no keys means no traffic."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.sleeve import wire
from weave_cli.sleeve.control import SleeveConfig, SleeveKeys
from weave_cli.sleeve.engine import Datapath
from weave_cli.sleeve.keybook import KeyBook
from weave_cli.sleeve.links import LinkTable, peer_bytes
from weave_cli.sleeve.seal import GRACE, SecretKey
from weave_cli.sleeve.tap import F_NEEDS_CSUM, GSO_TCPV4, PLAIN_VNET, vnet_header

P1, P2, P3 = (f"02:00:00:00:00:0{i}" for i in range(1, 4))
B1, B2, B3 = peer_bytes(P1), peer_bytes(P2), peer_bytes(P3)
ADDR1, ADDR2, ADDR3 = ((f"198.18.0.{i}", 6783) for i in (1, 2, 3))
MAC = "02:dd:00:00:00:02"
Addr = tuple[str, int]


def key(a: str, b: str, gen: int = 0) -> SecretKey:
    """The key a uses to send to b (so b's rx key for a)."""
    return SecretKey(bytes([int(a[-1]), int(b[-1]), gen]) * 10 + b"kk")


def pair(local: str, peer: str, gen: int = 0) -> SleeveKeys:
    return SleeveKeys(key(local, peer, gen), key(peer, local, gen))


class FakeSock:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Addr]] = []
        self.calls = 0
        self.inbox: list[tuple[bytes, int, Addr]] = []

    def sendto(self, data: bytes, addr: Addr) -> int:
        self.calls += 1
        self.sent.append((bytes(data), addr))
        return len(data)

    def sendmsg(self, parts: list[memoryview], cmsg: list[tuple[int, int, bytes]], flags: int,
                addr: Addr) -> int:
        self.calls += 1
        data = b"".join(parts)
        seg = struct.unpack("H", cmsg[0][2])[0] if cmsg else len(data)
        self.sent += [(data[p : p + seg], addr) for p in range(0, len(data), seg)]
        return len(data)

    def recvmsg_into(self, bufs: list[memoryview], ancsize: int
                     ) -> tuple[int, list[tuple[int, int, bytes]], int, Addr]:
        if not self.inbox:
            raise BlockingIOError
        data, seg, addr = self.inbox.pop(0)
        bufs[0][: len(data)] = data
        return len(data), [(17, 104, struct.pack("i", seg))] if seg else [], 0, addr

    def take(self) -> list[bytes]:
        out, self.sent = [d for d, _ in self.sent], []
        return out


@pytest.fixture
def tap() -> Iterator[tuple[int, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.settimeout(0)
    yield ours.fileno(), theirs
    ours.close()
    theirs.close()


def config(local: str, nbrs: dict[str, Addr], routes: dict[str, str], gen: int = 0,
           keyed: bool = True, encrypted: bool = True) -> SleeveConfig:
    keys = {p: pair(local, p, gen) for p in nbrs} if keyed and encrypted else {}
    return SleeveConfig(local=local, neighbours=nbrs, routes=routes,
                        sleeve_peers=frozenset(routes), encrypted=encrypted, keys=keys)


def make(fd: int, cfg: SleeveConfig, book: KeyBook | None = None) -> tuple[Datapath, FakeSock]:
    sock = FakeSock()
    dp = Datapath(fd, sock, LinkTable(lambda addr: 1500, book=book))  # type: ignore[arg-type]
    dp.out.clock = lambda: 0.0
    dp.configure(cfg, 0.0)
    for link in dp.links.links.values():
        link.cap, link.gso = wire.payload_capacity(1500, link.sealed), True
    return dp, sock


def pair_of_hosts(fd: int, **kw: object) -> tuple[Datapath, FakeSock, Datapath, FakeSock]:
    a, asock = make(fd, config(P1, {P2: ADDR2}, {P2: P2}, **kw))  # type: ignore[arg-type]
    b, bsock = make(fd, config(P2, {P1: ADDR1}, {P1: P1}, **kw))  # type: ignore[arg-type]
    return a, asock, b, bsock


def frame(size: int, vnet: bytes = PLAIN_VNET) -> bytes:
    eth = bytes.fromhex(MAC.replace(":", "")) + bytes.fromhex("02bb00000001") + b"\x08\x00"
    return vnet + eth + bytes(i % 251 for i in range(size - 14))


def send_frame(dp: Datapath, theirs: socket.socket, data: bytes) -> None:
    theirs.send(data)
    dp.drain_tap(1)


def deliver(dp: Datapath, dgs: list[bytes], batch: bool, now: float = 0.0,
            addr: Addr = ADDR1) -> None:
    sock = dp.sock
    assert isinstance(sock, FakeSock)
    if batch and len(dgs) > 1 and all(len(d) == len(dgs[0]) for d in dgs[:-1]) \
            and len(dgs[-1]) <= len(dgs[0]):
        per = 65535 // len(dgs[0])  # GRO batches stay within 64 KB
        sock.inbox += [(b"".join(dgs[i : i + per]), len(dgs[0]), addr)
                       for i in range(0, len(dgs), per)]
    else:
        sock.inbox += [(d, 0, addr) for d in dgs]
    dp.drain_udp(64, now)


def received(theirs: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(theirs.recv(1 << 17))
        except BlockingIOError:
            return out


@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("size", [60, 1406, 1407, 5000, 65000])
def test_frames_cross_sealed(tap: tuple[int, socket.socket], batch: bool, size: int) -> None:
    fd, theirs = tap
    a, asock, b, _ = pair_of_hosts(fd)
    vnet = vnet_header(F_NEEDS_CSUM, GSO_TCPV4, 54, 1400, 34, 16) if size > 1500 else PLAIN_VNET
    original = frame(size, vnet)
    send_frame(a, theirs, original)
    dgs = asock.take()
    assert all(len(d) <= 1500 - 28 for d in dgs) and len(dgs) == -(-len(original) // 1416)
    assert size < 1500 or asock.calls <= 2
    assert all(d[3] == wire.FLAG_SEALED and original[20:52] not in d for d in dgs)
    deliver(b, dgs, batch)
    assert received(theirs) == [original]
    assert b.tap_tx == 1 and b.rx_bad == 0 and b.counters()["rx_auth_failed"] == 0
    deliver(b, dgs, batch)  # the same again: replays, dropped silently
    assert received(theirs) == [] and b.counters()["rx_replayed"] == len(dgs)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_tampered_byte_is_refused(data: st.DataObject) -> None:  # S11
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        ours.setblocking(False)
        theirs.settimeout(0)
        a, asock, b, _ = pair_of_hosts(ours.fileno())
        send_frame(a, theirs, frame(data.draw(st.integers(60, 3000))))
        dgs = asock.take()
        i = data.draw(st.integers(0, len(dgs) - 1))
        where = data.draw(st.integers(0, len(dgs[i]) - 1))
        bad = bytearray(dgs[i])
        bad[where] ^= data.draw(st.integers(1, 255))
        deliver(b, [bytes(bad)], batch=False)
        assert b.tap_tx == 0 and b.reasm.pending() == 0 and received(theirs) == []
        deliver(b, dgs, batch=False)  # the genuine ones still pass afterwards
        assert len(received(theirs)) == 1
    finally:
        ours.close()
        theirs.close()


def test_plaintext_is_dropped_when_encrypted(tap: tuple[int, socket.socket]) -> None:  # S12
    fd, theirs = tap
    _, _, b, _ = pair_of_hosts(fd)
    plain = wire.fragment(frame(3000), 1444, B1, B2, 1)
    deliver(b, plain, batch=True)
    deliver(b, [wire.heartbeat(B1, B2)], batch=False)
    assert received(theirs) == [] and b.counters()["rx_plaintext"] == len(plain) + 1
    assert b.links.heartbeats_rx == 0


def test_sealed_datagrams_without_encryption_are_garbage(tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    a, asock, _, _ = pair_of_hosts(fd)
    plain_b, _ = make(fd, config(P2, {P1: ADDR1}, {P1: P1}, encrypted=False))
    send_frame(a, theirs, frame(100))
    deliver(plain_b, asock.take(), batch=False)
    assert received(theirs) == [] and plain_b.rx_bad == 1


def test_heartbeats_and_probes_count_only_when_authenticated(
        tap: tuple[int, socket.socket]) -> None:
    fd, _ = tap
    a, asock, b, bsock = pair_of_hosts(fd)
    forger, fsock = make(fd, config(P1, {P2: ADDR2}, {P2: P2}, gen=9))  # wrong keys
    for out in forger.links.tick(0.0):
        forger.out.control(out.data, out.link)
    deliver(b, fsock.take(), batch=False)
    assert b.links.heartbeats_rx == 0 and b.counters()["rx_auth_failed"] == 1
    for out in a.links.tick(0.0):
        a.out.control(out.data, out.link)
    beat = asock.take()
    assert len(beat) == 1 and len(beat[0]) == wire.HEADER_SIZE + wire.SEAL_OVERHEAD
    deliver(b, beat, batch=False)
    deliver(b, beat, batch=False)  # a replayed heartbeat is not a second one
    assert b.links.heartbeats_rx == 1 and b.links.links[B1].last_heard == 0.0
    probes = [o for o in b.links.tick(0.0) if o.probe]
    assert [o.probe for o in probes] == [1500]
    b.out.control(probes[0].data, probes[0].link)
    sealed_probe = bsock.take()
    assert [len(d) for d in sealed_probe] == [1500 - 28]  # still a 1500-byte IP datagram
    deliver(a, sealed_probe, batch=False, addr=ADDR2)
    deliver(b, asock.take(), batch=False)  # the sealed ack
    events = b.links.take_events()
    assert any(getattr(e, "mtu", None) == 1500 - 94 for e in events)  # pmtu: 1406


def test_epoch_rollover_with_old_epoch_in_flight(tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    book = KeyBook(limit=5, period=1000.0)
    a, asock = make(fd, config(P1, {P2: ADDR2}, {P2: P2}), book)
    b, _ = make(fd, config(P2, {P1: ADDR1}, {P1: P1}))
    frames = [frame(60 + i) for i in range(12)]
    batches = []
    for f in frames:
        send_frame(a, theirs, f)
        batches.append(asock.take())
    epochs = [struct.unpack_from("!H", d[0], 34)[0] for d in batches]
    assert epochs == [0] * 5 + [1] * 5 + [2] * 2
    order = [0, 1, 5, 2, 6, 3, 7, 4, 8, 9, 10, 11]  # epoch 0 stragglers after epoch 1 began
    for i in order:
        deliver(b, batches[i], batch=False)
    assert received(theirs) == [frames[i] for i in order]
    assert b.counters()["rekeys_rx"] == 2 and a.counters()["rekeys_tx"] == 2


def test_new_keys_switch_with_grace(tap: tuple[int, socket.socket]) -> None:  # S30
    fd, theirs = tap
    a, asock, b, _ = pair_of_hosts(fd)
    send_frame(a, theirs, frame(100))
    in_flight = asock.take()
    a.configure(config(P1, {P2: ADDR2}, {P2: P2}, gen=1), 1.0)  # re-established
    b.configure(config(P2, {P1: ADDR1}, {P1: P1}, gen=1), 1.0)
    send_frame(a, theirs, frame(101))
    deliver(b, asock.take(), batch=False, now=1.0)
    deliver(b, in_flight, batch=False, now=1.5)  # old key, inside the grace
    assert received(theirs) == [frame(101), frame(100)]
    old = a.links.links[B2].tx
    a.configure(config(P1, {P2: ADDR2}, {P2: P2}, gen=0), 2.0)  # a stale pair: not reset
    assert a.links.links[B2].tx is not old and a.links.links[B2].tx.pseq == 1  # type: ignore
    b.links.book.expire(1.0 + GRACE)
    send_frame(a, theirs, frame(102))
    deliver(b, asock.take(), batch=False, now=1.0 + GRACE)
    assert received(theirs) == [] and b.counters()["key_switches"] == 1


def test_relays_reseal_hop_by_hop(tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    a, asock = make(fd, config(P1, {P2: ADDR2}, {P2: P2, P3: P2}))
    a.configure(SleeveConfig(local=P1, neighbours={P2: ADDR2}, routes={P2: P2, P3: P2},
                             sleeve_peers=frozenset({P3}), macs={MAC: P3}, encrypted=True,
                             keys={P2: pair(P1, P2)}), 0.0)
    mid, msock = make(fd, config(P2, {P1: ADDR1, P3: ADDR3}, {P1: P1, P3: P3}))
    c, _ = make(fd, config(P3, {P2: ADDR2}, {P1: P2, P2: P2}))
    original = frame(5000)
    send_frame(a, theirs, original)
    first = asock.take()  # at the floor's 468 bytes: the config reset the link to the PMTU's
    deliver(mid, first, batch=True)
    assert mid.relayed == len(first) == 11 and received(theirs) == []
    hop2 = msock.take()
    assert {d[28:34] for d in hop2} == {B2}  # sealed again, by the relay, for P3
    deliver(c, hop2, batch=True, addr=ADDR2)
    assert received(theirs) == [original]


def test_a_peer_without_keys_gets_nothing(tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    a, asock = make(fd, config(P1, {P2: ADDR2}, {P2: P2}, keyed=False))
    send_frame(a, theirs, frame(100))
    assert [o for o in a.links.tick(0.0)] == [] and asock.sent == []
    assert a.counters()["tx_no_key"] == 1
    _, _, b, _ = pair_of_hosts(fd)
    nokey, _ = make(fd, config(P2, {P1: ADDR1}, {P1: P1}, keyed=False))
    a2, a2sock, _, _ = pair_of_hosts(fd)
    send_frame(a2, theirs, frame(100))
    deliver(nokey, a2sock.take(), batch=False)
    assert received(theirs) == [] and nokey.counters()["rx_no_key"] == 1


def test_a_gro_batch_is_opened_whole_and_a_bad_one_piece_by_piece(
        tap: tuple[int, socket.socket]) -> None:
    fd, theirs = tap
    a, asock, b, _ = pair_of_hosts(fd)
    whole: list[bool] = []
    fast = b.opener._run

    def spy(n: int, seg: int, now: float) -> bool:
        whole.append(fast(n, seg, now))
        return whole[-1]

    b.opener._run = spy  # type: ignore[method-assign]
    original = frame(40000, vnet_header(F_NEEDS_CSUM, GSO_TCPV4, 54, 1400, 34, 16))
    send_frame(a, theirs, original)
    deliver(b, asock.take(), batch=True)
    assert whole == [True] and received(theirs) == [original]
    send_frame(a, theirs, original)
    dgs = asock.take()
    bad = bytearray(dgs[7])
    bad[-1] ^= 1  # a bad tag in the middle of the batch
    deliver(b, [*dgs[:7], bytes(bad), *dgs[8:]], batch=True)
    assert whole[-1] is False and received(theirs) == [] and b.reasm.pending() == 1
    assert b.counters()["rx_auth_failed"] == 1
    deliver(b, [dgs[7]], batch=False)  # the genuine piece still passes: the window held
    assert received(theirs) == [original]
