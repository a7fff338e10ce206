"""The sleeve's datagram format: one fixed header, byte-offset fragmentation, a bounded
reassembler, and the heartbeat and PMTU probe/ack messages. Pure: no sockets, no clock.

Every UDP datagram on port 6783 starts with the 28-byte header ``HEADER`` (network order)::

    0  version  u8   VERSION (1); anything else is dropped
    1  kind     u8   DATA, HEARTBEAT, PROBE or PROBE_ACK
    2  ttl      u8   hops left; a relay decrements it and drops the datagram at 0
    3  flags    u8   0 plain, SEALED (1) encrypted; anything else is dropped
    4  src      6s   the peer that captured the frame (never rewritten by relays)
    10 dst      6s   the peer that must write it to its TAP
    16 seq      u32  DATA: frame number of src (wraps); PROBE/ACK: probe id; HEARTBEAT: 0
    20 offset   u32  DATA: where this datagram's bytes sit in the frame; PROBE/ACK: 1 for a
                     batch check (see pmtu.py), else 0; HEARTBEAT: 0
    24 total    u32  DATA: the frame's length; PROBE/ACK: the probed IP datagram size

A DATA "frame" is ``[virtio_net_hdr (10 B)][ethernet frame]`` exactly as read from the TAP
(so a TCP super-packet of ~64 KB keeps its GSO metadata to the far end). A frame that does
not fit one datagram is cut into pieces named by (src, seq, offset, total). Offsets rather
than index/count let a relay split a piece further for a narrower next link without
reassembling anything: pieces of one frame never overlap, so the frame is complete when the
byte ranges received (disjoint; an overlapping piece is dropped as a duplicate) add up to
``total``.

A SEALED datagram (the network has a password; ``seal.py``) extends the header to 40 bytes
(``SEALED``) and ends with a 16-byte AES-GCM tag; the 40 bytes are the associated data, the
body (frame bytes, probe padding) is the ciphertext::

    28 hop      6s   the neighbour that sealed it (its key opens it; relays re-seal)
    34 epoch    u16  the low 16 bits of the sender's key epoch
    36 pseq     u32  the datagram's number in that epoch (the nonce, and the replay window's)

So sealing costs ``SEAL_OVERHEAD`` (28) bytes per datagram, which ``payload_capacity`` and
``ethernet_mtu`` take off when ``sealed``; a probe of size S stays an S-byte IP datagram.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from typing import NamedTuple

HEADER = struct.Struct("!BBBB6s6sIII")
HEADER_SIZE = HEADER.size  # 28
SEALED = struct.Struct("!BBBB6s6sIII6sHI")
SEALED_SIZE = SEALED.size  # 40
TAG_SIZE = 16
SEAL_OVERHEAD = SEALED_SIZE - HEADER_SIZE + TAG_SIZE  # 28
FLAG_SEALED = 1
EPOCH_MASK = 0xFFFF  # the epoch field carries the low 16 bits
VERSION = 1
DATA, HEARTBEAT, PROBE, PROBE_ACK = 1, 2, 3, 4
KINDS = frozenset((DATA, HEARTBEAT, PROBE, PROBE_ACK))
DEFAULT_TTL = 32
HEARTBEAT_INTERVAL = 0.5  # seconds between heartbeats to each neighbour
IP_UDP_OVERHEAD = 28  # IPv4 20 + UDP 8
VNET_HDR_SIZE = 10
MIN_PMTU = 552  # the floor of PMTU discovery, as in the original
MAX_PMTU = 65535  # the largest IPv4 datagram: one UDP payload of 65507 bytes
MAX_FRAME = 65536 + 64  # vnet header + the largest TAP read (gso_max_size 65536) with slack
# Per datagram: IPv4 + UDP + our header; the reported ethernet MTU also drops the vnet header.
DATAGRAM_OVERHEAD = IP_UDP_OVERHEAD + HEADER_SIZE  # 56
FRAME_OVERHEAD = DATAGRAM_OVERHEAD + VNET_HDR_SIZE  # 66


def overhead(sealed: bool) -> int:
    """IP, UDP and sleeve bytes around the frame bytes of one datagram."""
    return DATAGRAM_OVERHEAD + SEAL_OVERHEAD if sealed else DATAGRAM_OVERHEAD


def payload_capacity(pmtu: int, sealed: bool = False) -> int:
    """Frame bytes one datagram carries on a path whose IP MTU is ``pmtu``."""
    return max(1, min(pmtu, MAX_PMTU) - overhead(sealed))


def ethernet_mtu(pmtu: int, sealed: bool = False) -> int:
    """The ``mtu`` of the pmtu event: the largest ethernet frame carried in one datagram."""
    return min(pmtu, MAX_PMTU) - overhead(sealed) - VNET_HDR_SIZE


class Header(NamedTuple):
    kind: int
    ttl: int
    src: bytes
    dst: bytes
    seq: int
    offset: int
    total: int


def parse(data: bytes | bytearray | memoryview) -> Header | None:
    """The header of one datagram, or None when it is not a well-formed sleeve datagram."""
    if len(data) < HEADER_SIZE:
        return None
    version, kind, ttl, flags, src, dst, seq, offset, total = HEADER.unpack_from(data)
    if version != VERSION or flags != 0:
        return None
    if not body_ok(kind, len(data) - HEADER_SIZE, offset, total, DATAGRAM_OVERHEAD):
        return None
    return Header(kind, ttl, src, dst, seq, offset, total)


def body_ok(kind: int, body: int, offset: int, total: int, over: int) -> bool:
    """Whether a ``kind`` datagram may carry ``body`` bytes (plain or opened) with these
    fields; ``over`` is the IP + UDP + sleeve overhead (a probe is exactly ``total`` bytes)."""
    if kind == DATA:
        return 0 < body and total <= MAX_FRAME and offset + body <= total
    if kind == PROBE:
        return MIN_PMTU <= total <= MAX_PMTU and body + over == total and offset <= 1
    if kind == PROBE_ACK:
        return MIN_PMTU <= total <= MAX_PMTU and body == 0 and offset <= 1
    return kind == HEARTBEAT and body == 0


def heartbeat(src: bytes, dst: bytes) -> bytes:
    return HEADER.pack(VERSION, HEARTBEAT, 1, 0, src, dst, 0, 0, 0)


def probe(src: bytes, dst: bytes, probe_id: int, size: int, batch: bool = False,
          sealed: bool = False) -> bytes:
    """A PMTU probe whose IP datagram is exactly ``size`` bytes (zero padding; ``sealed``: once
    sealed); ``batch`` (offset 1) marks the two copies of a batch check, and the ack echoes it."""
    head = HEADER.pack(VERSION, PROBE, 1, 0, src, dst, probe_id & 0xFFFFFFFF, int(batch), size)
    return head + bytes(size - overhead(sealed))


def probe_ack(src: bytes, dst: bytes, probe_id: int, size: int, batch: bool = False) -> bytes:
    return HEADER.pack(VERSION, PROBE_ACK, 1, 0, src, dst, probe_id & 0xFFFFFFFF, int(batch),
                       size)


def fragment_into(
    out: bytearray, payload: memoryview, base: int, total: int, chunk: int,
    ttl: int, src: bytes, dst: bytes, seq: int, max_segments: int = 64,
) -> int:
    """Write ``payload`` (the frame's bytes from ``base``) as datagrams of at most ``chunk``
    payload bytes into ``out``, back to back, at most ``max_segments`` of them; returns the
    number of payload bytes consumed. Every datagram but the last has the same size
    (``HEADER_SIZE + chunk``), which is what one UDP_SEGMENT send needs."""
    pack = HEADER.pack_into
    n = len(payload)
    done = pos = k = 0
    while done < n and k < max_segments:
        c = min(chunk, n - done)
        pack(out, pos, VERSION, DATA, ttl, 0, src, dst, seq, base + done, total)
        pos += HEADER_SIZE
        out[pos : pos + c] = payload[done : done + c]
        pos += c
        done += c
        k += 1
    return done


def fragment(
    frame: bytes, chunk: int, src: bytes, dst: bytes, seq: int, ttl: int = DEFAULT_TTL
) -> list[bytes]:
    """The datagrams of ``frame`` at ``chunk`` payload bytes each (the slow, simple form)."""
    out = bytearray(HEADER_SIZE + chunk)
    view = memoryview(frame)
    result = []
    for start in range(0, max(1, len(frame)), chunk):
        used = fragment_into(out, view[start : start + chunk], start, len(frame), chunk,
                             ttl, src, dst, seq, max_segments=1)
        result.append(bytes(out[: HEADER_SIZE + used]))
    return result


class _Partial:
    """One frame being reassembled: ``starts``/``ends`` are the sorted, disjoint byte ranges
    received so far and ``got`` their total length, so ``got == len(buf)`` means complete."""

    __slots__ = ("buf", "got", "starts", "ends", "born")

    def __init__(self, total: int, born: float) -> None:
        self.buf = bytearray(total)
        self.got = 0
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.born = born


class Reassembler:
    """Partial frames per source peer, bounded three ways: at most ``max_partials`` frames
    and ``max_bytes`` of buffers per source, ``max_total_bytes`` over all sources, and each
    partial lives at most ``timeout`` seconds (``expire``). A new partial that would break a
    per-source bound evicts that source's oldest ones; one that would break the global bound
    is refused. Buffer bytes are counted at allocation (``total``), so a hostile 1-byte piece
    claiming a 64 KB frame costs its claimed size against the bound."""

    def __init__(self, max_partials: int = 64, max_bytes: int = 4 << 20,
                 max_total_bytes: int = 64 << 20, timeout: float = 1.0) -> None:
        self.max_partials = max_partials
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes
        self.timeout = timeout
        self._sources: dict[bytes, dict[int, _Partial]] = {}
        self._bytes: dict[bytes, int] = {}
        self.total_bytes = 0
        self.dropped = 0  # partial frames abandoned (evicted, expired, refused, conflicting)

    def add(self, src: bytes, seq: int, offset: int, total: int,
            data: bytes | bytearray | memoryview, now: float) -> bytearray | None:
        """Take one piece; returns the whole frame when this piece completes it."""
        n = len(data)
        if n == 0 or total <= 0 or total > self.max_bytes or offset < 0 or offset + n > total:
            self.dropped += 1
            return None
        parts = self._sources.get(src)
        if parts is None:
            parts = self._sources[src] = {}
            self._bytes[src] = 0
        part = parts.get(seq)
        if part is not None and len(part.buf) != total:
            self._remove(src, seq)
            part = None
        if part is None:
            while parts and (len(parts) >= self.max_partials
                             or self._bytes[src] + total > self.max_bytes):
                self._remove(src, next(iter(parts)))
            if self.total_bytes + total > self.max_total_bytes:
                self.dropped += 1
                return None
            part = parts[seq] = _Partial(total, now)
            self._bytes[src] += total
            self.total_bytes += total
        end = offset + n
        i = bisect_right(part.starts, offset)
        if (i and part.ends[i - 1] > offset) or (i < len(part.starts) and part.starts[i] < end):
            return None  # overlaps what we have: a duplicate (or a liar)
        part.starts.insert(i, offset)
        part.ends.insert(i, end)
        part.buf[offset:end] = data
        part.got += n
        if part.got < total:
            return None
        del parts[seq]
        self._bytes[src] -= total
        self.total_bytes -= total
        return part.buf

    def _remove(self, src: bytes, seq: int) -> None:
        part = self._sources[src].pop(seq)
        self._bytes[src] -= len(part.buf)
        self.total_bytes -= len(part.buf)
        self.dropped += 1

    def expire(self, now: float) -> None:
        """Drop partials older than the timeout, and sources with nothing pending."""
        limit = now - self.timeout
        for src in list(self._sources):
            parts = self._sources[src]
            while parts:
                seq = next(iter(parts))
                if parts[seq].born > limit:
                    break
                self._remove(src, seq)
            if not parts:
                del self._sources[src]
                del self._bytes[src]

    def pending(self) -> int:
        return sum(len(p) for p in self._sources.values())
