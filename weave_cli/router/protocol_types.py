"""The vocabulary of one mesh connection: tags, settings, identities, events, reasons.

Split from ``protocol.py`` (which re-exports every name here) so the state machine stays
readable. All frozen dataclasses; ``ProtocolSettings`` validates itself on construction.
The ``AUTH_FAILED`` reasons are what ``weave status connections`` shows for a password
mismatch: all begin with the word ``auth_failed``, and none tells which side has which
password (a wrong password and a different one read the same).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from weave_cli.router.features import RemoteIdentity
from weave_cli.router.peer import PeerName

MAGIC: Final = b"WVPY"
HEADER_SIZE: Final = len(MAGIC) + 2
CRYPTO_NONE: Final = 0
CRYPTO_X25519: Final = 1
AUTH_FAILED: Final = "auth_failed"
WRONG_PASSWORD: Final = f"{AUTH_FAILED}: wrong password or peer has a different password"
ONLY_HERE: Final = f"{AUTH_FAILED}: password set here, but the peer wants plaintext"
ONLY_THERE: Final = (f"{AUTH_FAILED}: the peer requires a password (it requested encryption), "
                     "but none is set here")
TAMPERED: Final = "decryption failed: a frame was altered, replayed, reordered or truncated"


class MessageTag(enum.IntEnum):
    """The tag byte of a frame. 1..3 stay unused (the original's sleeve messages)."""

    HEARTBEAT = 0
    GOSSIP = 4  # neighbour gossip (digest / anti-entropy)
    GOSSIP_UNICAST = 5
    GOSSIP_BROADCAST = 6
    OVERLAY_CONTROL = 7  # reserved for the data path (later)
    FEATURES = 8  # the first frame of each direction; internal


USER_TAGS: Final = frozenset(
    {MessageTag.GOSSIP, MessageTag.GOSSIP_UNICAST, MessageTag.GOSSIP_BROADCAST,
     MessageTag.OVERLAY_CONTROL}
)


@dataclass(frozen=True)
class ProtocolSettings:
    min_version: int = 1
    max_version: int = 1
    max_frame: int = 8 * 1024 * 1024  # max frame body size, checked before allocating
    handshake_timeout: float = 10.0  # preamble + features must complete within this
    heartbeat_interval: float = 5.0  # send a HEARTBEAT frame this often once established
    heartbeat_timeout: float = 20.0  # Closed("heartbeat timeout ...") after this much silence

    def __post_init__(self) -> None:
        if not 1 <= self.min_version <= self.max_version <= 255:
            raise ValueError(f"bad version range [{self.min_version},{self.max_version}]")
        if not 1 <= self.max_frame < (1 << 32) - 1:
            raise ValueError(f"max_frame out of range: {self.max_frame}")
        if min(self.handshake_timeout, self.heartbeat_interval, self.heartbeat_timeout) <= 0:
            raise ValueError("protocol timeouts and intervals must be positive")


DEFAULT_SETTINGS: Final = ProtocolSettings()


@dataclass(frozen=True)
class LocalIdentity:
    name: PeerName
    nickname: str
    uid: int  # run id, non-zero
    features: Mapping[str, str] = field(default_factory=dict)  # extras: "ShortID", "Overlays"...


@dataclass(frozen=True)
class HandshakeDone:
    remote: RemoteIdentity
    version: int
    conn_uid: int  # local conn_id XOR remote conn_id: the same value at both ends


@dataclass(frozen=True)
class MessageReceived:
    tag: MessageTag  # never HEARTBEAT or FEATURES: those are consumed here
    body: bytes


@dataclass(frozen=True)
class Closed:
    reason: str  # terminal; one readable line, shown in `weave status`


Event = HandshakeDone | MessageReceived | Closed


def encode_frame(tag: MessageTag, body: bytes) -> bytes:
    return (len(body) + 1).to_bytes(4, "big") + bytes([tag]) + body
