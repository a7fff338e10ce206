"""The key exchange of one encrypted connection: ephemeral X25519 bound to the password key.

Each side sends crypto byte 1 and a fresh 32-byte X25519 public key in its preamble
(``Handshake.public``); once the peer's preamble arrives, ``complete`` derives the
``Session``. The password is proven implicitly: a peer with another password (so another
``password_key``) derives other keys, and the first frame it sends — FEATURES — fails to open.
Neither the password nor anything derived from it is ever sent.

Keys (``PasswordKeys``): a router seals with one key, ``send``, and accepts frames under it and
under at most one other, ``also`` (a password rotation: docs/security.md). So each direction is
keyed by the session of the key its *sender* uses; the receiver keeps one candidate cipher per
key it accepts until the peer's first frame opens under one of them (``Session.open``), and only
then is ``link_secret`` known. Outside a rotation there is exactly one candidate.
Invariants: one ``Handshake`` per connection (``complete`` works once); its private key comes
from the caller (fresh OS randomness in the router), and it is dropped after ``complete``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from weave_cli.crypto.frames import ACCEPTOR, DIALLER, FrameCipher, FrameError
from weave_cli.crypto.kdf import direction_key, link_secret, session_secret
from weave_cli.crypto.secret import Secret

PUBLIC_SIZE: Final = 32
PRIVATE_SIZE: Final = 32
Rotation = Literal["", "begun", "switched"]


class HandshakeError(Exception):
    """The peer's public key is unusable (low order, our own key reflected, wrong size)."""


@dataclass(frozen=True)
class PasswordKeys:
    """The scrypt keys of a router: ``send`` seals our frames, ``also`` is accepted besides it.

    ``rotation`` says what ``also`` is: ``"begun"`` the next password (we still send with the
    current one), ``"switched"`` the previous one (we send with the new one); ``""`` none.
    """

    send: Secret = field(repr=False)
    also: Secret | None = field(default=None, repr=False)
    rotation: Rotation = ""

    def __post_init__(self) -> None:
        if (self.also is None) != (self.rotation == ""):
            raise ValueError("a second key needs a rotation phase, and only then")
        if self.also is not None and self.also == self.send:
            raise ValueError("the second key equals the first")

    @property
    def accepted(self) -> tuple[Secret, ...]:
        return (self.send,) if self.also is None else (self.send, self.also)

    def accepts(self, key: Secret) -> bool:
        return any(key == k for k in self.accepted)


class Session:
    """The frame ciphers and link secret of one connection.

    ``tx`` seals our frames; ``open`` opens the peer's, trying each candidate (one per key we
    accept) on the first frame and keeping the one that opened it. ``keys_used`` is (our send
    key, the peer's) once keyed, so a rotation can tell which connections still rest on a key
    it no longer accepts. ``link_secret`` is b"" until the first frame opened.
    """

    __slots__ = ("tx", "_candidates", "_rx", "_own", "_outbound", "keys_used", "link_secret")

    def __init__(self, tx: FrameCipher, own: tuple[Secret, bytes],
                 candidates: list[tuple[Secret, bytes, FrameCipher]], outbound: bool) -> None:
        self.tx, self._own, self._outbound = tx, own, outbound
        self._candidates = candidates
        self._rx: FrameCipher | None = None
        self.keys_used: tuple[Secret, ...] = (own[0],)
        self.link_secret = b""

    def __repr__(self) -> str:
        return f"Session(outbound={self._outbound}, keyed={self._rx is not None})"

    def open(self, header: bytes, sealed: bytes) -> tuple[int, bytes]:
        """(tag, body) of the peer's next frame; raises FrameError (see FrameCipher.open)."""
        if self._rx is not None:
            return self._rx.open(header, sealed)
        for key, session, cipher in self._candidates:
            try:
                opened = cipher.open(header, sealed)
            except FrameError:
                continue
            self._rx, self._candidates = cipher, []
            self.keys_used = (self._own[0], key)
            pair = (self._own[1], session) if self._outbound else (session, self._own[1])
            self.link_secret = link_secret(*pair)
            return opened
        self._candidates = []  # a failed first frame closes the connection: nothing is kept
        raise FrameError("the first frame opened under none of our keys")


class Handshake:
    def __init__(self, keys: PasswordKeys | Secret, private: bytes, *, outbound: bool) -> None:
        if len(private) != PRIVATE_SIZE:
            raise ValueError(f"an X25519 private key is {PRIVATE_SIZE} bytes")
        self._key: X25519PrivateKey | None = X25519PrivateKey.from_private_bytes(private)
        self._keys = keys if isinstance(keys, PasswordKeys) else PasswordKeys(keys)
        self.outbound = outbound
        self.public = self._key.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return f"Handshake(outbound={self.outbound}, public={self.public.hex()})"

    def complete(self, remote_public: bytes, *, local_preamble: bytes = b"",
                 remote_preamble: bytes = b"") -> Session:
        """The session, bound to both public keys and both preambles (as sent and received)."""
        if self._key is None:
            raise HandshakeError("handshake already completed")
        if len(remote_public) != PUBLIC_SIZE:
            raise HandshakeError("peer's X25519 public key has the wrong size")
        if remote_public == self.public:
            raise HandshakeError("peer sent our own X25519 public key back")
        key, self._key = self._key, None
        try:
            shared = key.exchange(X25519PublicKey.from_public_bytes(remote_public))
        except ValueError:  # an all-zero shared secret: a low-order point
            raise HandshakeError("peer's X25519 public key is invalid") from None
        ours, theirs = (self.public, local_preamble), (remote_public, remote_preamble)
        (dp, dpre), (ap, apre) = (ours, theirs) if self.outbound else (theirs, ours)
        transcript = dp + ap + dpre + apre

        def sessions(k: Secret) -> bytes:
            return session_secret(shared, k, transcript)

        own = (self._keys.send, sessions(self._keys.send))
        tx = FrameCipher(direction_key(own[1], dialler=self.outbound),
                         DIALLER if self.outbound else ACCEPTOR)
        peer_dir = ACCEPTOR if self.outbound else DIALLER
        candidates = []
        for k in self._keys.accepted:
            s = own[1] if k is self._keys.send else sessions(k)
            candidates.append((k, s, FrameCipher(direction_key(s, dialler=not self.outbound),
                                                 peer_dir)))
        return Session(tx, own, candidates, self.outbound)
