"""N IPAM allocators over a lossy, reordering network, with crashes and restarts from disk.

Every allocator starts with ``consensus=N`` (quorum N//2+1) and issues allocations for many
idents in parallel, frees some, and one may crash and come back from its persisted ``Change``
stream. The router drops 20 % of all messages and delays each by 1..3 steps (so they arrive out
of order); every step each allocator ticks (re-broadcasting while something waits) and,
sometimes, sends its full state to one random peer (the mesh's neighbour anti-entropy).

A global checker sees every address handed out (immediate results and later ``Reply``s), every
claim and every free, and asserts:
  G1  no two live idents ever hold the same address, and an address is only handed out by the
      peer that owns it in its current ring;
  P   every handed-out address was already persisted (``Persist`` before ``Reply``);
  R   every ring any allocator holds satisfies ``check_invariants``; no merge ever conflicts;
  L   once loss stops, every pending allocation completes within a bounded number of steps.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest

from weave_cli.ipam.address import CIDR
from weave_cli.ipam.allocator import Allocator
from weave_cli.ipam.allocator_wire import (
    Broadcast,
    Conflict,
    Consensus,
    Failed,
    InitMode,
    Observer,
    Pending,
    Persist,
    Reply,
    Unicast,
)
from weave_cli.ipam.ring import Ring
from weave_cli.ipam.store import Change
from weave_cli.router.peer import PeerName

UNIVERSE = CIDR.parse("10.32.0.0/24")


def name(i: int) -> PeerName:
    return PeerName(0x020000000000 + i)


@dataclass
class Disk:
    ring: bytes | None = None
    paxos: bytes | None = None
    owned: dict[str, list[str]] = field(default_factory=dict)

    def apply(self, c: Change) -> None:
        if c.ring is not None:
            self.ring = c.ring
        if c.clear_paxos:
            self.paxos = None
        elif c.paxos is not None:
            self.paxos = c.paxos
        for ident, cidr in c.add:
            if cidr not in self.owned.setdefault(ident, []):
                self.owned[ident].append(cidr)
        for ident, cidr in c.remove:
            if cidr in self.owned.get(ident, []):
                self.owned[ident].remove(cidr)
                if not self.owned[ident]:
                    del self.owned[ident]
        for ident in c.remove_idents:
            self.owned.pop(ident, None)


@dataclass
class Host:
    name: PeerName
    init: InitMode
    alloc: Allocator
    disk: Disk = field(default_factory=Disk)
    waiting: dict[int, str] = field(default_factory=dict)  # request id -> ident
    live: set[str] = field(default_factory=set)
    counter: int = 0


class Sim:
    def __init__(self, n: int, seed: int, observers: int = 0) -> None:
        self.rng = random.Random(seed)
        self.loss = 0.2
        self.t = 0
        self.queue: list[tuple[int, int, PeerName, PeerName, str, bytes]] = []
        self.seq = itertools.count()
        self.hosts: dict[PeerName, Host] = {}
        self.held: dict[int, tuple[PeerName, str]] = {}  # address -> (peer, ident)
        for i in range(1, n + observers + 1):
            init: InitMode = Consensus(n) if i <= n else Observer()
            alloc = Allocator(name(i), UNIVERSE, init, random.Random(self.rng.random()))
            self.hosts[name(i)] = Host(name(i), init, alloc)

    # -- the network ---------------------------------------------------------------------

    def send(self, src: PeerName, dst: PeerName, kind: str, payload: bytes) -> None:
        if self.rng.random() < self.loss:
            return
        when = self.t + self.rng.randint(1, 3)
        heapq.heappush(self.queue, (when, next(self.seq), dst, src, kind, payload))

    def deliver(self) -> None:
        while self.queue and self.queue[0][0] <= self.t:
            _, _, dst, src, kind, payload = heapq.heappop(self.queue)
            host = self.hosts[dst]
            if kind == "gossip":
                host.alloc.on_gossip(src, payload)
            else:
                host.alloc.on_unicast(src, payload)
            self.drain(host)

    # -- the owner of each allocator -----------------------------------------------------

    def drain(self, host: Host) -> None:
        for a in host.alloc.actions():
            if isinstance(a, Persist):
                host.disk.apply(a.change)
            elif isinstance(a, Broadcast):
                for other in self.hosts:
                    if other != host.name:
                        self.send(host.name, other, "gossip", a.payload)
            elif isinstance(a, Unicast):
                self.send(host.name, a.dst, "unicast", a.payload)
            elif isinstance(a, Reply):
                ident = host.waiting.pop(a.request_id)
                assert not isinstance(a.result, Failed), a.result
                self.handed_out(host, ident, a.result)
            elif isinstance(a, Conflict):
                raise AssertionError(f"unexpected conflict: {a}")
        host.alloc.ring.check_invariants()  # R
        host.alloc.space.check()

    def handed_out(self, host: Host, ident: str, cidr: str) -> None:
        assert cidr in host.disk.owned.get(ident, []), "P: address handed out before persisted"
        addr = CIDR.parse(cidr).addr
        holder = self.held.get(addr)
        assert holder in (None, (host.name, ident)), f"G1: {cidr} held by {holder} and {ident}"
        assert host.alloc.ring.owner_of(addr) == host.name, "allocated outside our ring"
        self.held[addr] = (host.name, ident)
        host.live.add(ident)

    def allocate(self, host: Host) -> None:
        host.counter += 1
        ident = f"{host.name}-c{host.counter}"
        result = host.alloc.allocate(ident, None, float(self.t))
        self.drain(host)
        if isinstance(result, Pending):
            host.waiting[result.request_id] = ident
        else:
            assert isinstance(result, str), result
            self.handed_out(host, ident, result)

    def free(self, host: Host) -> None:
        ident = self.rng.choice(sorted(host.live))
        assert host.alloc.free(ident) == 1
        host.live.discard(ident)  # the free happened before anything drained below
        for addr in [a for a, h in self.held.items() if h == (host.name, ident)]:
            del self.held[addr]
        self.drain(host)
        assert ident not in host.disk.owned

    def crash(self, host: Host) -> None:
        """Lose everything in memory; come back from the disk. Waiting clients give up."""
        d = host.disk
        host.alloc = Allocator(
            host.name, UNIVERSE, host.init, random.Random(self.rng.random()),
            ring=d.ring, paxos=d.paxos, owned=d.owned,
        )  # fmt: skip
        host.waiting.clear()
        self.drain(host)
        assert {i for i, cs in host.alloc.owned.items() if cs} == set(d.owned)

    def step(self, ops: bool, targets: dict[PeerName, int], crash: float = 0.0) -> None:
        self.t += 1
        self.deliver()
        order = list(self.hosts.values())
        self.rng.shuffle(order)
        for host in order:
            if ops:
                want = targets.get(host.name, 0)
                if len(host.live) + len(host.waiting) < want and self.rng.random() < 0.7:
                    self.allocate(host)
                if host.live and self.rng.random() < 0.1:
                    self.free(host)
                if self.rng.random() < crash:
                    self.crash(host)
            host.alloc.tick(float(self.t))
            self.drain(host)
            if self.rng.random() < 0.3:  # neighbour anti-entropy, as the mesh's gossip round
                other = self.rng.choice([h for h in self.hosts if h != host.name])
                self.send(host.name, other, "gossip", host.alloc.full_state())

    def pending(self) -> int:
        return sum(len(h.waiting) for h in self.hosts.values())


TARGETS = {3: [20, 40, 90], 5: [10, 20, 30, 40, 60]}


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_allocators_never_share_an_address(n: int, seed: int) -> None:
    sim = Sim(n, seed)
    targets = {name(i + 1): t for i, t in enumerate(TARGETS[n])}
    for _ in range(250):
        sim.step(True, targets, crash=0.005)
    sim.loss = 0.0
    for _ in range(200):
        sim.step(False, targets)
        if sim.pending() == 0:
            break
    assert sim.pending() == 0, "L: allocations still pending after loss stopped"
    rings = [h.alloc.ring for h in sim.hosts.values()]
    assert all(not r.is_empty() for r in rings)
    assert len(sim.held) == sum(len(h.live) for h in sim.hosts.values())
    initial = Ring(rings[0].start, rings[0].end, name(1))
    initial.claim_for_peers(rings[0].seeds)
    assert any(len(r.entries) > len(initial.entries) for r in rings), "nothing was donated"
    for host in sim.hosts.values():
        assert host.alloc.status_words() == "ready"


def test_observer_gets_an_address_after_electors_decide() -> None:
    sim = Sim(3, seed=7, observers=1)
    observer = sim.hosts[name(4)]
    sim.allocate(observer)
    assert observer.alloc.status_words() == "priming"
    for _ in range(150):
        sim.step(False, {})
        if not observer.waiting:
            break
    assert not observer.waiting and len(observer.live) == 1
    assert observer.alloc.paxos is None
    assert name(4) not in observer.alloc.ring.seeds


def test_restored_peer_keeps_addresses_and_never_reissues() -> None:
    sim = Sim(3, seed=11)
    sim.loss = 0.0
    targets = {name(i): 30 for i in (1, 2, 3)}
    for _ in range(80):
        sim.step(True, targets)
    host = sim.hosts[name(2)]
    before = dict(host.alloc.owned)
    assert before
    sim.crash(host)
    assert {i: [str(c) for c in cs] for i, cs in host.alloc.owned.items()} == {
        i: [str(c) for c in cs] for i, cs in before.items()
    }
    for ident in sorted(before):  # asking again for a known ident gives its address back
        assert host.alloc.allocate(ident, None, float(sim.t)) == str(before[ident][0])
    for _ in range(80):
        sim.step(True, {name(2): 60})
    assert sim.pending() == 0
