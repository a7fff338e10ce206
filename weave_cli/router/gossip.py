"""The gossip message codec: what travels in the body of a GOSSIP* frame. Pure.

Gossip is multiplexed over named channels (``topology`` now; IPAM and DNS later). A channel
name is 1..32 characters of ``[A-Za-z0-9_-]``. Three frame tags carry gossip:

* ``GOSSIP`` — between neighbours only (digests, anti-entropy replies); never relayed.
* ``GOSSIP_UNICAST`` — addressed to one peer (``dst``); relayed hop by hop along unicast routes.
* ``GOSSIP_BROADCAST`` — to every peer; relayed along the broadcast tree rooted at ``src``.

Body layout (the frame's tag byte is not part of it)::

    offset     size  field
    0          1     channel_len  C, 1..32
    1          C     channel      ASCII [A-Za-z0-9_-]
    1+C        6     src          the originating peer's 48-bit name, big-endian
    7+C        6     dst          GOSSIP_UNICAST only: the destination peer's name
    7+C (13+C) rest  payload      opaque to this module; may be empty

So the fixed overhead is 7 + C bytes (13 + C for unicast). Whether ``dst`` is present is
decided by the frame tag, never guessed from the length. The payload length is implied by
the frame length, which the connection protocol has already bounded by ``max_frame``.

Errors: ``decode_gossip`` raises ``ProtocolError`` (network input: the caller closes the
connection); encoding something that cannot be represented is a programming error and
raises ``ValueError``. The relay rules and channel handlers live with the mesh core.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from weave_cli.errors import ProtocolError
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import MessageTag

CHANNEL_RE: Final = re.compile(r"\A[A-Za-z0-9_-]{1,32}\Z")
MAX_CHANNEL: Final = 32
GOSSIP_TAGS: Final = frozenset(
    {MessageTag.GOSSIP, MessageTag.GOSSIP_UNICAST, MessageTag.GOSSIP_BROADCAST}
)
_NAME_SIZE: Final = 6


@dataclass(frozen=True)
class GossipMessage:
    """One gossip message. ``dst`` is set exactly for unicast; ``payload`` is opaque."""

    channel: str
    src: PeerName
    dst: PeerName | None
    payload: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.channel, str) or not CHANNEL_RE.match(self.channel):
            raise ValueError(f"invalid gossip channel name {self.channel!r}: "
                             "expected 1..32 characters of [A-Za-z0-9_-]")


def header_size(kind: MessageTag, channel: str) -> int:
    """Bytes of the body before the payload (for callers that budget against max_frame)."""
    dst = _NAME_SIZE if kind == MessageTag.GOSSIP_UNICAST else 0
    return 1 + len(channel) + _NAME_SIZE + dst


def encode_gossip(kind: MessageTag, msg: GossipMessage) -> bytes:
    """The frame body for ``msg`` sent with tag ``kind``.

    Raises ValueError when ``kind`` is not a gossip tag, or when ``dst`` is missing for
    unicast or present for the other two kinds.
    """
    if kind not in GOSSIP_TAGS:
        raise ValueError(f"{kind!r} is not a gossip message tag")
    unicast = kind == MessageTag.GOSSIP_UNICAST
    if unicast and msg.dst is None:
        raise ValueError("a unicast gossip message needs a destination")
    if not unicast and msg.dst is not None:
        raise ValueError(f"{kind.name} gossip messages carry no destination")
    channel = msg.channel.encode("ascii")
    parts = [bytes([len(channel)]), channel, PeerName(msg.src).to_bytes6()]
    if msg.dst is not None:
        parts.append(PeerName(msg.dst).to_bytes6())
    parts.append(bytes(msg.payload))
    return b"".join(parts)


def decode_gossip(kind: MessageTag, body: bytes) -> GossipMessage:
    """Parse a frame body received with tag ``kind``; ProtocolError on anything malformed."""
    if kind not in GOSSIP_TAGS:
        raise ProtocolError(f"tag {int(kind)} does not carry gossip")
    if not body:
        raise ProtocolError("empty gossip message")
    clen = body[0]
    raw_channel = bytes(body[1 : 1 + clen])
    channel = raw_channel.decode("latin-1")
    if not 1 <= clen <= MAX_CHANNEL or len(raw_channel) != clen or not CHANNEL_RE.match(channel):
        raise ProtocolError(f"invalid gossip channel name {raw_channel[:MAX_CHANNEL]!r}")
    pos = 1 + clen
    names = 2 if kind == MessageTag.GOSSIP_UNICAST else 1
    if len(body) < pos + names * _NAME_SIZE:
        raise ProtocolError(f"truncated {kind.name} message on channel {channel!r}")
    src = PeerName.from_bytes6(bytes(body[pos : pos + _NAME_SIZE]))
    pos += _NAME_SIZE
    dst = None
    if names == 2:
        dst = PeerName.from_bytes6(bytes(body[pos : pos + _NAME_SIZE]))
        pos += _NAME_SIZE
    return GossipMessage(channel, src, dst, bytes(body[pos:]))
