"""The key exchange of one encrypted connection: ephemeral X25519 bound to the password key.

Each side sends crypto byte 1 and a fresh 32-byte X25519 public key in its preamble
(``Handshake.public``); once the peer's key arrives, ``complete`` derives the ``Session``:
the frame cipher of each direction (dialler's frames under c2s, acceptor's under s2c) and
the ``link_secret`` for the sleeve. The password is proven implicitly: a peer with another
password (so another ``password_key``) derives other keys, and the first frame it sends —
FEATURES — fails to open. Neither the password nor anything derived from it is ever sent.
Invariants: one ``Handshake`` per connection (``complete`` works once); its private key comes
from the caller (fresh OS randomness in the router), and it is dropped after ``complete``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from weave_cli.crypto.frames import ACCEPTOR, DIALLER, FrameCipher
from weave_cli.crypto.kdf import direction_keys, link_secret, session_secret
from weave_cli.crypto.secret import Secret

PUBLIC_SIZE: Final = 32
PRIVATE_SIZE: Final = 32


class HandshakeError(Exception):
    """The peer's public key is unusable (low order, our own key reflected, wrong size)."""


@dataclass(frozen=True)
class Session:
    tx: FrameCipher = field(repr=False)
    rx: FrameCipher = field(repr=False)
    link_secret: bytes = field(repr=False)


class Handshake:
    def __init__(self, password_key: Secret, private: bytes, *, outbound: bool) -> None:
        if len(private) != PRIVATE_SIZE:
            raise ValueError(f"an X25519 private key is {PRIVATE_SIZE} bytes")
        self._key: X25519PrivateKey | None = X25519PrivateKey.from_private_bytes(private)
        self._password_key = password_key
        self.outbound = outbound
        self.public = self._key.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return f"Handshake(outbound={self.outbound}, public={self.public.hex()})"

    def complete(self, remote_public: bytes) -> Session:
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
        session = session_secret(shared, self._password_key, self.public, remote_public)
        c2s, s2c = direction_keys(session)
        dialler, acceptor = FrameCipher(c2s, DIALLER), FrameCipher(s2c, ACCEPTOR)
        tx, rx = (dialler, acceptor) if self.outbound else (acceptor, dialler)
        return Session(tx, rx, link_secret(session))
