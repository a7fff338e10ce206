"""A token bucket: how much work unauthenticated input may cause. Pure; time is an argument.

Users: the mesh port's listener (``router/accept.py``: a burst of 20 connections, then 20 a
second) and the sleeve's receiver, one per rx key (``sleeve/seal.py``: the key derivations
that datagrams naming an epoch far ahead can make it run before their tag is checked).

Representation: ``tokens`` (a float in ``[0, burst]``) is what was left at time ``stamp``; the
bucket gains ``rate`` tokens a second up to ``burst``, so ``take`` is O(1) and needs no timer.
It starts full with ``stamp`` at minus infinity (the first ``take`` refills it completely).

Invariant: over any sequence of calls, the ``take`` calls that return True number at most
``burst + rate * (t_max - t_first)``, where ``t_first`` is the first time passed in and
``t_max`` the latest. Time that runs backwards is ignored (``stamp`` never decreases), so a
clock stepping back can neither mint tokens nor lose the ones already earned.
"""

from __future__ import annotations

import math


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        if not (rate >= 0 and burst >= 1):
            raise ValueError("a token bucket needs rate >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = -math.inf

    def take(self, now: float) -> bool:
        """Spend one token at time ``now``; False (and nothing spent) when none is left."""
        if now > self.stamp:
            if self.tokens < self.burst:
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def wait(self) -> float:
        """Seconds from the last ``take`` until the next token (0 when one is left)."""
        if self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate if self.rate > 0 else float("inf")

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, burst={self.burst}, tokens={self.tokens:.2f})"
