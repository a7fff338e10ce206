"""The sleeve's data path: the forwarding tables, TAP -> UDP (through ``Sender``), and
UDP -> TAP or relay, batched (one ``recvmsg_into`` with UDP_GRO returns many datagrams).

Tables (rebuilt by ``configure``; hot paths only read them):
    mac_map  destination MAC -> ((dst peer, next-hop Link), ...): one target for a MAC behind a
             sleeve peer, none for a MAC behind a peer the sleeve does not carry
    flood    the targets of broadcast, multicast and unknown destinations: every sleeve peer
    hops     any reachable peer -> the Link of its next hop (for relaying)
    known    every peer named in the config: datagrams from anyone else are dropped

Receiving, a GRO batch (``seg`` bytes per datagram, the last may be shorter) is first tried
as a whole: its k headers, unpacked in place with one cached ``struct`` call, must be one
frame's consecutive pieces (``batch.Layout.parse``). Then a whole
frame is written to the TAP with one ``writev`` of the chunks (no copy), part of one joins the
reassembler as a single piece, and one for another peer is relayed with one ``sendmsg``. Any
other batch is taken datagram by datagram. Counters are plain ints (``counters()``); nothing is
logged per packet; garbage is counted and dropped, never raised.

With encryption on (``sealed``, the config's ``encrypted``) every receive goes to
``unseal.Opener`` instead (which uses the same tables, ``write`` and ``on_control``), and every
send is sealed by the ``Sender``; the plain paths here are not used at all then.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from weave_cli.sleeve import batch, wire
from weave_cli.sleeve.control import SleeveConfig
from weave_cli.sleeve.links import Link, LinkTable, peer_bytes
from weave_cli.sleeve.sender import GSO_SEGMENTS, HEADROOM, SOL_UDP, UDP_GRO, Sender
from weave_cli.sleeve.tap import vnet_ok
from weave_cli.sleeve.unseal import Opener

H = wire.HEADER_SIZE
_MAC = struct.Struct("6s")
_INT = struct.Struct("i")
Target = tuple[bytes, Link]
Addr = tuple[str, int]
COUNTERS = ("tap_rx", "tap_rx_errors", "tap_tx", "tap_tx_bad", "tap_tx_errors", "udp_rx",
            "udp_rx_calls", "rx_bad", "rx_unknown", "relayed", "ttl_expired", "no_route",
            "not_sleeve")


class Datapath:
    def __init__(self, tap_fd: int, sock: socket.socket, links: LinkTable,
                 reassembler: wire.Reassembler | None = None) -> None:
        self.tap_fd = tap_fd
        self.sock = sock
        self.links = links
        self.reasm = reassembler or wire.Reassembler()
        self.out = Sender(sock)
        self.ubuf = bytearray(1 << 16)
        self.umv = memoryview(self.ubuf)
        self.xblock = bytearray(H * (GSO_SEGMENTS + 1))
        xmv = memoryview(self.xblock)
        self._xiov = [xmv[i * H : (i + 1) * H] for i in range(GSO_SEGMENTS + 1)]
        self._layouts: dict[tuple[int, int], batch.Layout] = {}
        self.local = b""
        self.mac_map: dict[bytes, tuple[Target, ...]] = {}
        self.flood: tuple[Target, ...] = ()
        self.hops: dict[bytes, Link] = {}
        self.known: frozenset[bytes] = frozenset()
        self.tap_rx = self.tap_rx_errors = self.tap_tx = self.tap_tx_bad = 0
        self.tap_tx_errors = self.udp_rx = self.udp_rx_calls = self.rx_bad = 0
        self.rx_unknown = self.relayed = self.ttl_expired = self.no_route = 0
        self.not_sleeve = 0
        self.sealed = False
        self.opener = Opener(self)

    def configure(self, cfg: SleeveConfig, now: float | None = None) -> None:
        local = peer_bytes(cfg.local)
        keys = {peer_bytes(p): (k.tx, k.rx) for p, k in cfg.keys.items()}
        self.links.configure(local, {peer_bytes(p): a for p, a in cfg.neighbours.items()
                                     if peer_bytes(p) != local}, cfg.encrypted, keys,
                             time.monotonic() if now is None else now)
        self.sealed = cfg.encrypted
        links = self.links.links
        hops = dict(links)  # a neighbour is its own next hop unless the routes say otherwise
        for dst, hop in cfg.routes.items():
            link = links.get(peer_bytes(hop))
            if link is not None and peer_bytes(dst) != local:
                hops[peer_bytes(dst)] = link
        sleeve = sorted(peer_bytes(p) for p in cfg.sleeve_peers)
        targets = {p: (p, hops[p]) for p in sleeve if p in hops and p != local}
        mac_map: dict[bytes, tuple[Target, ...]] = {}
        for mac, owner in cfg.macs.items():
            key = peer_bytes(mac)
            if not key[0] & 1:  # unicast; multicast destinations always flood
                target = targets.get(peer_bytes(owner))
                mac_map[key] = (target,) if target is not None else ()
        self.local = self.out.local = local
        self.hops = hops
        self.flood = tuple(targets.values())
        self.mac_map = mac_map
        self.known = frozenset({*hops, *sleeve, *(peer_bytes(p) for p in cfg.routes)})

    def counters(self) -> dict[str, int]:
        out = {name: int(getattr(self, name)) for name in COUNTERS}
        out.update(udp_tx=self.out.udp_tx, udp_tx_calls=self.out.udp_tx_calls,
                   udp_tx_errors=self.out.udp_tx_errors, reasm_dropped=self.reasm.dropped,
                   reasm_pending=self.reasm.pending(), heartbeats_rx=self.links.heartbeats_rx,
                   probes_rx=self.links.probes_rx, rx_plaintext=self.opener.rx_plaintext,
                   rx_no_key=self.opener.rx_no_key, tx_no_key=self.out.tx_no_key,
                   **self.links.book.counters())
        return out

    # --- TAP -> UDP -------------------------------------------------------------------
    def drain_tap(self, budget: int) -> bool:
        """Read up to ``budget`` frames; False once the TAP is empty."""
        readv, fd, bufs = os.readv, self.tap_fd, self.out.tap_view
        rbuf, mac_get, unpack = self.out.rbuf, self.mac_map.get, _MAC.unpack_from
        flood, send = self.flood, self.out.frame
        for _ in range(budget):
            try:
                n = readv(fd, bufs)
            except BlockingIOError:
                return False
            except OSError:
                self.tap_rx_errors += 1
                return False
            self.tap_rx += 1
            if n < wire.VNET_HDR_SIZE + 14:
                continue
            targets = mac_get(unpack(rbuf, HEADROOM + wire.VNET_HDR_SIZE)[0], flood)
            if not targets:
                self.not_sleeve += 1
            for dst, link in targets:
                send(n, dst, link)
        return True

    # --- UDP -> TAP / relay -----------------------------------------------------------
    def drain_udp(self, budget: int, now: float) -> bool:
        """Receive up to ``budget`` (GRO-batched) reads; False once the socket is empty."""
        recv, bufs, one = self.sock.recvmsg_into, [self.umv], self._datagram
        for _ in range(budget):
            try:
                n, anc, _flags, addr = recv(bufs, 64)
            except BlockingIOError:
                return False
            except OSError:  # e.g. a queued ICMP error
                self.rx_bad += 1
                continue
            self.udp_rx_calls += 1
            seg = n
            for level, kind, data in anc:
                if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
                    seg = _INT.unpack_from(data)[0] or n
            if self.sealed:
                self.opener.batch(n, min(seg, n), addr, now)
            elif seg >= n:
                one(0, n, addr, now)
            elif not self._batch(n, seg, now):
                for pos in range(0, n, seg):
                    one(pos, min(pos + seg, n), addr, now)
        return True

    def _batch(self, n: int, seg: int, now: float) -> bool:
        """Take a GRO batch as one piece of one frame; False when it is not one."""
        count = -(-n // seg)
        if seg <= H or count > GSO_SEGMENTS * 2:
            return False
        layout = self._layouts.get((seg, count)) or self._layout(seg, count)
        head = layout.parse(self.ubuf, n)
        if head is None or head.src not in self.known:
            return False
        if head.dst != self.local:
            return self._relay_batch(head, layout, n)
        self.udp_rx += count
        chunks = layout.bodies(self.umv) + (self.umv[(count - 1) * seg + H : n],)
        total = head.total
        if head.offset == 0 and n - count * H == total:
            if not vnet_ok(chunks[0], 0, total):
                self.tap_tx_bad += 1
                return True
            try:
                os.writev(self.tap_fd, chunks)
                self.tap_tx += 1
            except OSError:
                self.tap_tx_errors += 1
            return True
        frame = self.reasm.add(head.src, head.seq, head.offset, total, b"".join(chunks), now)
        if frame is not None:
            self.write(memoryview(frame), 0, total)
        return True

    def _relay_batch(self, head: wire.Header, layout: batch.Layout, n: int) -> bool:
        link = self.hops.get(head.dst)
        count, cap, seg = layout.count, layout.cap, layout.seg
        if (head.ttl <= 1 or link is None or link.cap < cap or count > GSO_SEGMENTS
                or not link.gso):
            return False  # one by one: counted there, re-split for a narrower link
        self.udp_rx += count
        self.relayed += count
        common = batch.common_header(head.ttl - 1, head.src, head.dst, head.seq, head.total)
        self.xblock[: H * count] = batch.block(common, cap, head.offset // cap, count)
        parts = self._xiov[:1] * (2 * count)  # a list of the right length; filled below
        parts[0::2] = self._xiov[:count]
        parts[1::2] = layout.bodies(self.umv) + (self.umv[(count - 1) * seg + H : n],)
        self.out.gather(parts, seg, count, link.addr)
        return True

    def _layout(self, seg: int, count: int) -> batch.Layout:
        if len(self._layouts) >= 256:
            self._layouts.clear()
        got = self._layouts[(seg, count)] = batch.Layout(seg, count)
        return got

    def _datagram(self, pos: int, end: int, addr: Addr, now: float) -> None:
        self.udp_rx += 1
        length = end - pos
        if length < H:
            self.rx_bad += 1
            return
        version, kind, ttl, flags, src, dst, seq, off, total = wire.HEADER.unpack_from(
            self.ubuf, pos)
        if kind != wire.DATA or version != wire.VERSION or flags:
            self._control(pos, end, addr, now)
            return
        body = length - H
        if body == 0 or off + body > total or total > wire.MAX_FRAME:
            self.rx_bad += 1
        elif src not in self.known:
            self.rx_unknown += 1
        elif dst == self.local:
            if off == 0 and body == total:
                self.write(self.umv, pos + H, total)
            else:
                frame = self.reasm.add(src, seq, off, total, self.umv[pos + H : end], now)
                if frame is not None:
                    self.write(memoryview(frame), 0, total)
        elif ttl <= 1:
            self.ttl_expired += 1
        elif (link := self.hops.get(dst)) is None:
            self.no_route += 1
        else:
            self.relayed += 1
            if body <= link.cap:
                self.ubuf[pos + 2] = ttl - 1
                self.out.datagram(self.umv[pos:end], link.addr)
            else:
                self.out.fragments(self.umv[pos + H : end], off, total, link, ttl - 1,
                                   src, dst, seq)

    def write(self, view: memoryview, off: int, n: int) -> None:
        if not vnet_ok(view, off, n):
            self.tap_tx_bad += 1
            return
        try:
            os.write(self.tap_fd, view[off : off + n])
            self.tap_tx += 1
        except OSError:
            self.tap_tx_errors += 1

    def _control(self, pos: int, end: int, addr: Addr, now: float) -> None:
        head = wire.parse(self.umv[pos:end])
        if head is None or head.kind == wire.DATA or head.dst != self.local:
            self.rx_bad += 1
        else:
            self.on_control(head.kind, head.src, addr, head.seq, head.offset, head.total, now)

    def on_control(self, kind: int, src: bytes, addr: Addr, seq: int, off: int, total: int,
                   now: float) -> None:
        """A well-formed (and, when sealed, authenticated) control datagram for us."""
        if kind == wire.HEARTBEAT:
            self.links.heartbeat(src, addr, now)
        elif kind == wire.PROBE:
            ack = self.links.probe(src, addr, seq, total, off == 1)
            link = self.links.links.get(src)
            if ack is not None and link is not None:
                self.out.control(ack, link, 1, None, addr)
        elif kind == wire.PROBE_ACK:
            self.links.ack(src, total, now, off == 1)
