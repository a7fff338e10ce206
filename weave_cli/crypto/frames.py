"""AEAD framing of one direction of an encrypted mesh connection (ChaCha20-Poly1305).

An encrypted frame on the wire::

    0  4  length L   = len(sealed) = 1 + len(body) + 16; 17 <= L <= 17 + limit
    4  L  sealed     = ChaCha20-Poly1305(key, nonce, tag byte + body, aad = the 4 length bytes)

Nonce (12 bytes) = 4-byte direction (0: sent by the dialler, 1: sent by the acceptor) followed
by the 8-byte big-endian sequence number of the frame in that direction, starting at 0. The
sequence number is not sent: the receiver uses exactly the next one it expects (TCP is
ordered), so a replayed, reordered, dropped, truncated or altered frame fails to open.
Invariants: a ``FrameCipher`` never uses a nonce twice (``seq`` only grows, and it refuses to
wrap); the two directions of a connection have different keys *and* different nonces.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

OVERHEAD: Final = 16  # the Poly1305 tag
DIALLER: Final = 0
ACCEPTOR: Final = 1
_MAX_SEQ: Final = (1 << 64) - 1


class FrameError(Exception):
    """A frame that does not open: wrong key, tampered, replayed, reordered or truncated."""


class FrameCipher:
    """Seals (or opens) the frames of one direction, in order. ``seq`` is the next number."""

    __slots__ = ("_aead", "direction", "seq")

    def __init__(self, key: bytes, direction: int) -> None:
        if len(key) != 32 or direction not in (DIALLER, ACCEPTOR):
            raise ValueError("a frame key is 32 bytes and the direction 0 or 1")
        self._aead = ChaCha20Poly1305(key)
        self.direction, self.seq = direction, 0

    def __repr__(self) -> str:
        return f"FrameCipher(direction={self.direction}, seq={self.seq})"

    def nonce(self, seq: int) -> bytes:
        return self.direction.to_bytes(4, "big") + seq.to_bytes(8, "big")

    def _next(self) -> bytes:
        if self.seq >= _MAX_SEQ:
            raise FrameError("sequence numbers exhausted: the connection must be renewed")
        nonce = self.nonce(self.seq)
        self.seq += 1
        return nonce

    def seal(self, tag: int, body: bytes) -> bytes:
        """The whole frame: length prefix and sealed tag + body."""
        header = (1 + len(body) + OVERHEAD).to_bytes(4, "big")
        return header + self._aead.encrypt(self._next(), bytes([tag]) + body, header)

    def open(self, header: bytes, sealed: bytes) -> tuple[int, bytes]:
        """(tag, body) of the next frame; raises FrameError. The number is used up either way,
        so after a failure nothing can be opened (the connection is closed anyway)."""
        if len(sealed) < 1 + OVERHEAD:
            raise FrameError("frame shorter than its authentication tag")
        try:
            plain = self._aead.decrypt(self._next(), sealed, header)
        except InvalidTag:
            raise FrameError("frame failed authentication") from None
        return plain[0], plain[1:]
