"""Connection targets: addresses we keep trying to be connected to, with backoff. Pure.

A target is an address "host:port" (its ``key``; ``[v6]:port`` for IPv6). It is *direct*
when the operator named it (launch peers, ``weave connect``; persisted for ``--resume``; the
``display`` string is what they typed) or *discovered* when gossip told us a peer lives there.

Lifecycle (``phase``)::

    waiting --dial--> attempting --handshake--> connected --connection lost--> waiting
       ^                  |  dial failed / closed before the handshake            ^
       +------------------+ (backoff: try_after = now + interval/2 + rng*interval;
                              interval = min(interval * 1.5, retry_max))

A connection that lived longer than ``STABLE_AFTER`` resets the interval and is retried at
once. A target that turned out to be ourselves is parked forever (``try_after`` = inf).
Shown states (``state()``): attempting without a previous error is ``connecting``, with one
``retrying``; waiting is ``failed`` (the last error and when we retry). Connected targets
are shown through their connection instead.

The set never reads a clock or an RNG of its own: ``now`` and ``rng`` are arguments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from weave_cli.router.peer import PeerName
from weave_cli.router.topology import PeerEntry

STABLE_AFTER = 60.0
Phase = Literal["waiting", "attempting", "connected"]


def parse_peer(spec: str, default_port: int) -> tuple[str, int]:
    """Split "host", "host:port", "[v6]:port" or a bare IPv6 address into (host, port)."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid peer {spec!r}: expected [address]:port")
        port = rest[1:]
    elif spec.count(":") == 1:
        host, _, port = spec.partition(":")
    else:
        host, port = spec, ""
    if not host or (port and not port.isdigit()):
        raise ValueError(f"invalid peer {spec!r}: expected host[:port]")
    number = int(port) if port else default_port
    if not 0 < number < 65536:
        raise ValueError(f"invalid port in peer {spec!r}")
    return host, number


def address_key(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Target:
    key: str
    host: str
    port: int
    display: str | None  # the operator's spelling when direct, else None (discovered)
    interval: float
    phase: Phase = "waiting"
    try_after: float = 0.0
    last_error: str | None = None
    peer: PeerName | None = None  # who answered at this address, once known
    connected_at: float = 0.0

    @property
    def direct(self) -> bool:
        return self.display is not None

    def state(self) -> str:
        if self.phase == "attempting":
            return "retrying" if self.last_error else "connecting"
        return "failed" if self.phase == "waiting" else "connected"

    def info(self, now: float, wall: float | None) -> str:
        if self.phase == "attempting":
            return self.last_error or ""
        if self.phase == "connected":
            return ""
        err = self.last_error or "not yet attempted"
        if math.isinf(self.try_after):
            return f"{err}, retry: never"
        at = (wall if wall is not None else now) + max(0.0, self.try_after - now)
        stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
        return f"{err}, retry: {stamp.replace('+00:00', 'Z')}"


class TargetSet:
    """All targets by key, in the order they were added (the order ``Targets`` shows)."""

    def __init__(self, default_port: int, retry_initial: float, retry_max: float) -> None:
        self.default_port = default_port
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.targets: dict[str, Target] = {}

    def __iter__(self) -> Iterator[Target]:
        return iter(list(self.targets.values()))

    def get(self, key: str | None) -> Target | None:
        return self.targets.get(key) if key is not None else None

    def direct(self) -> tuple[str, ...]:
        return tuple(t.display for t in self.targets.values() if t.display is not None)

    # -- membership ---------------------------------------------------------------------------

    def add_direct(self, specs: Iterable[str], now: float) -> bool:
        """Add operator targets (invalid specs are skipped); True if the direct set changed."""
        changed = False
        for spec in specs:
            try:
                host, port = parse_peer(spec, self.default_port)
            except ValueError:
                continue
            key = address_key(host, port)
            target = self.targets.get(key)
            if target is None:
                self.targets[key] = Target(key, host, port, spec, self.retry_initial,
                                           try_after=now)
                changed = True
            elif target.display != spec:
                target.display, changed = spec, True
        return changed

    def remove_direct(self, specs: Iterable[str]) -> bool:
        """Forget operator targets, by their spelling or their address."""
        changed = False
        for spec in specs:
            for key, target in list(self.targets.items()):
                if target.display is None:
                    continue
                try:
                    same = key == address_key(*parse_peer(spec, self.default_port))
                except ValueError:
                    same = False
                if target.display == spec or same:
                    del self.targets[key]
                    changed = True
        return changed

    def set_discovered(self, keys: set[str], now: float) -> None:
        """Make the discovered targets exactly ``keys`` (direct ones are never touched);
        a discovered target being attempted stays until the attempt ends."""
        for key, target in list(self.targets.items()):
            if not target.direct and key not in keys and target.phase != "attempting":
                del self.targets[key]
        for key in keys:
            if key not in self.targets:
                host, port = parse_peer(key, self.default_port)
                self.targets[key] = Target(key, host, port, None, self.retry_initial,
                                           try_after=now)

    # -- lifecycle ----------------------------------------------------------------------------

    def due(self, now: float) -> list[Target]:
        return [t for t in self.targets.values() if t.phase == "waiting" and t.try_after <= now]

    def next_deadline(self) -> float | None:
        times = [t.try_after for t in self.targets.values()
                 if t.phase == "waiting" and not math.isinf(t.try_after)]
        return min(times) if times else None

    def attempting(self, key: str) -> None:
        if (target := self.targets.get(key)) is not None:
            target.phase = "attempting"

    def connected(self, key: str, peer: PeerName, now: float) -> None:
        if (target := self.targets.get(key)) is not None:
            target.phase, target.peer, target.connected_at = "connected", peer, now

    def failed(self, key: str, error: str, now: float, rng: random.Random) -> None:
        """An attempt (or the connection it made) ended: wait, with backoff."""
        target = self.targets.get(key)
        if target is None:
            return
        if target.phase == "connected" and now - target.connected_at > STABLE_AFTER:
            target.interval = self.retry_initial
            target.phase, target.try_after, target.last_error = "waiting", now, error
            return
        target.phase, target.last_error = "waiting", error
        target.try_after = now + target.interval / 2 + rng.random() * target.interval
        target.interval = min(target.interval * 1.5, self.retry_max)

    def never(self, key: str, error: str) -> None:
        """Park a target for good (it is ourselves)."""
        if (target := self.targets.get(key)) is not None:
            target.phase, target.last_error, target.try_after = "waiting", error, math.inf

    def peer_lost(self, peer: PeerName, reason: str, now: float, rng: random.Random) -> None:
        """Our connection to ``peer`` is gone: every target connected to it waits again."""
        for target in list(self.targets.values()):
            if target.phase == "connected" and target.peer == peer:
                self.failed(target.key, reason, now, rng)


def discovered(entries: Iterable[PeerEntry], me: PeerName, connected: set[PeerName],
               port: int) -> set[str]:
    """Addresses of peers that others report and we are not connected to: an outbound
    connection's remote address; for an inbound one, the remote IP with our port."""
    keys: set[str] = set()
    for entry in entries:
        if entry.name == me:
            continue
        for cs in entry.connections:
            if cs.name == me or cs.name in connected:
                continue
            if cs.outbound:
                keys.add(cs.address)
            else:
                keys.add(address_key(parse_peer(cs.address, port)[0], port))
    return keys
