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
      6  1  crypto       0 = plaintext; 1 = encrypted, followed by a 32-byte X25519 public key
                         (weave_cli.crypto.handshake). Both sides must agree: a password on one
                         side only closes both with an ``auth_failed`` reason.
    then frames, in both directions
      0  4  length L     = 1 + len(body); 1 <= L <= 1 + limit, checked before buffering
      4  1  tag          a MessageTag
      5  L-1 body
    encrypted, the tag and body are sealed instead (weave_cli.crypto.frames): L = 1 + len(body)
    + 16 <= 17 + limit; a frame that fails to open closes the connection.
    the first frame is FEATURES (sent once the remote preamble is accepted); its body is the
    features map of weave_cli.router.features (4..64 entries). Encrypted, it is the first
    sealed frame, so a peer with another password fails right there; the keys are bound to
    both preambles as sent, so a preamble altered on the way (a lower version offered, say)
    fails there too.

``limit`` is ``FEATURES_MAX_BODY`` during the handshake and ``settings.max_frame`` after it.
Invariant: once ``receive_data`` returns, the input buffer holds at most one partial frame
(<= 4 + limit + 1 + 16 bytes), because every length is validated as soon as its 4 bytes arrive.
Hostile input never raises: every violation becomes one terminal ``Closed`` event.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Literal

from weave_cli.crypto.frames import OVERHEAD, FrameError
from weave_cli.crypto.handshake import PUBLIC_SIZE, Handshake, HandshakeError, Session
from weave_cli.errors import ProtocolError
from weave_cli.router import preamble
from weave_cli.router.features import (
    FEATURES_MAX_BODY,
    MAX_FEATURES,
    MAX_KEY,
    MAX_VALUE,
    REQUIRED_FEATURES,
    RemoteIdentity,
    decode_features,
    encode_features,
    parse_remote_identity,
)
from weave_cli.router.peer import valid_nickname
from weave_cli.router.protocol_types import (
    AUTH_FAILED,
    CRYPTO_NONE,
    CRYPTO_X25519,
    DEFAULT_SETTINGS,
    HEADER_SIZE,
    MAGIC,
    ONLY_HERE,
    ONLY_THERE,
    TAMPERED,
    USER_TAGS,
    WRONG_PASSWORD,
    Closed,
    Event,
    HandshakeDone,
    LocalIdentity,
    MessageReceived,
    MessageTag,
    ProtocolSettings,
    encode_frame,
)

__all__ = ["AUTH_FAILED", "CRYPTO_NONE", "CRYPTO_X25519", "FEATURES_MAX_BODY", "HEADER_SIZE",
           "MAGIC", "MAX_FEATURES", "MAX_KEY", "MAX_VALUE", "ONLY_HERE", "ONLY_THERE",
           "REQUIRED_FEATURES", "TAMPERED", "USER_TAGS", "WRONG_PASSWORD", "Closed",
           "ConnectionProtocol", "Event", "HandshakeDone", "LocalIdentity", "MessageReceived",
           "MessageTag", "ProtocolSettings", "RemoteIdentity", "decode_features",
           "encode_features", "encode_frame", "parse_remote_identity"]
State = Literal["handshake", "established", "closed"]
_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "handshake": frozenset({"established", "closed"}),
    "established": frozenset({"closed"}),
    "closed": frozenset(),
}


_Violation = preamble.Violation  # raised inside the parser; becomes Closed(reason)


def _one_line(reason: str) -> str:
    return " ".join(reason.split()) or "closed"


