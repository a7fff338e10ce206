"""An in-memory network of ``MeshCore`` routers on a virtual clock (discrete-event queue).

Naming: router ``i`` (1-based) listens on "198.18.0.i:6783", is called ``h{i}`` and has peer
name ``02:00:00:00:00:{i:02x}`` style (``0x020000000000 + i``), so name order = index order.

Each TCP connection is a pair of ends ``(router, conn id)``; bytes a router ``Send``s arrive at
the other end ``latency`` seconds later, in order. What the links can do to traffic:

* ``loss``: drop whole frames (parsed from the 4-byte length prefix) after the handshake —
  the preamble and the features frame always pass, so framing is never broken;
* ``partition(groups)``: chunks between groups vanish and dials across fail, until ``heal()``;
* ``reset(i, j)``: both ends see "connection reset by peer"; ``kill(i)`` resets all of a
  router's connections and refuses dials to it; ``inject(i, j, data)``: raw bytes arrive at
  ``j`` on its connection from ``i``.

Cost model. By default a call costs no time. With ``measure_cpu=True`` each router is a
single CPU: a call starts when the router is free, takes the measured ``perf_counter`` time,
and its sends leave through the router's NIC one after another at ``bandwidth`` bytes/s —
so the virtual time of an arrival is the critical path through parallel routers.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from weave_cli.router.mesh import Close, Dial, MeshConfig, MeshCore, Send
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import HEADER_SIZE

PORT = 6783


def addr(i: int) -> str:
    return f"198.18.0.{i}"


def name(i: int) -> PeerName:
    return PeerName(0x020000000000 + i)


class Framer:
    """Drops whole frames with probability ``loss`` once the handshake bytes have passed."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.buf, self.skip, self.frames_seen = rng, bytearray(), HEADER_SIZE + 1, 0

    def feed(self, data: bytes, loss: float) -> bytes:
        self.buf += data
        out = bytearray()
        if self.skip:
            take = min(self.skip, len(self.buf))
            out += self.buf[:take]
            del self.buf[:take]
            self.skip -= take
        while len(self.buf) >= 4:
            size = 4 + int.from_bytes(self.buf[:4], "big")
            if len(self.buf) < size:
                break
            frame = bytes(self.buf[:size])
            del self.buf[:size]
            self.frames_seen += 1
            if self.frames_seen == 1 or loss <= 0 or self.rng.random() >= loss:
                out += frame
        return bytes(out)


@dataclass
class End:
    node: int
    cid: int
    peer: End | None = None
    framer: Framer | None = None
    open: bool = True


