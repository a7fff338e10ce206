"""Runs of sealed datagrams (one frame's consecutive pieces, consecutive pseqs) handled with a
constant number of Python operations: the AEAD is still called once per datagram, but from
``map`` (C), with every argument prepared as a block. Pure: buffers are parameters.

For a run of ``k`` datagrams of ``cap`` plaintext bytes (the last may be shorter) starting at
frame offset ``off`` and pseq ``p``, the 40-byte headers differ only in ``offset``
(``off + i*cap``) and ``pseq`` (``p + i``), and the 12-byte nonces are ``p + i``. So, as
integers over the whole block (big-endian, header ``i`` at bytes ``40*i``):

    headers = (common + p) * ONES(40, k) + cap * RAMP(40, k, at offset's place) + RAMP(40, k)
    nonces  = p * ONES(12, k) + RAMP(12, k)

where ``common`` is the header with ``offset = off`` and ``pseq = 0``, ``ONES`` has a 1 in the
last byte of every slot and ``RAMP`` ``i`` in slot ``i`` (fields never overflow: offsets stay
below ``MAX_FRAME``, pseqs below 2**32). Slices of the blocks and of the payload, ciphertext and
plaintext buffers come from cached ``itemgetter``s of slice objects (one C call for all k).
``Layout`` is per (stride, k); the send side uses it with stride ``cap``, the receive side with
the GRO segment size, and ``fields`` checks a received batch is such a run (one unpack).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import cast

from weave_cli.sleeve import wire

H, TAG = wire.SEALED_SIZE, wire.TAG_SIZE
MAX_RUN = 64  # datagrams per GSO send (the kernel's UDP_MAX_SEGMENTS)
Views = Sequence[memoryview]
Getter = Callable[[memoryview], Views]
_sink: deque[object] = deque(maxlen=0)


def consume(calls: Iterable[object]) -> None:
    """Run an iterator (a ``map`` of AEAD calls) to its end, in C."""
    _sink.extend(calls)


def _getter(slices: list[slice]) -> Getter:
    if len(slices) == 1:
        only = slices[0]
        return lambda view: (view[only],)
    return cast(Getter, itemgetter(*slices))


@lru_cache(maxsize=512)
def ones(width: int, k: int, shift: int = 0) -> int:
    return sum(1 << (8 * width * (k - 1 - i) + shift) for i in range(k))


@lru_cache(maxsize=512)
def ramp(width: int, k: int, shift: int = 0) -> int:
    return sum(i << (8 * width * (k - 1 - i) + shift) for i in range(k))


class Layout:
    """How to slice one run of ``k`` datagrams; ``cap`` plaintext bytes per datagram."""

    __slots__ = ("cap", "k", "seg", "plain", "sealed", "slots", "heads", "bodies",
                 "nonce_views", "fields", "off_ramp")

    def __init__(self, cap: int, k: int) -> None:
        self.cap, self.k = cap, k
        self.seg = seg = H + cap + TAG  # a whole sealed datagram
        self.plain = _getter([slice(i * cap, (i + 1) * cap) for i in range(k)])
        # ciphertext+tag slots back to back (sending) and header/body of received datagrams
        self.sealed = _getter([slice(i * (cap + TAG), (i + 1) * (cap + TAG)) for i in range(k)])
        self.slots = _getter([slice(i * H, (i + 1) * H) for i in range(k)])  # a header block
        self.heads = _getter([slice(i * seg, i * seg + H) for i in range(k)])
        self.bodies = _getter([slice(i * seg + H, (i + 1) * seg) for i in range(k)])
        self.nonce_views = _getter([slice(12 * i, 12 * (i + 1)) for i in range(k)])
        self.fields = struct.Struct("!" + f"20s4s4s8s4s{seg - H}x" * (k - 1) + "20s4s4s8s4s")
        self.off_ramp = ramp(4, k)

    def headers(self, common: bytes, first: int) -> bytes:
        k = self.k
        value = ((int.from_bytes(common, "big") + first) * ones(H, k)
                 + self.cap * ramp(H, k, 8 * 16) + ramp(H, k))
        return value.to_bytes(H * k, "big")

    def nonces(self, first: int) -> Views:
        k = self.k
        block = (first * ones(12, k) + ramp(12, k)).to_bytes(12 * k, "big")
        return self.nonce_views(memoryview(block))

    def offsets(self, off: int) -> bytes:
        """The offset fields of the run, as ``fields`` returns them joined."""
        return (off * ones(4, self.k) + self.cap * self.off_ramp).to_bytes(4 * self.k, "big")

    def pseqs(self, first: int) -> bytes:
        return (first * ones(4, self.k) + self.off_ramp).to_bytes(4 * self.k, "big")


_layouts: dict[tuple[int, int], Layout] = {}


def layout(cap: int, k: int) -> Layout:
    got = _layouts.get((cap, k))
    if got is None:
        if len(_layouts) >= 256:
            _layouts.clear()
        got = _layouts[(cap, k)] = Layout(cap, k)
    return got
