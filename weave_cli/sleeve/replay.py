"""The anti-replay window of one (key, epoch) sequence space. Pure.

Representation (RFC 6479 / WireGuard style, as a Python int): ``top`` is the highest sequence
number accepted so far (-1 before the first), and bit ``i`` of ``bits`` says whether ``top - i``
was accepted. Only the low ``SIZE`` bits are meaningful: a number ``SIZE`` or more below ``top``
is "below the window" and refused whatever the bits say, so the int is masked back to ``SIZE``
bits only now and then (when it has grown past ``2 * SIZE``), not on every move.

Use: ``fresh(seq)`` before decrypting (a duplicate or a number below the window costs no AEAD
work), ``commit(seq)`` only **after** the datagram authenticated. So a forged datagram with a
huge sequence number and a bad tag never moves the window (S10), and the next genuine one
still passes. ``SIZE`` is 8192 like current WireGuard: enough for the reordering a GRO batch
or a multi-path underlay produces, and an in-order move is a shift of a 1 KB int.
"""

from __future__ import annotations

SIZE = 8192
_MASK = (1 << SIZE) - 1


class ReplayWindow:
    __slots__ = ("top", "bits", "accepted")

    def __init__(self) -> None:
        self.top = -1
        self.bits = 0
        self.accepted = 0

    def fresh(self, seq: int) -> bool:
        """True when ``seq`` is neither a duplicate nor below the window."""
        d = self.top - seq
        if d < 0:
            return True
        if d >= SIZE:
            return False
        return not (self.bits >> d) & 1

    def commit(self, seq: int) -> None:
        """Record ``seq`` as received (it authenticated; ``fresh(seq)`` was True)."""
        d = seq - self.top
        self.accepted += 1
        if d > 0:
            if d >= SIZE:
                self.bits = 1
            else:
                bits = (self.bits << d) | 1
                if bits.bit_length() > 2 * SIZE:
                    bits &= _MASK
                self.bits = bits
            self.top = seq
        else:
            self.bits |= 1 << -d

    def commit_run(self, first: int, k: int) -> None:
        """Record ``first .. first+k-1``, all above ``top`` (they authenticated)."""
        d = first + k - 1 - self.top
        self.accepted += k
        run = (1 << k) - 1
        if d >= SIZE:
            self.bits = run
        else:
            bits = (self.bits << d) | run
            if bits.bit_length() > 2 * SIZE:
                bits &= _MASK
            self.bits = bits
        self.top = first + k - 1
