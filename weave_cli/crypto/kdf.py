"""Key derivation: the slow password key, the fast per-connection keys, the sleeve's keys.

Chain (docs/encryption.md)::

    password_key  = scrypt(password, salt=PASSWORD_SALT, n=2**15, r=8, p=1, 32 bytes)
                    -- once per router start (~0.1 s); every offline guess costs one of these
    session(k)    = HKDF-SHA256(ikm=X25519(ours, theirs), salt=k,
                                info=b"weave session" + transcript)
                    -- transcript: the dialler's public key, the acceptor's, then both
                       preambles as sent (dialler's first), so nothing in them can be altered
    c2s           = HKDF-SHA256(session(key the dialler sends with), info=b"weave c2s")
    s2c           = HKDF-SHA256(session(key the acceptor sends with), info=b"weave s2c")
    link_secret   = HKDF-SHA256(dialler's session + acceptor's session, info=b"weave sleeve")
    sleeve tx/rx  = HKDF-SHA256(link_secret, info=b"weave sleeve key" + sender + receiver)

Outside a password rotation both ends send with the same key, so both sessions are one. During
one (docs/security.md) each side seals with its own current key and opens with any key it
accepts, so the two directions may use different passwords.
The salt is a fixed, protocol-specific constant, so every host derives the same key from the
same password without configuration. A per-cluster salt would have to be distributed out of
band alongside the password; the constant still stops tables precomputed for other systems,
and the cost of scrypt per guess is what protects a captured handshake.
Invariants: every derived key is 32 bytes; distinct ``info`` strings keep the keys independent.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from weave_cli.crypto.secret import Secret
from weave_cli.router.peer import PeerName

PASSWORD_SALT: Final = b"weave-net-py/v1 password"
SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
KEY_SIZE: Final = 32
MAX_PASSWORD: Final = 4096
SESSION_INFO: Final = b"weave session"
C2S_INFO: Final = b"weave c2s"  # frames sent by the side that dialled
S2C_INFO: Final = b"weave s2c"  # frames sent by the side that accepted
SLEEVE_INFO: Final = b"weave sleeve"
SLEEVE_KEY_INFO: Final = b"weave sleeve key"


def password_key(password: Secret, *, n: int = SCRYPT_N) -> Secret:
    """The slow key every connection is bound to (``n`` is lowered only by tests)."""
    raw = password.reveal()
    if not 1 <= len(raw) <= MAX_PASSWORD:
        raise ValueError(f"a password must be 1..{MAX_PASSWORD} bytes")
    kdf = Scrypt(salt=PASSWORD_SALT, length=KEY_SIZE, n=n, r=SCRYPT_R, p=SCRYPT_P)
    return Secret(kdf.derive(raw))


def hkdf(ikm: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(ikm)


def session_secret(shared: bytes, pw_key: Secret, transcript: bytes) -> bytes:
    """``transcript`` is the same bytes on both ends (both public keys and preambles, in the
    dialler's-first order), so any change to them on the way gives the two ends other keys."""
    return hkdf(shared, SESSION_INFO + transcript, salt=pw_key.reveal())


def direction_key(session: bytes, *, dialler: bool) -> bytes:
    """The frame key of the dialler's frames (c2s) or of the acceptor's (s2c)."""
    return hkdf(session, C2S_INFO if dialler else S2C_INFO)


def link_secret(dialler_session: bytes, acceptor_session: bytes) -> bytes:
    return hkdf(dialler_session + acceptor_session, SLEEVE_INFO)


def sleeve_keys(link_secret: bytes, local: PeerName, remote: PeerName) -> tuple[bytes, bytes]:
    """(tx_key, rx_key) for the sleeve between ``local`` and ``remote``, 32 bytes each.

    A's tx key is B's rx key and the other way round, because the info names the sender first.
    Raises ValueError for a short secret (a plaintext link has none) or ``local == remote``.
    """
    if len(link_secret) != KEY_SIZE:
        raise ValueError(f"a link secret is {KEY_SIZE} bytes")
    if local == remote:
        raise ValueError("sleeve keys need two different peers")
    me, them = PeerName(local).to_bytes6(), PeerName(remote).to_bytes6()
    return (hkdf(link_secret, SLEEVE_KEY_INFO + me + them),
            hkdf(link_secret, SLEEVE_KEY_INFO + them + me))