@dataclass
class SimNet:
    n: int
    seed: int = 0
    latency: float = 0.001
    loss: float = 0.0
    bandwidth: float | None = None  # bytes per second; None = free
    measure_cpu: bool = False
    configure: Callable[[int], dict[str, object]] = field(default=lambda i: {})
    targets: Callable[[int], list[str]] = field(default=lambda i: [])

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = 0.0
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.cids = itertools.count(1)
        self.ports = itertools.count(40000)
        self.ends: dict[tuple[int, int], End] = {}
        self.alive: set[int] = set()
        self.blocked: set[frozenset[int]] = set()
        self.cores: dict[int, MeshCore] = {}
        self.busy: dict[int, float] = {}
        self.nic: dict[int, float] = {}
        self.tick_at: dict[int, float] = {}
        self.bytes_sent: dict[int, int] = {}
        self.observers: list[Callable[[int, float], None]] = []
        for i in range(1, self.n + 1):
            self.start(i)

    # -- building -----------------------------------------------------------------------------

    def start(self, i: int, uid: int | None = None) -> MeshCore:
        options = {"name": name(i), "nickname": f"h{i}",
                   "uid": uid or self.rng.getrandbits(63) + 1, **self.configure(i)}
        core = MeshCore(MeshConfig(**options), now=self.now,  # type: ignore[arg-type]
                        rng=random.Random(self.rng.getrandbits(64)), targets=self.targets(i))
        self.cores[i], self.busy[i], self.nic[i] = core, self.now, self.now
        self.alive.add(i)
        self.bytes_sent.setdefault(i, 0)
        self.tick_at.pop(i, None)
        self._schedule_tick(i)
        return core

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (t, next(self.seq), fn))

    def call(self, i: int, fn: Callable[[MeshCore, float], None], t: float | None = None) -> None:
        """Run ``fn(core, now)`` on router ``i`` at ``t`` (default now), then its actions."""
        t = self.now if t is None else t

        def run() -> None:
            if i not in self.alive:
                return
            if self.measure_cpu and self.busy[i] > self.now:
                self.at(self.busy[i], run)
                return
            core = self.cores[i]
            started = time.perf_counter()
            fn(core, self.now)
            actions = core.actions()
            done = self.now + (time.perf_counter() - started if self.measure_cpu else 0.0)
            self.busy[i] = done
            for obs in self.observers:
                obs(i, done)
            self._carry_out(i, actions, done)
            self._schedule_tick(i)

        self.at(t, run)

    # -- running ------------------------------------------------------------------------------

    def run_until(self, t: float, stop: Callable[[], bool] | None = None,
                  every: float = 0.0) -> bool:
        """Run events up to ``t``; return early (True) once ``stop()`` holds, checking it
        after each event, or at most once per ``every`` virtual seconds when it is costly."""
        checked = -1.0
        while self.queue and self.queue[0][0] <= t:
            when, _, fn = heapq.heappop(self.queue)
            self.now = max(self.now, when)
            fn()
            if stop is not None and self.now >= checked + every:
                checked = self.now
                if stop():
                    return True
        self.now = max(self.now, t)
        return stop() if stop is not None else False

    def run_for(self, dt: float, stop: Callable[[], bool] | None = None) -> bool:
        return self.run_until(self.now + dt, stop)

    # -- faults -------------------------------------------------------------------------------

    def partition(self, *groups: set[int]) -> None:
        for a, b in itertools.combinations(groups, 2):
            self.blocked |= {frozenset((x, y)) for x in a for y in b}

    def heal(self) -> None:
        self.blocked.clear()

    def kill(self, i: int) -> None:
        for (node, _), end in list(self.ends.items()):
            if node == i:
                self._sever(end, "connection reset by peer", notify_self=False)
        self.alive.discard(i)

    def reset(self, i: int, j: int) -> bool:
        for (node, _), end in list(self.ends.items()):
            if node == i and end.peer is not None and end.peer.node == j:
                self._sever(end, "connection reset by peer", notify_self=True)
                return True
        return False

    def links(self) -> list[tuple[int, int]]:
        return sorted({(e.node, e.peer.node) for e in self.ends.values()
                       if e.peer is not None and e.peer.open})

    def inject(self, i: int, j: int, data: bytes) -> bool:
        for (node, _), end in list(self.ends.items()):
            if node == j and end.peer is not None and end.peer.node == i:
                self.call(j, lambda c, now, cid=end.cid: c.connection_data(cid, data, now))
                return True
        return False

    # -- internals ----------------------------------------------------------------------------

    def _schedule_tick(self, i: int) -> None:
        if i not in self.alive:
            return
        deadline = self.cores[i].next_deadline()
        if deadline is None or self.tick_at.get(i, float("inf")) <= deadline:
            return
        self.tick_at[i] = deadline

        def fire() -> None:
            if self.tick_at.get(i) == deadline:
                del self.tick_at[i]
                self.call(i, lambda c, now: c.tick(now))

        self.at(max(deadline, self.now), fire)

    def _carry_out(self, i: int, actions: list[object], t: float) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(i, action, t)
            elif isinstance(action, Close):
                end = self.ends.get((i, action.conn))
                if end is not None:
                    self._sever(end, "connection closed by peer", notify_self=False, t=t)
            elif isinstance(action, Dial):
                self._dial(i, action, t)

    def _send(self, i: int, action: Send, t: float) -> None:
        end = self.ends.get((i, action.conn))
        if end is None or end.peer is None:
            return
        self.bytes_sent[i] += len(action.data)
        depart = t
        if self.bandwidth:
            depart = max(t, self.nic[i]) + len(action.data) / self.bandwidth
            self.nic[i] = depart
        if frozenset((i, end.peer.node)) in self.blocked:
            return
        assert end.framer is not None
        data = end.framer.feed(action.data, self.loss)
        far = end.peer
        if data:
            self.call(far.node, lambda c, now: c.connection_data(far.cid, data, now)
                      if far.open else None, depart + self.latency)

    def _dial(self, i: int, action: Dial, t: float) -> None:
        host = action.host
        j = int(host.rsplit(".", 1)[1]) if host.startswith("198.18.0.") else 0
        if j not in self.alive or action.port != PORT or frozenset((i, j)) in self.blocked:
            why = "connection refused" if j in self.cores and j not in self.alive else \
                "no route to host"
            error = f"dial tcp {host}:{action.port}: {why}"
            self.call(i, lambda c, now: c.dial_failed(action.target, error, now),
                      t + 2 * self.latency)
            return
        mine, theirs = End(i, next(self.cids)), End(j, next(self.cids))
        mine.peer, theirs.peer = theirs, mine
        mine.framer, theirs.framer = Framer(self.rng), Framer(self.rng)
        self.ends[(i, mine.cid)], self.ends[(j, theirs.cid)] = mine, theirs
        eph = next(self.ports)
        self.call(j, lambda c, now: c.connection_opened(theirs.cid, (addr(i), eph), False, now),
                  t + self.latency)
        self.call(i, lambda c, now: c.connection_opened(
            mine.cid, (host, action.port), True, now, target=action.target), t + self.latency)

    def _sever(self, end: End, reason: str, *, notify_self: bool, t: float | None = None) -> None:
        """Close ``end`` now; the far end learns it one latency later, after the bytes that
        were already in flight towards it (FIFO), like a FIN or RST would."""
        t = self.now if t is None else t
        self.ends.pop((end.node, end.cid), None)
        end.open = False
        if notify_self:
            self.call(end.node, lambda c, now: c.connection_closed(end.cid, reason, now), t)
        far = end.peer
        if far is None or not far.open:
            return

        def close_far(core: MeshCore, now: float) -> None:
            if far.open:
                far.open = False
                self.ends.pop((far.node, far.cid), None)
                core.connection_closed(far.cid, reason, now)

        self.call(far.node, close_far, t + self.latency)

    # -- views --------------------------------------------------------------------------------

    def views(self, nodes: set[int] | None = None) -> dict[int, dict[PeerName, tuple[int, int]]]:
        nodes = self.alive if nodes is None else nodes
        return {i: self.cores[i].topology.digest() for i in sorted(nodes)}

    def converged(self, nodes: set[int] | None = None, full_mesh: bool = False) -> bool:
        nodes = self.alive if nodes is None else nodes
        views = list(self.views(nodes).values())
        names = {name(i) for i in nodes}
        if any(set(v) != names for v in views) or any(v != views[0] for v in views):
            return False
        if full_mesh:
            return all(len(self.cores[i].active) == len(nodes) - 1 for i in nodes)
        return True
