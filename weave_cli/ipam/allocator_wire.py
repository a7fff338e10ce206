"""The allocator's vocabulary: init modes, results, output actions and the payload formats.

Payloads (integers unsigned big-endian; every length is checked against the bytes present)::

    gossip   "WAG1" flags(1) ring_len(4) ring paxos_len(4) paxos
             flags bit 0: "I need a ring" (an observer or elector with waiting requests);
             ring is ``Ring.to_bytes`` or empty, paxos is ``GossipState.to_bytes`` or empty
             (only sent while our ring is empty)
    unicast  "WAU1" kind(1) body
             kind 0 space request: start(8) end(8), the range we want addresses in
             kind 1 ring update:   Ring.to_bytes
             kind 2 space request denied: empty

Decoding failures raise :class:`AllocatorError`; the daemon drops the sender's connection.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from weave_cli.errors import WeaveError
from weave_cli.ipam.address import ADDRESS_SPACE, Range
from weave_cli.ipam.store import Change
from weave_cli.router.peer import PeerName

_GOSSIP_MAGIC = b"WAG1"
_UNICAST_MAGIC = b"WAU1"
_U32 = struct.Struct(">I")
_RANGE = struct.Struct(">QQ")
NEED_RING = 0x01


class AllocatorError(WeaveError):
    """A malformed allocator message, or a request the allocator refuses outright."""


# -- init modes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Consensus:
    """``--ipalloc-init consensus=N``: Paxos among electors, quorum ``N // 2 + 1``."""

    n: int


@dataclass(frozen=True)
class Seed:
    """``--ipalloc-init seed=p1,p2,...``: the ring is divided between these peers at once."""

    peers: tuple[PeerName, ...]


@dataclass(frozen=True)
class Observer:
    """``--ipalloc-init observer``: no vote; asks electors for a ring when it needs one."""


InitMode = Consensus | Seed | Observer


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """The request waits (for consensus, a ring or space); a ``Reply`` with this id follows."""

    request_id: int


@dataclass(frozen=True)
class Failed:
    """The request was refused; ``message`` says why, in the original's words."""

    message: str


Result = str | Pending | Failed


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Persist:
    """Write ``change`` durably before carrying out any later action."""

    change: Change


@dataclass(frozen=True)
class Broadcast:
    payload: bytes


@dataclass(frozen=True)
class Unicast:
    dst: PeerName
    payload: bytes


@dataclass(frozen=True)
class Reply:
    request_id: int
    result: str | Failed


@dataclass(frozen=True)
class Conflict:
    """A merge reported double claims or lost ranges; ``idents`` held addresses in lost ones."""

    messages: tuple[str, ...]
    idents: tuple[str, ...]


Action = Persist | Broadcast | Unicast | Reply | Conflict


# -- payloads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gossip:
    need_ring: bool
    ring: bytes
    paxos: bytes


class UnicastKind(enum.IntEnum):
    SPACE_REQUEST = 0
    RING_UPDATE = 1
    SPACE_DENIED = 2


@dataclass(frozen=True)
class UnicastMsg:
    kind: UnicastKind
    ring: bytes = b""
    want: Range | None = None


def encode_gossip(g: Gossip) -> bytes:
    flags = NEED_RING if g.need_ring else 0
    return b"".join(
        [_GOSSIP_MAGIC, bytes([flags]), _U32.pack(len(g.ring)), g.ring,
         _U32.pack(len(g.paxos)), g.paxos]
    )  # fmt: skip


def decode_gossip(data: bytes) -> Gossip:
    if data[:4] != _GOSSIP_MAGIC or len(data) < 9:
        raise AllocatorError("malformed IPAM gossip: bad header")
    flags = data[4]
    if flags & ~NEED_RING:
        raise AllocatorError(f"malformed IPAM gossip: unknown flags {flags:#x}")
    pos = 5
    parts: list[bytes] = []
    for _ in range(2):
        if len(data) - pos < 4:
            raise AllocatorError("malformed IPAM gossip: truncated")
        (size,) = _U32.unpack_from(data, pos)
        pos += 4
        if size > len(data) - pos:
            raise AllocatorError("malformed IPAM gossip: length exceeds the data")
        parts.append(bytes(data[pos : pos + size]))
        pos += size
    if pos != len(data):
        raise AllocatorError("malformed IPAM gossip: stray bytes")
    return Gossip(bool(flags & NEED_RING), parts[0], parts[1])


def encode_unicast(m: UnicastMsg) -> bytes:
    head = _UNICAST_MAGIC + bytes([m.kind])
    if m.kind == UnicastKind.SPACE_REQUEST:
        assert m.want is not None
        return head + _RANGE.pack(m.want.start, m.want.end)
    if m.kind == UnicastKind.RING_UPDATE:
        return head + m.ring
    return head


def decode_unicast(data: bytes) -> UnicastMsg:
    if data[:4] != _UNICAST_MAGIC or len(data) < 5:
        raise AllocatorError("malformed IPAM message: bad header")
    try:
        kind = UnicastKind(data[4])
    except ValueError:
        raise AllocatorError(f"malformed IPAM message: unknown kind {data[4]}") from None
    body = bytes(data[5:])
    if kind == UnicastKind.SPACE_REQUEST:
        if len(body) != _RANGE.size:
            raise AllocatorError("malformed IPAM space request")
        start, end = _RANGE.unpack(body)
        if not 0 <= start < end <= ADDRESS_SPACE:
            raise AllocatorError(f"malformed IPAM space request: [{start}, {end})")
        return UnicastMsg(kind, want=Range(start, end))
    if kind == UnicastKind.RING_UPDATE:
        return UnicastMsg(kind, ring=body)
    if body:
        raise AllocatorError("malformed IPAM space-denied message")
    return UnicastMsg(kind)
