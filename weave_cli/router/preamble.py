"""The preamble both ends of a mesh connection send first: checks that need no state. Pure.

Layout (docs/protocol.md section 1): ``MAGIC`` (4 bytes), min and max version (1 byte each),
then the crypto field: ``CRYPTO_NONE``, or ``CRYPTO_X25519`` and a 32-byte public key. Every
check here raises ``Violation`` with the reason the connection closes with; ``ConnectionProtocol``
turns it into a ``Closed`` event. Each function looks only at the bytes it is given, so the
parser can call it again as more bytes arrive (``magic`` accepts a prefix of the magic).
"""

from __future__ import annotations

from typing import Final

from weave_cli.crypto.handshake import PUBLIC_SIZE
from weave_cli.router.protocol_types import (
    CRYPTO_NONE,
    CRYPTO_X25519,
    MAGIC,
    ONLY_HERE,
    ONLY_THERE,
    ProtocolSettings,
)

GO_MAGIC: Final = b"weave"


class Violation(Exception):
    """Hostile or incompatible input; the message is the connection's closing reason."""


def build(settings: ProtocolSettings, public: bytes | None) -> bytes:
    """Our preamble: plaintext without a public key, else crypto field 1 and the key."""
    crypto = bytes([CRYPTO_NONE]) if public is None else bytes([CRYPTO_X25519]) + public
    return MAGIC + bytes([settings.min_version, settings.max_version]) + crypto


def check_magic(head: bytes) -> None:
    """``head`` is the first bytes received (any number): refuse as soon as they cannot be
    the start of our magic, naming the Go original when that is what speaks."""
    got = head[: len(MAGIC)]
    if MAGIC.startswith(got):
        return
    if GO_MAGIC.startswith(head[: len(GO_MAGIC)]) and len(head) < len(GO_MAGIC):
        return  # might still be the Go original: wait for one more byte to say so
    if head.startswith(GO_MAGIC):
        raise Violation("not a weave peer of this implementation: the remote speaks the "
                        "Go weave protocol, which is not wire-compatible")
    raise Violation(f"not a weave peer (bad magic {got.hex() or 'none'})")


def negotiate(ours: ProtocolSettings, their_min: int, their_max: int) -> int:
    """The version both ends choose (the same on both sides)."""
    chosen = min(ours.max_version, their_max)
    if chosen < max(ours.min_version, their_min):
        raise Violation(f"remote version range [{their_min},{their_max}] is incompatible "
                        f"with ours [{ours.min_version},{ours.max_version}]")
    return chosen


def crypto_size(head: bytes, encrypted: bool) -> int:
    """How many bytes the peer's crypto field takes, given the bytes received so far from its
    start; 0 when more are needed. Refuses an unknown mode and a mode other than ours."""
    if not head:
        return 0
    mode = head[0]
    if mode not in (CRYPTO_NONE, CRYPTO_X25519):
        raise Violation(f"unsupported crypto field {mode} (unknown encryption mode)")
    if not encrypted:
        if mode != CRYPTO_NONE:
            raise Violation(ONLY_THERE)
        return 1
    if mode == CRYPTO_NONE:
        raise Violation(ONLY_HERE)
    return 1 + PUBLIC_SIZE if len(head) >= 1 + PUBLIC_SIZE else 0
