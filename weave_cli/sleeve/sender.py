"""The sleeve's send side: frames and datagrams onto the UDP socket, batched with UDP_SEGMENT.

Buffers are allocated once. A TAP read lands at ``HEADROOM`` in ``rbuf`` (the engine reads
straight into ``tap_view``), so a frame that fits one datagram goes out with its header packed
into the headroom in front of it: one ``sendto``, no copy. A bigger frame's headers are built
all at once into ``hblock`` (``batch.block``) and the kernel gathers them with the frame's
chunks from an iovec list ``[h0, c0, h1, c1, ...]`` (cached per chunk size: slices of
``hblock`` and ``rbuf``, which never move), up to 64 datagrams per ``sendmsg`` carrying
UDP_SEGMENT. So a 64 KB TCP super-packet costs 1-2 syscalls and a constant number of Python
operations. ``fragments`` is the general, per-datagram form (relays re-splitting a piece for
a narrower link, and links whose batch check failed: see pmtu.py). Send errors (a full
socket buffer: EAGAIN) drop the datagram and are counted, like a NIC queue overflowing.

On a sealed link (encryption on) ``sealed`` replaces all of that: per GSO run the 40-byte
headers are built as one block into ``shblock`` and the nonces as another (``sealrun``), the
chunks (read in place from ``rbuf``) are encrypted into ``cmv`` by ``encrypt_into`` called
from ``map``, and one ``sendmsg`` with UDP_SEGMENT gathers ``[h0, c0, h1, c1, ...]``: no copy
besides the encryption's own output, no Python step per datagram. A run never spans two
epochs (``TxState.reserve``). Control
datagrams (heartbeats, probes, acks) are sealed by ``control``. A sealed link without keys
sends nothing (``tx_no_key``).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Sequence
from time import monotonic

from weave_cli.sleeve import batch, sealrun, wire
from weave_cli.sleeve.links import Link

SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104
EMSGSIZE = 90
HEADROOM = wire.HEADER_SIZE
GSO_BYTES = 65000  # UDP payload bytes per UDP_SEGMENT send (the kernel's limit is 64 KiB)
GSO_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS
MIN_BATCH_CAP = 64  # below this chunk size, fragments are built one by one
Cmsg = list[tuple[int, int, bytes]]


class Sender:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.local = b""
        self.seq = 0
        self.rbuf = bytearray(HEADROOM + wire.MAX_FRAME)
        self.rmv = memoryview(self.rbuf)
        self.tap_view = [self.rmv[HEADROOM:]]  # the iovec the engine reads the TAP into
        self.hblock = bytearray(wire.HEADER_SIZE * (wire.MAX_FRAME // MIN_BATCH_CAP + 2))
        self.hmv = memoryview(self.hblock)
        self.obuf = bytearray(GSO_BYTES + wire.SEALED_SIZE + 2 * wire.MAX_PMTU)
        self.omv = memoryview(self.obuf)
        self._iovs: dict[int, list[memoryview]] = {}
        self._cmsg: dict[int, Cmsg] = {}
        self.udp_tx = self.udp_tx_calls = self.udp_tx_errors = self.tx_no_key = 0
        self.clock = monotonic  # for the key epochs' time limit
        self.shblock = bytearray(wire.SEALED_SIZE * GSO_SEGMENTS)  # a sealed run's headers
        self.shmv = memoryview(self.shblock)
        self.cmv = memoryview(bytearray(GSO_BYTES))  # a sealed run's ciphertexts and tags

    def frame(self, n: int, dst: bytes, link: Link) -> None:
        """Send the frame at ``rbuf[HEADROOM:HEADROOM+n]`` to ``dst`` through ``link``."""
        self.seq = seq = (self.seq + 1) & 0xFFFFFFFF
        if link.sealed:
            self.sealed(self.rmv[HEADROOM : HEADROOM + n], 0, n, link, wire.DEFAULT_TTL,
                        self.local, dst, seq)
            return
        cap = link.cap
        if n <= cap:
            wire.HEADER.pack_into(self.rbuf, 0, wire.VERSION, wire.DATA, wire.DEFAULT_TTL, 0,
                                  self.local, dst, seq, 0, n)
            self.udp_tx += 1
            self.udp_tx_calls += 1
            try:
                self.sock.sendto(self.rmv[: HEADROOM + n], link.addr)
            except OSError:
                self.udp_tx_errors += 1
            return
        if cap < MIN_BATCH_CAP or not link.gso:
            self.fragments(self.rmv[HEADROOM : HEADROOM + n], 0, n, link, wire.DEFAULT_TTL,
                           self.local, dst, seq)
            return
        count = -(-n // cap)
        common = batch.common_header(wire.DEFAULT_TTL, self.local, dst, seq, n)
        self.hblock[: wire.HEADER_SIZE * count] = batch.block(common, cap, 0, count)
        iov = self._iovs.get(cap) or self._make_iov(cap)
        per_send = max(1, min(GSO_SEGMENTS, GSO_BYTES // (wire.HEADER_SIZE + cap)))
        seg = wire.HEADER_SIZE + cap
        for a in range(0, count, per_send):
            b = min(a + per_send, count)
            if b < count:
                parts = iov[2 * a : 2 * b]
            else:
                parts = iov[2 * a : 2 * b - 1]
                parts.append(self.rmv[HEADROOM + (count - 1) * cap : HEADROOM + n])
            self.gather(parts, seg, b - a, link.addr)

    def gather(self, parts: Sequence[memoryview], seg: int, count: int,
               addr: tuple[str, int]) -> None:
        """Send ``count`` datagrams of ``seg`` bytes (the last may be shorter) gathered from
        ``parts`` in one syscall."""
        self.udp_tx += count
        self.udp_tx_calls += 1
        try:
            self.sock.sendmsg(parts, self._segment(seg) if count > 1 else (), 0, addr)
        except OSError:
            self.udp_tx_errors += 1

    def _make_iov(self, cap: int) -> list[memoryview]:
        if len(self._iovs) >= 16:
            self._iovs.clear()
        h = wire.HEADER_SIZE
        iov = []
        for i in range(-(-wire.MAX_FRAME // cap)):
            iov.append(self.hmv[i * h : (i + 1) * h])
            iov.append(self.rmv[HEADROOM + i * cap : HEADROOM + (i + 1) * cap])
        self._iovs[cap] = iov
        return iov

    def _segment(self, seg: int) -> Cmsg:
        cmsg = self._cmsg.get(seg)
        if cmsg is None:
            if len(self._cmsg) >= 64:
                self._cmsg.clear()
            cmsg = self._cmsg[seg] = [(SOL_UDP, UDP_SEGMENT, struct.pack("H", seg))]
        return cmsg

    def fragments(self, payload: memoryview, base: int, total: int, link: Link, ttl: int,
                  src: bytes, dst: bytes, seq: int) -> None:
        """Send ``payload`` (the frame's bytes from ``base``) as datagrams of ``link.cap``."""
        cap = link.cap
        seg = wire.HEADER_SIZE + cap
        max_segments = max(1, min(GSO_SEGMENTS, GSO_BYTES // seg)) if link.gso else 1
        n, done = len(payload), 0
        while done < n:
            used = wire.fragment_into(self.obuf, payload[done:], base + done, total, cap,
                                      ttl, src, dst, seq, max_segments)
            k = -(-used // cap)
            done += used
            self.gather([self.omv[: used + k * wire.HEADER_SIZE]], seg, k, link.addr)

    def datagram(self, data: bytes | memoryview, addr: tuple[str, int],
                 on_emsgsize: Callable[[], None] | None = None) -> None:
        """One datagram as it is (relayed pieces, control messages)."""
        self.udp_tx += 1
        self.udp_tx_calls += 1
        try:
            self.sock.sendto(data, addr)
        except OSError as err:
            if err.errno == EMSGSIZE and on_emsgsize is not None:
                on_emsgsize()
            else:
                self.udp_tx_errors += 1

    def sealed(self, payload: memoryview, base: int, total: int, link: Link, ttl: int,
               src: bytes, dst: bytes, seq: int) -> None:
        """Seal ``payload`` (the frame's bytes from ``base``) into DATA datagrams of
        ``link.cap`` bytes, each with its own pseq, and send them in GSO runs: per run one
        header block and nonce block (``sealrun``), the AEAD calls from ``map``, one
        ``sendmsg`` gathering ``[h0, c0, h1, c1, ...]``."""
        tx = link.tx
        if tx is None:
            self.tx_no_key += 1
            return
        cap, cmv, h, t = link.cap, self.cmv, wire.SEALED_SIZE, wire.TAG_SIZE
        seg = h + cap + t
        per_send = max(1, min(GSO_SEGMENTS, GSO_BYTES // seg)) if link.gso else 1
        n, done, now = len(payload), 0, self.clock()
        while done < n:
            first, k = tx.reserve(min(per_send, -(-(n - done) // cap)), now)
            run = payload[done : done + k * cap]
            m = len(run)
            lay = sealrun.layout(cap, k)
            common = wire.SEALED.pack(wire.VERSION, wire.DATA, ttl, wire.FLAG_SEALED, src, dst,
                                      seq, base + done, total, self.local, tx.epoch & 0xFFFF, 0)
            self.shblock[: h * k] = lay.headers(common, first)
            heads = lay.slots(self.shmv)
            outs = list(lay.sealed(cmv))
            start = (k - 1) * (cap + t)
            outs[-1] = cmv[start : start + m - (k - 1) * cap + t]
            seal_all = map(tx.aead.encrypt_into, lay.nonces(first), lay.plain(run), heads, outs)
            sealrun.consume(seal_all)
            parts = outs * 2
            parts[0::2] = heads
            parts[1::2] = outs
            self.gather(parts, seg, k, link.addr)
            done += m

    def control(self, data: bytes, link: Link, copies: int = 1,
                on_emsgsize: Callable[[], None] | None = None,
                addr: tuple[str, int] | None = None) -> None:
        """Send a control datagram (heartbeat, probe, ack: ``wire`` form) to ``link`` (or
        ``addr``), sealed when the link is; ``copies`` 2 is the batch check (one
        UDP_SEGMENT send)."""
        addr = addr or link.addr
        if not link.sealed:
            if copies == 1:
                self.datagram(data, addr, on_emsgsize)
            else:
                view = memoryview(data)
                self.gather([view] * copies, len(data), copies, addr)
            return
        tx = link.tx
        if tx is None:
            self.tx_no_key += 1
            return
        version, kind, ttl, _f, src, dst, seq, off, total = wire.HEADER.unpack_from(data)
        body = memoryview(data)[wire.HEADER_SIZE :]
        size = wire.SEALED_SIZE + len(body) + wire.TAG_SIZE
        first, k = tx.reserve(copies, self.clock())
        pos = 0
        for pseq in range(first, first + k):
            wire.SEALED.pack_into(self.obuf, pos, version, kind, ttl, wire.FLAG_SEALED, src, dst,
                                  seq, off, total, self.local, tx.epoch & 0xFFFF, pseq)
            tx.aead.encrypt_into(pseq.to_bytes(12, "big"), body,
                                 self.omv[pos : pos + wire.SEALED_SIZE],
                                 self.omv[pos + wire.SEALED_SIZE : pos + size])
            pos += size
        if k == 1:
            self.datagram(self.omv[:pos], addr, on_emsgsize)
        else:
            self.gather([self.omv[:pos]], size, k, addr)