class ConnectionProtocol:
    """One connection, either direction. ``state`` moves handshake -> established -> closed.

    Sending: the preamble is queued by the constructor; the FEATURES frame once the remote
    preamble is accepted; HEARTBEAT frames every ``heartbeat_interval`` once established (on a
    fixed schedule from the moment of establishment, one per ``handle_timer`` call at most).
    Receiving: any complete frame proves liveness; ``heartbeat_timeout`` after the last one
    (or after establishment) the connection closes. Closing discards bytes not yet drained
    by ``data_to_send`` (except after an auth failure: see ``close``); after ``Closed`` no
    byte is accepted and none is produced beyond those.
    Encryption: with a ``handshake`` (the router has a password) the preamble carries crypto
    byte 1 and its public key, and once the peer's key is read every frame, FEATURES first,
    is sealed by ``session``; without one the bytes are exactly those of plaintext mode.
    """

    def __init__(self, local: LocalIdentity, *, outbound: bool, conn_id: int, now: float,
                 settings: ProtocolSettings = DEFAULT_SETTINGS,
                 handshake: Handshake | None = None) -> None:
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
        self._handshake = handshake
        self.session: Session | None = None
        self._preamble = preamble.build(settings, None if handshake is None else handshake.public)
        self._outbuf = bytearray(self._preamble)
        self._remote_header = b""
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
            self.close(str(exc), linger=str(exc).startswith(AUTH_FAILED))
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
                self._outbuf += self._frame(MessageTag.HEARTBEAT, b"")
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
        self._outbuf += self._frame(tag, bytes(body))

    @property
    def encrypted(self) -> bool:
        return self._handshake is not None

    @property
    def link_secret(self) -> bytes:
        """The sleeve's 32-byte secret of this connection; b"" until keyed or when plaintext."""
        return self.session.link_secret if self.session is not None else b""

    def close(self, reason: str, *, linger: bool = False) -> None:
        """Terminal. ``linger`` (auth failures only) keeps the bytes already queued — at most
        our preamble and sealed FEATURES — so the peer can read them and fail the same way
        instead of seeing a bare hang-up; they are drained once, then nothing more."""
        if self.state == "closed":
            return
        self._set_state("closed")
        self._inbuf.clear()
        if not linger:
            self._outbuf.clear()
        self._events.append(Closed(_one_line(reason)))

    # -- internals -------------------------------------------------------------------------

    def _set_state(self, new: State) -> None:
        assert new in _TRANSITIONS[self.state], f"{self.state} -> {new}"
        self.state = new

    def _frame(self, tag: MessageTag, body: bytes) -> bytes:
        if self.session is None:
            return encode_frame(tag, body)
        return self.session.tx.seal(tag, body)

    def _handshake_timeout_reason(self) -> str:
        return f"handshake timed out after {self.settings.handshake_timeout:g}s"

    def _parse(self, now: float) -> None:
        buf, pos = self._inbuf, 0
        while self.state != "closed":
            avail = len(buf) - pos
            if self._rx == "header":
                preamble.check_magic(bytes(buf[pos : pos + HEADER_SIZE]))
                if avail < HEADER_SIZE:
                    break
                self.version = preamble.negotiate(self.settings, buf[pos + 4], buf[pos + 5])
                self._remote_header = bytes(buf[pos : pos + HEADER_SIZE])
                pos += HEADER_SIZE
                self._rx = "crypto"
            elif self._rx == "crypto":
                used = self._crypto(bytes(buf[pos : pos + 1 + PUBLIC_SIZE]))
                if not used:
                    break
                pos += used
                self._rx = "frames"
                self._outbuf += self._frame(MessageTag.FEATURES, self._features_body)
            else:
                if avail < 4:
                    break
                length = int.from_bytes(buf[pos : pos + 4], "big")
                limit = self.settings.max_frame if self.state == "established" \
                    else FEATURES_MAX_BODY
                low, high = (1, limit + 1) if self.session is None \
                    else (1 + OVERHEAD, limit + 1 + OVERHEAD)
                if not low <= length <= high:
                    raise _Violation(f"invalid frame length {length} (limit {high})")
                if avail < 4 + length:
                    break
                if self.session is None:
                    tag, body = buf[pos + 4], bytes(buf[pos + 5 : pos + 4 + length])
                else:
                    tag, body = self._open(self.session, bytes(buf[pos : pos + 4]),
                                           bytes(buf[pos + 4 : pos + 4 + length]))
                pos += 4 + length
                self._on_frame(tag, body, now)
        if self.state != "closed":
            del buf[:pos]

    def _crypto(self, head: bytes) -> int:
        """Check the peer's crypto field (and key); the bytes used, 0 when more are needed."""
        used = preamble.crypto_size(head, self._handshake is not None)
        if used <= 1 or self._handshake is None:
            return used
        try:
            self.session = self._handshake.complete(
                head[1:used], local_preamble=self._preamble,
                remote_preamble=self._remote_header + head[:used])
        except HandshakeError as err:
            raise _Violation(f"{AUTH_FAILED}: {err}") from None
        return used

    def _open(self, session: Session, header: bytes, sealed: bytes) -> tuple[int, bytes]:
        try:
            return session.open(header, sealed)
        except FrameError:
            raise _Violation(WRONG_PASSWORD if self.state == "handshake" else TAMPERED) from None

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
