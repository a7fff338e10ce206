"""Header blocks for whole GSO sends and GRO receives, built and checked in O(1) Python
operations instead of one per datagram. Pure.

The datagrams of one frame at chunk size ``cap`` differ only in their ``offset`` field
(``i * cap`` for the i-th). So the k headers of datagrams ``first .. first+k-1`` are

    (common * k)  XOR  template(cap)[28*first : 28*(first+k)]

where ``common`` is the header with offset 0 and the template holds only the offsets (every
other byte zero, so XOR is OR). Both are bytes; the XOR is one big-int operation. Sending,
``block`` gives the headers to interleave with the frame's chunks in one ``sendmsg`` iovec;
receiving, ``Layout.parse`` checks that the k headers of a GRO batch are exactly such a run
(one frame, consecutive offsets) without a Python step per datagram: one ``struct`` unpack of
all headers in place, then tuple comparisons. Templates are cached per chunk size; each cache
is cleared when it holds ``MAX_CACHED`` sizes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from operator import itemgetter
from typing import cast

from weave_cli.sleeve.wire import DATA, HEADER, HEADER_SIZE, MAX_FRAME, VERSION, Header

MAX_CACHED = 16
_templates: dict[int, bytes] = {}
_offsets: dict[int, bytes] = {}
Getter = Callable[[memoryview], tuple[memoryview, ...]]


def template(cap: int) -> bytes:
    """Offsets-only headers for every datagram a MAX_FRAME frame needs at chunk ``cap``."""
    tpl = _templates.get(cap)
    if tpl is None:
        if len(_templates) >= MAX_CACHED:
            _templates.clear()
        count = -(-MAX_FRAME // cap)
        tpl = _templates[cap] = b"".join(
            HEADER.pack(0, 0, 0, 0, b"", b"", 0, i * cap, 0) for i in range(count))
    return tpl


def block(common: bytes, cap: int, first: int, count: int) -> bytes:
    """The headers of datagrams ``first .. first+count-1`` of the frame ``common`` names."""
    size = HEADER_SIZE * count
    start = HEADER_SIZE * first
    tpl = template(cap)[start : start + size]
    mixed = int.from_bytes(common * count, "big") ^ int.from_bytes(tpl, "big")
    return mixed.to_bytes(size, "big")


def common_header(ttl: int, src: bytes, dst: bytes, seq: int, total: int) -> bytes:
    return HEADER.pack(VERSION, DATA, ttl, 0, src, dst, seq, 0, total)


class Layout:
    """How to read a GRO batch of ``count`` datagrams of ``seg`` bytes (the last may be
    shorter) in place: ``fields`` unpacks every header as (prefix: version..seq, offset,
    total) skipping the payloads, ``bodies`` gives the payloads of all but the last as
    memoryview slices; each is one C call."""

    def __init__(self, seg: int, count: int) -> None:
        self.seg = seg
        self.count = count
        self.cap = cap = seg - HEADER_SIZE
        self.fields = struct.Struct("!" + f"20s4s4s{cap}x" * (count - 1) + "20s4s4s")
        bodies = [slice(i * seg + HEADER_SIZE, (i + 1) * seg) for i in range(count - 1)]
        if len(bodies) >= 2:
            self.bodies = cast(Getter, itemgetter(*bodies))
        else:
            only = bodies[0] if bodies else slice(0, 0)
            self.bodies = lambda view: (view[only],) if bodies else ()

    def parse(self, buf: bytes | bytearray | memoryview, n: int) -> Header | None:
        """The first header when the batch's ``n`` bytes are consecutive pieces of one DATA
        frame (same prefix and total everywhere, offsets ``cap`` apart), else None."""
        count, cap = self.count, self.cap
        payload = n - count * HEADER_SIZE
        if cap <= 0 or not (count - 1) * cap < payload <= count * cap:
            return None
        version, kind, ttl, flags, src, dst, seq, offset, total = HEADER.unpack_from(buf)
        if version != VERSION or kind != DATA or flags or offset % cap:
            return None
        if total > MAX_FRAME or offset + payload > total:
            return None
        t = self.fields.unpack_from(buf)
        if t[0::3].count(t[0]) != count or t[2::3].count(t[2]) != count:
            return None
        first = 4 * (offset // cap)
        if b"".join(t[1::3]) != offsets(cap)[first : first + 4 * count]:
            return None
        return Header(kind, ttl, src, dst, seq, offset, total)


def offsets(cap: int) -> bytes:
    """The offset fields (u32, network order) of every piece of a MAX_FRAME frame."""
    got = _offsets.get(cap)
    if got is None:
        if len(_offsets) >= MAX_CACHED:
            _offsets.clear()
        got = _offsets[cap] = b"".join(
            struct.pack("!I", i * cap) for i in range(-(-MAX_FRAME // cap)))
    return got
