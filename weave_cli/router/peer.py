"""Peer identity: names in MAC format, nicknames, and how they are parsed and shown.

A peer name is 48 bits written like a MAC address (``4a:0f:f6:ec:1c:93``), as in the original.
It is chosen at random on first start and persisted; it never changes for a host's state dir.
Each run of a router also has a random 64-bit ``uid`` (0 is reserved) so that peers can tell a
restarted router from an old gossip entry of the same name.

Representation: ``PeerName`` is an ``int`` subclass holding the 48-bit value, so names sort
numerically (the deterministic tie-breaks rely on that) and hash cheaply.
"""

from __future__ import annotations

import random
import re

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
MAX_NICKNAME = 64
_NICK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PeerName(int):
    """A 48-bit peer name; ``str()`` gives the MAC form."""

    def __new__(cls, value: int) -> PeerName:
        if not 0 <= value < 1 << 48:
            raise ValueError(f"peer name out of range: {value}")
        return super().__new__(cls, value)

    @classmethod
    def parse(cls, text: str) -> PeerName:
        """Parse ``aa:bb:cc:dd:ee:ff``; raises ValueError with a readable message."""
        if not _MAC_RE.match(text):
            raise ValueError(
                f"invalid peer name {text!r}: expected six hex pairs like 4a:0f:f6:ec:1c:93"
            )
        return cls(int(text.replace(":", ""), 16))

    @classmethod
    def random(cls, rng: random.Random) -> PeerName:
        """A random name with the locally-administered bit set and the multicast bit clear."""
        value = rng.getrandbits(48)
        value |= 0x02 << 40
        value &= ~(0x01 << 40)
        return cls(value)

    def to_bytes6(self) -> bytes:
        return int(self).to_bytes(6, "big")

    @classmethod
    def from_bytes6(cls, data: bytes) -> PeerName:
        if len(data) != 6:
            raise ValueError("a peer name is 6 bytes")
        return cls(int.from_bytes(data, "big"))

    def __str__(self) -> str:
        raw = f"{int(self):012x}"
        return ":".join(raw[i : i + 2] for i in range(0, 12, 2))

    def __repr__(self) -> str:
        return f"PeerName({self})"


def valid_nickname(nick: str) -> bool:
    """Nicknames are host-name-like: letters, digits, '.', '_' and '-', at most 64 chars."""
    return bool(_NICK_RE.match(nick))


def describe(name: PeerName, nickname: str) -> str:
    """The ``name(nick)`` form every status view uses."""
    return f"{name}({nickname})"


def random_uid(rng: random.Random) -> int:
    """A non-zero 64-bit run identifier."""
    while True:
        uid = rng.getrandbits(64)
        if uid:
            return uid
