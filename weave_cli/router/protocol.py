"""One mesh connection as a sans-I/O state machine: preamble, framing, features, heartbeats.

The driver feeds bytes in (``receive_data``), takes bytes out (``data_to_send``), reads typed
events (``next_event``) and calls ``handle_timer`` at ``get_timer()``. Nothing here reads a
clock, draws randomness (``conn_id`` comes from the caller) or touches a socket. Not
wire-compatible with the Go original; docs/protocol.md has the full specification.

Wire layout (all integers unsigned, big-endian)::

    preamble, sent by both sides at once (7 bytes)
      0  4  magic        b"WVPY" (57 56 50 59)
      4  1  min_version  oldest version we speak
      5  1  max_version  newest version we speak
      6  1  crypto       0 = plaintext; anything else is rejected for now ("encryption").
                         Reserved: 1 followed by a 32-byte X25519 public key.
    then frames, in both directions
      0  4  length L     = 1 + len(body); 1 <= L <= 1 + limit, checked before buffering
      4  1  tag          a MessageTag
      5  L-1 body
    the first frame is FEATURES (sent once the remote preamble is accepted); its body:
      0  1  count N      number of entries, 4 <= N <= 64
      then N times:  key_len (1 byte, 1..64), key (ASCII [A-Za-z0-9_.-]),
                     value_len (2 bytes, 0..1024), value (UTF-8, no control characters)

``limit`` is ``FEATURES_MAX_BODY`` during the handshake and ``settings.max_frame`` after it.
Invariant: once ``receive_data`` returns, the input buffer holds at most one partial frame
(<= 5 + limit bytes), because every length is validated as soon as its 4 bytes arrive.
Hostile input never raises: every violation becomes one terminal ``Closed`` event.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from weave_cli.errors import ProtocolError
from weave_cli.router.peer import PeerName, valid_nickname

MAGIC: Final = b"WVPY"
HEADER_SIZE: Final = len(MAGIC) + 2
CRYPTO_NONE: Final = 0
MAX_FEATURES: Final = 64
MAX_KEY: Final = 64
MAX_VALUE: Final = 1024
FEATURES_MAX_BODY: Final = 1 + MAX_FEATURES * (1 + MAX_KEY + 2 + MAX_VALUE)
REQUIRED_FEATURES: Final = ("Name", "NickName", "UID", "ConnID")
_KEY_RE: Final = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DECIMAL_RE: Final = re.compile(r"\A(0|[1-9][0-9]{0,19})\Z")
_GO_MAGIC: Final = b"weave"


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


@dataclass(frozen=True)
class LocalIdentity:
    name: PeerName
    nickname: str
    uid: int  # run id, non-zero
    features: Mapping[str, str] = field(default_factory=dict)  # extras: "ShortID", "Overlays"...


@dataclass(frozen=True)
class RemoteIdentity:
    name: PeerName
    nickname: str
    uid: int
    conn_id: int
    features: Mapping[str, str]  # the extras only: the required four are the fields above


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
State = Literal["handshake", "established", "closed"]
_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "handshake": frozenset({"established", "closed"}),
    "established": frozenset({"closed"}),
    "closed": frozenset(),
}


class _Violation(Exception):
    """Raised inside the parser; becomes Closed(reason)."""


def _show(value: str | bytes, limit: int = 32) -> str:
    """A bounded, escaped rendering of untrusted input for a one-line reason."""
    text = repr(value[:limit])
    return text + "..." if len(value) > limit else text


def encode_frame(tag: MessageTag, body: bytes) -> bytes:
    return (len(body) + 1).to_bytes(4, "big") + bytes([tag]) + body


def encode_features(features: Mapping[str, str]) -> bytes:
    """Encode a validated map (raises ValueError when it breaks the limits)."""
    if len(features) > MAX_FEATURES:
        raise ValueError(f"too many features: {len(features)} > {MAX_FEATURES}")
    out = bytearray([len(features)])
    for key, value in features.items():
        raw = value.encode("utf-8")
        if not _KEY_RE.match(key) or len(raw) > MAX_VALUE or _CONTROL_RE.search(value):
            raise ValueError(f"invalid feature {_show(key)}={_show(value)}")
        out += bytes([len(key)]) + key.encode("ascii") + len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def decode_features(body: bytes) -> dict[str, str]:
    """Decode a FEATURES body; raises ProtocolError on anything malformed. Never over-reads."""
    if not body or body[0] > MAX_FEATURES:
        raise ProtocolError("invalid features: entry count missing or above 64")
    result: dict[str, str] = {}
    pos = 1
    for _ in range(body[0]):
        klen = body[pos] if pos < len(body) else 0
        key_raw = body[pos + 1 : pos + 1 + klen]
        pos += 1 + klen
        vlen = int.from_bytes(body[pos : pos + 2], "big")
        value_raw = body[pos + 2 : pos + 2 + vlen]
        pos += 2 + vlen
        if pos > len(body) or not 1 <= klen <= MAX_KEY or vlen > MAX_VALUE:
            raise ProtocolError("invalid features: truncated or oversized entry")
        key = key_raw.decode("latin-1")
        try:
            value = value_raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"invalid features: value of {_show(key)} is not UTF-8") from None
        if not _KEY_RE.match(key) or _CONTROL_RE.search(value) or key in result:
            raise ProtocolError(f"invalid features: bad or duplicate entry {_show(key)}")
        result[key] = value
    if pos != len(body):
        raise ProtocolError("invalid features: trailing bytes")
    return result


def _decimal(features: Mapping[str, str], key: str) -> int:
    text = features[key]
    if not _DECIMAL_RE.match(text) or int(text) >= 1 << 64:
        raise ProtocolError(f"invalid feature {key}={_show(text)}: expected a 64-bit decimal")
    return int(text)


def parse_remote_identity(features: Mapping[str, str]) -> RemoteIdentity:
    """Validate the required features; raises ProtocolError with a one-line reason."""
    missing = [key for key in REQUIRED_FEATURES if key not in features]
    if missing:
        raise ProtocolError(f"missing required features: {', '.join(missing)}")
    try:
        name = PeerName.parse(features["Name"])
    except ValueError:
        raise ProtocolError(f"invalid feature Name={_show(features['Name'])}") from None
    nickname = features["NickName"]
    if not valid_nickname(nickname):
        raise ProtocolError(f"invalid feature NickName={_show(nickname)}")
    uid = _decimal(features, "UID")
    if uid == 0:
        raise ProtocolError("invalid feature UID=0: the run id must be non-zero")
    extras = {k: v for k, v in features.items() if k not in REQUIRED_FEATURES}
    return RemoteIdentity(name, nickname, uid, _decimal(features, "ConnID"),
                          MappingProxyType(extras))


def _one_line(reason: str) -> str:
    return " ".join(reason.split()) or "closed"


class ConnectionProtocol:
    """One connection, either direction. ``state`` moves handshake -> established -> closed.

    Sending: the preamble is queued by the constructor; the FEATURES frame once the remote
    preamble is accepted; HEARTBEAT frames every ``heartbeat_interval`` once established (on a
    fixed schedule from the moment of establishment, one per ``handle_timer`` call at most).
    Receiving: any complete frame proves liveness; ``heartbeat_timeout`` after the last one
    (or after establishment) the connection closes. Closing discards bytes not yet drained
    by ``data_to_send``: after ``Closed`` no byte is produced or accepted, ever.
    """

    def __init__(self, local: LocalIdentity, *, outbound: bool, conn_id: int, now: float,
                 settings: ProtocolSettings = ProtocolSettings()) -> None:
        if not 0 <= conn_id < 1 << 64 or not 0 < local.uid < 1 << 64:
            raise ValueError("conn_id must be in [0, 2**64) and uid in (0, 2**64)")
        if not valid_nickname(local.nickname):
            raise ValueError(f"invalid nickname {local.nickname!r}")
        if clash := set(REQUIRED_FEATURES) & set(local.features):
            raise ValueError(f"reserved feature names in LocalIdentity.features: {sorted(clash)}")
        required = {"Name": str(local.name), "NickName": local.nickname,
                    "UID": str(local.uid), "ConnID": str(conn_id)}
        self._features_body = encode_features({**required, **local.features})
        self.local, self.outbound, self.conn_id, self.settings = local, outbound, conn_id, settings
        self.state: State = "handshake"
        self.remote: RemoteIdentity | None = None
        self.version: int | None = None
        self._inbuf = bytearray()
        self._outbuf = bytearray(MAGIC + bytes([settings.min_version, settings.max_version,
                                                CRYPTO_NONE]))
        self._events: deque[Event] = deque()
        self._rx: Literal["header", "crypto", "frames"] = "header"
        self._handshake_deadline = now + settings.handshake_timeout
        self._next_heartbeat = 0.0
        self._last_frame = now

    # -- driver interface ------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        if self.state == "closed" or not data:
            return
        if self.state == "handshake" and now >= self._handshake_deadline:
            self.close(self._handshake_timeout_reason())
            return
        self._inbuf += data
        try:
            self._parse(now)
        except _Violation as exc:
            self.close(str(exc))
        except ProtocolError as exc:
            self.close(exc.message)
        except Exception as exc:  # a bug must cost one connection, never the router
            self.close(f"internal error while decoding input: {type(exc).__name__}")

    def eof_received(self, now: float) -> None:
        if self.state != "closed":
            self.close("connection closed by peer")

    def data_to_send(self) -> bytes:
        data = bytes(self._outbuf)
        self._outbuf.clear()
        return data

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self.state == "handshake":
            return self._handshake_deadline
        if self.state == "established":
            return min(self._next_heartbeat, self._last_frame + self.settings.heartbeat_timeout)
        return None

    def handle_timer(self, now: float) -> None:
        if self.state == "handshake" and now >= self._handshake_deadline:
            self.close(self._handshake_timeout_reason())
        elif self.state == "established":
            timeout = self.settings.heartbeat_timeout
            if now >= self._last_frame + timeout:
                self.close(f"heartbeat timeout: nothing received for {timeout:g}s")
                return
            if now >= self._next_heartbeat:
                self._outbuf += encode_frame(MessageTag.HEARTBEAT, b"")
                interval = self.settings.heartbeat_interval
                while self._next_heartbeat <= now:
                    self._next_heartbeat += interval

    def send_message(self, tag: MessageTag, body: bytes) -> None:
        if self.state != "established":
            raise ProtocolError(f"cannot send on a connection in state {self.state!r}")
        if tag not in USER_TAGS:
            raise ProtocolError(f"message tag {tag!r} is internal to the protocol")
        if len(body) > self.settings.max_frame:
            raise ProtocolError(f"message of {len(body)} bytes exceeds max_frame "
                                f"{self.settings.max_frame}")
        self._outbuf += encode_frame(tag, bytes(body))

    def close(self, reason: str) -> None:
        if self.state == "closed":
            return
        self._set_state("closed")
        self._inbuf.clear()
        self._outbuf.clear()
        self._events.append(Closed(_one_line(reason)))

    # -- internals -------------------------------------------------------------------------

    def _set_state(self, new: State) -> None:
        assert new in _TRANSITIONS[self.state], f"{self.state} -> {new}"
        self.state = new

    def _handshake_timeout_reason(self) -> str:
        return f"handshake timed out after {self.settings.handshake_timeout:g}s"

    def _parse(self, now: float) -> None:
        buf, pos = self._inbuf, 0
        while self.state != "closed":
            avail = len(buf) - pos
            if self._rx == "header":
                self._check_magic(bytes(buf[pos : pos + HEADER_SIZE]))
                if avail < HEADER_SIZE:
                    break
                self._negotiate(buf[pos + 4], buf[pos + 5])
                pos += HEADER_SIZE
                self._rx = "crypto"
            elif self._rx == "crypto":
                if avail < 1:
                    break
                if buf[pos] != CRYPTO_NONE:
                    raise _Violation("peer requested encryption (crypto field "
                                     f"{buf[pos]}), which this version does not support")
                pos += 1
                self._rx = "frames"
                self._outbuf += encode_frame(MessageTag.FEATURES, self._features_body)
            else:
                if avail < 4:
                    break
                length = int.from_bytes(buf[pos : pos + 4], "big")
                limit = self.settings.max_frame if self.state == "established" \
                    else FEATURES_MAX_BODY
                if not 1 <= length <= limit + 1:
                    raise _Violation(f"invalid frame length {length} (limit {limit + 1})")
                if avail < 4 + length:
                    break
                tag, body = buf[pos + 4], bytes(buf[pos + 5 : pos + 4 + length])
                pos += 4 + length
                self._on_frame(tag, body, now)
        if self.state != "closed":
            del buf[:pos]

    def _check_magic(self, head: bytes) -> None:
        got = head[: len(MAGIC)]
        if MAGIC.startswith(got):
            return
        if _GO_MAGIC.startswith(head[: len(_GO_MAGIC)]) and len(head) < len(_GO_MAGIC):
            return  # might still be the Go original: wait for one more byte to say so
        if head.startswith(_GO_MAGIC):
            raise _Violation("not a weave peer of this implementation: the remote speaks the "
                             "Go weave protocol, which is not wire-compatible")
        raise _Violation(f"not a weave peer (bad magic {got.hex() or 'none'})")

    def _negotiate(self, their_min: int, their_max: int) -> None:
        ours = self.settings
        chosen = min(ours.max_version, their_max)
        if chosen < max(ours.min_version, their_min):
            raise _Violation(f"remote version range [{their_min},{their_max}] is incompatible "
                             f"with ours [{ours.min_version},{ours.max_version}]")
        self.version = chosen

    def _on_frame(self, tag: int, body: bytes, now: float) -> None:
        self._last_frame = now
        if self.state == "handshake":
            if tag != MessageTag.FEATURES:
                raise _Violation(f"expected the features frame first, got tag {tag}")
            remote = parse_remote_identity(decode_features(body))
            if remote.name == self.local.name:
                raise _Violation("cannot connect to ourself")
            self.remote = remote
            self._set_state("established")
            self._next_heartbeat = now + self.settings.heartbeat_interval
            assert self.version is not None
            self._events.append(HandshakeDone(remote, self.version, self.conn_id ^ remote.conn_id))
        elif tag == MessageTag.HEARTBEAT:
            if body:
                raise _Violation("heartbeat frame with a body")
        elif tag in USER_TAGS:
            self._events.append(MessageReceived(MessageTag(tag), body))
        else:
            raise _Violation(f"unexpected message tag {tag} after the handshake")
