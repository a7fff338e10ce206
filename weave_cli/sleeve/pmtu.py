"""Path MTU discovery for one neighbour, as a pure state machine: time is an argument.

The underlay may drop big datagrams silently (no ICMP), so the only evidence is an ack from
the peer. ``Search`` is one binary search over IP datagram sizes:

    lo  the largest size known to get through (starts at the floor, 552, assumed good)
    hi  the smallest size known to fail, or route MTU + 1 before anything failed

It first probes the route MTU itself (so an intact path costs one round trip), then the
midpoint of (lo, hi) until ``hi - lo == 1``; the result is ``lo``. Each candidate is sent up
to ``attempts`` times, waiting ``first_timeout`` and doubling after every try; an ack for the
candidate's size moves ``lo`` up, running out of tries (or ``fail`` on EMSGSIZE) moves ``hi``
down. Invariant: floor <= lo < candidate < hi <= route_mtu + 1 while running.

``PathMtu`` wraps it for the forwarder: ``current`` is the size to use now (the safe floor
until the first search finishes, then the last result, kept while a periodic re-run is in
flight); a search re-runs every ``rerun`` seconds and ``restart`` begins afresh when the
neighbour (re)appears. After each search a *batch check* sends two datagrams of ``current``
bytes in one UDP_SEGMENT send (same retries); ``batch_ok`` says whether that got through.
Something on the path may judge a GSO batch by its whole length (a bridge or veth carries it
as one skb until a NIC segments it; nft's ``ip length`` sees the sum), so the data path only
batches on links whose check passed, and sends datagrams one by one elsewhere.
"""

from __future__ import annotations

from weave_cli.sleeve.wire import MAX_PMTU, MIN_PMTU

FIRST_TIMEOUT = 0.010
ATTEMPTS = 5
RERUN = 60.0


class Search:
    def __init__(self, route_mtu: int, now: float, *, floor: int = MIN_PMTU,
                 first_timeout: float = FIRST_TIMEOUT, attempts: int = ATTEMPTS) -> None:
        route_mtu = max(floor, min(route_mtu, MAX_PMTU))
        self.floor = floor
        self.first_timeout = first_timeout
        self.attempts = attempts
        self.lo = floor
        self.hi = route_mtu + 1
        self.candidate = route_mtu
        self.tries = 0
        self.deadline = now  # when to (re)send the candidate
        self.done = route_mtu <= floor
        self.probes_sent = 0

    @property
    def result(self) -> int | None:
        return self.lo if self.done else None

    def poll(self, now: float) -> int | None:
        """The size to probe now, or None (nothing due, or finished)."""
        if self.done or now < self.deadline:
            return None
        if self.tries >= self.attempts:
            self._failed(now)
            if self.done:
                return None
        self.deadline = now + self.first_timeout * (1 << self.tries)
        self.tries += 1
        self.probes_sent += 1
        return self.candidate

    def ack(self, size: int, now: float) -> None:
        """The peer received a probe of ``size`` bytes."""
        if self.done or size != self.candidate:
            if not self.done and self.lo < size < self.hi:
                self.lo = size  # a late ack for an earlier candidate is still evidence
                self._next(now)
            return
        self.lo = size
        self._next(now)

    def fail(self, size: int, now: float) -> None:
        """Sending ``size`` failed locally (EMSGSIZE): it cannot get through."""
        if not self.done and size == self.candidate:
            self._failed(now)

    def _failed(self, now: float) -> None:
        self.hi = self.candidate
        self._next(now)

    def _next(self, now: float) -> None:
        if self.hi - self.lo <= 1:
            self.done = True
            return
        self.candidate = (self.lo + self.hi) // 2
        self.tries = 0
        self.deadline = now

    def next_deadline(self) -> float | None:
        return None if self.done else self.deadline


class PathMtu:
    """The discovered MTU of one link over time; see the module docstring."""

    def __init__(self, *, floor: int = MIN_PMTU, rerun: float = RERUN,
                 first_timeout: float = FIRST_TIMEOUT, attempts: int = ATTEMPTS) -> None:
        self.floor = floor
        self.rerun = rerun
        self.first_timeout = first_timeout
        self.attempts = attempts
        self.current = floor
        self.known = False  # a search has finished since the last restart
        self.batch_ok = False  # a two-datagram UDP_SEGMENT send of ``current`` got through
        self.search: Search | None = None
        self.check_deadline: float | None = None  # the batch check is running
        self.check_tries = 0
        self.next_run: float | None = None  # None: not started (the neighbour never heard)
        self.reported: int | None = None

    def restart(self, route_mtu: int, now: float) -> None:
        """Begin afresh (the neighbour appeared or moved): back to the safe size."""
        self.current = self.floor
        self.known = self.batch_ok = False
        self.reported = None  # report the result of this search even if it is unchanged
        self._start(route_mtu, now)

    def _start(self, route_mtu: int, now: float) -> None:
        self.search = Search(route_mtu, now, floor=self.floor,
                             first_timeout=self.first_timeout, attempts=self.attempts)
        self.check_deadline = None
        self.next_run = None
        self._finish(now)

    def due(self, now: float) -> bool:
        """True when a periodic re-run should start (call ``rerun_now`` with the route MTU)."""
        return self.next_run is not None and now >= self.next_run

    def rerun_now(self, route_mtu: int, now: float) -> None:
        self._start(route_mtu, now)

    def poll(self, now: float) -> tuple[int, bool] | None:
        """(size, batch) to probe now: ``batch`` asks for the two-datagram batch probe."""
        if self.search is not None:
            size = self.search.poll(now)
            self._finish(now)
            return None if size is None else (size, False)
        if self.check_deadline is None or now < self.check_deadline:
            return None
        if self.check_tries >= self.attempts:
            self.batch_ok = False
            self._checked(now)
            return None
        self.check_deadline = now + self.first_timeout * (1 << self.check_tries)
        self.check_tries += 1
        return self.current, True

    def ack(self, size: int, now: float, batch: bool = False) -> None:
        if batch:
            if self.check_deadline is not None and size == self.current:
                self.batch_ok = True
                self._checked(now)
        elif self.search is not None:
            self.search.ack(size, now)
            self._finish(now)

    def fail(self, size: int, now: float) -> None:
        if self.search is not None:
            self.search.fail(size, now)
            self._finish(now)

    def _finish(self, now: float) -> None:
        if self.search is not None and self.search.done:
            result = self.search.result
            assert result is not None
            if result != self.current:
                self.batch_ok = False  # re-checked at the new size
            self.current = result
            self.known = True
            self.search = None
            self.check_deadline = now
            self.check_tries = 0

    def _checked(self, now: float) -> None:
        self.check_deadline = None
        self.next_run = now + self.rerun

    def take_report(self) -> int | None:
        """The new result to report, once per change (None while nothing new finished)."""
        if self.known and self.search is None and self.current != self.reported:
            self.reported = self.current
            return self.current
        return None

    def next_deadline(self) -> float | None:
        if self.search is not None:
            return self.search.next_deadline()
        if self.check_deadline is not None:
            return self.check_deadline
        return self.next_run
