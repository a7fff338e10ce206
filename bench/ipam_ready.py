"""How many gossip rounds a fresh peer needs before IPAM answers its first allocation.

    .venv/bin/python bench/ipam_ready.py [--quick]    # prints tables; writes nothing

Model (discrete events, all in one process). One real ``Allocator`` per peer, behind the real
``IPAMChannel`` (the mesh side: payload checks, neighbour anti-entropy), and a small owner loop
per peer that does what ``IPAMService`` does after each input: carry out the actions in order
(``Persist`` is dropped: no SQLite, no fsync) and publish ``full_state()`` and a ring copy for the
channel. No TCP, no bandwidth limit.

*Gossip round*: one message hop, the time one gossip frame takes to cross one mesh connection
(``HOP_SECONDS``, 1 ms). A broadcast travels down its source's broadcast tree, one round per
level; a unicast follows the shortest path, one round per connection, as the mesh relays them.
"Rounds" are counted with processing free: the ready time divided by the hop time. Each join
is then run again with every peer a single CPU that spends the measured ``process_time`` of
the channel and allocator calls (an input waits until its peer is free, as in
``tests/sim/harness.py``): "ms+CPU" is that ready time, 1 ms hops included. The allocator timer
(``tick``) fires every 2 s at a random phase per peer; periodic anti-entropy (30 s) is left out.

Cluster: N-1 peers share a ring divided between all of them (``--ipalloc-init seed=``, the same
ring a consensus among them builds), each has allocated a few addresses of its own and one
address in each of ``SUBNETS`` /24 subnets lying in other peers' ranges, so donations have cut
the ring into several entries per peer; every replica is then brought up to date (that set-up
is not timed). Peer N starts as an ``Observer`` (what ``weave join`` uses). At time 0 its
connections come up (each end sends its channel digest, as the mesh does on a handshake) and
it asks at once for an address in the default subnet. Ready = when its ``Reply`` comes.

Scenarios (the joiner's connections at time 0):
  direct     one connection to every peer (every message is one hop): the goal's model;
  one-link   one connection, to one peer (``weave join HOST`` before discovery adds more):
             every message to or from another peer is relayed, two hops;
  no-digest  as direct, but without the digests on connect: the allocator's own path
             (need-ring broadcast, a ring back, space request, donation).

Per scenario and N: rounds until ready (median and worst of ``TRIALS`` joins, each on a fresh
copy of the cluster), the round the joiner first held a ring, ms+CPU, IPAM frames and bytes
(per connection crossed, gossip header included) from time 0 until nothing is in flight, how
many ring copies reached the joiner, its space requests, and CPU (``time.process_time``) of
the joiner (all, and its IPAM task alone), of the donor and of the median other peer, as a
ratio to a reference measured in the same run: decoding one ring of the cluster
(``Ring.from_bytes``) and merging it into an equal replica. The reference is O(ring entries),
which grow linearly with N, so a ratio that stays flat across N means cost linear in N.

Goal (issue): ready within 3 gossip rounds in the direct scenario at every N; the script exits
1 if that is missed. It also prints T(largest)/T(smallest) per scenario, in rounds and in time.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import itertools
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from weave_cli.ipam.address import CIDR
from weave_cli.ipam.allocator import Allocator
from weave_cli.ipam.allocator_wire import (
    Action,
    Broadcast,
    Conflict,
    Observer,
    Pending,
    Reply,
    Seed,
    Unicast,
    UnicastKind,
    decode_gossip,
    decode_unicast,
)
from weave_cli.ipam.channel import CHANNEL, IPAMChannel, PublishedState
from weave_cli.ipam.ring import Ring
from weave_cli.router.gossip import header_size
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import MessageTag

UNIVERSE = CIDR.parse("10.32.0.0/12")  # the default --ipalloc-range
SIZES = (8, 32, 128)
QUICK_SIZES = (8, 32)
TRIALS = 5
QUICK_TRIALS = 2
SUBNETS = 2  # /24s each established peer got by donation (ring entries: about 1 + 2*SUBNETS each)
OWN_ADDRESSES = 4  # addresses each established peer allocated from its own share
HOP_SECONDS = 0.001  # one round: a frame crossing one connection
TICK_SECONDS = 2.0  # the allocator timer (service.TICK)
GOAL_ROUNDS = 3
SCENARIOS = ("direct", "one-link", "no-digest")
FRAME = 5  # length prefix and tag of a mesh frame
T = TypeVar("T")


def name(i: int) -> PeerName:
    return PeerName(0x020000000000 + i)


def frame_size(tag: MessageTag, payload: bytes) -> int:
    """Bytes one IPAM gossip frame takes on a connection."""
    return FRAME + header_size(tag, CHANNEL) + len(payload)


# -- the established cluster (built without timing) ---------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What every established peer would reload from its database: ring and owned addresses."""

    seeds: tuple[PeerName, ...]
    peers: dict[PeerName, tuple[bytes, dict[str, list[str]]]]

    def restore(self, seed: int) -> dict[PeerName, Allocator]:
        """Fresh allocators restarted from the snapshot (one rng each, derived from ``seed``)."""
        return {
            p: Allocator(p, UNIVERSE, Seed(self.seeds), random.Random(seed * 7919 + int(p)),
                         ring=ring, owned=owned)
            for p, (ring, owned) in self.peers.items()
        }  # fmt: skip

    def entries(self) -> int:
        first = next(iter(self.peers.values()))[0]
        return len(Ring.from_bytes(first).entries)


def _serve_unicasts(
    allocs: dict[PeerName, Allocator], queue: list[tuple[PeerName, Unicast]]
) -> None:
    """Deliver unicasts one after another until none is left; broadcasts are dropped (the final
    anti-entropy pass of ``build_cluster`` brings every replica up to date instead)."""
    while queue:
        src, msg = queue.pop(0)
        allocs[msg.dst].on_unicast(src, msg.payload)
        for a in allocs[msg.dst].actions():
            if isinstance(a, Unicast):
                queue.append((msg.dst, a))
            elif isinstance(a, Conflict):
                raise SystemExit(f"set-up: unexpected conflict {a.messages}")


def _subnet_in(ring: Ring, owner: PeerName, slot: int) -> CIDR:
    """The ``slot``-th /24 of ``owner``'s first range (slot 0 holds its own addresses)."""
    first = ring.owned_ranges(owner)[0]
    start = first.start + 256 * slot
    if start + 256 > first.end:
        raise SystemExit(f"set-up: {owner}'s share is too small for {slot + 1} /24s")
    return CIDR(start, 24)


def build_cluster(n: int, subnets: int = SUBNETS) -> Snapshot:
    """``n`` peers with a seeded ring, some addresses each and ``subnets`` donations each."""
    names = tuple(name(i) for i in range(1, n + 1))
    allocs = {p: Allocator(p, UNIVERSE, Seed(names), random.Random(int(p))) for p in names}
    seeded = next(iter(allocs.values())).ring.copy()
    for a in allocs.values():
        for k in range(OWN_ADDRESSES):
            if not isinstance(a.allocate(f"own-{k}"), str):
                raise SystemExit("set-up: an own address was not given at once")
    for slot in range(1, subnets + 1):
        queue: list[tuple[PeerName, Unicast]] = []
        for i, p in enumerate(names):
            target = names[(i + slot) % n] if n > 1 else p
            if target == p:
                continue
            allocs[p].allocate(f"sub-{slot}", _subnet_in(seeded, target, slot))
            queue += [(p, a) for a in allocs[p].actions() if isinstance(a, Unicast)]
        _serve_unicasts(allocs, queue)
    return _converge(allocs, names)


def _converge(allocs: dict[PeerName, Allocator], names: tuple[PeerName, ...]) -> Snapshot:
    """Report free counts, then one anti-entropy pass through a hub; check every replica agrees
    and nothing waits."""
    for a in allocs.values():
        a.tick(0.0)
    hub = allocs[names[0]]
    for p in names[1:]:
        hub.on_gossip(p, allocs[p].full_state())
    for p in names[1:]:
        allocs[p].on_gossip(names[0], hub.full_state())
    for a in allocs.values():
        a.actions()
        if a.pending() or not a.ring.same_state(hub.ring):
            raise SystemExit("set-up: the cluster did not converge")
    return Snapshot(
        hub.ring.seeds,
        {p: (a.ring.to_bytes(), {i: [str(c) for c in cs] for i, cs in a.owned.items()})
         for p, a in allocs.items()},
    )  # fmt: skip


# -- the network model --------------------------------------------------------------------------


@dataclass
class Node:
    """One peer: its allocator, its channel, what it published, and the CPU it spent."""

    name: PeerName
    alloc: Allocator
    links: set[PeerName] = field(default_factory=set)
    inbox: list[tuple[str, PeerName, bytes]] = field(default_factory=list)
    replies: list[tuple[float, Reply]] = field(default_factory=list)
    busy: float = 0.0  # with charge_cpu: when this peer's CPU is free again
    task_cpu: float = 0.0  # allocator calls and publishing (the IPAM task)
    channel_cpu: float = 0.0  # the channel's checks (the mesh task), allocator time excluded
    published: PublishedState = field(init=False)
    channel: IPAMChannel = field(init=False)

    def __post_init__(self) -> None:
        self.published = PublishedState(self.alloc.ring.copy(), self.alloc.full_state())
        self.channel = IPAMChannel(lambda: self.published, self._deliver)

    def _deliver(self, kind: str, src: PeerName, payload: bytes) -> None:
        self.inbox.append((kind, src, payload))  # the IPAM task takes it after the channel


@dataclass
class Traffic:
    msgs: int = 0
    total_bytes: int = 0
    rings_to: dict[PeerName, int] = field(default_factory=dict)  # ring-carrying frames delivered
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [frames, bytes]

    def add(self, tag: MessageTag, payload: bytes) -> None:
        size = frame_size(tag, payload)
        self.msgs += 1
        self.total_bytes += size
        counts = self.by_kind.setdefault(kind_of(tag, payload), [0, 0])
        counts[0] += 1
        counts[1] += size


def kind_of(tag: MessageTag, payload: bytes) -> str:
    """What an IPAM frame is, for the breakdown of the bytes."""
    if tag == MessageTag.GOSSIP:
        return "digest" if payload[:1] == b"D" else "digest reply"
    if tag == MessageTag.GOSSIP_BROADCAST:
        return "ring broadcast" if decode_gossip(payload).ring else "need-ring broadcast"
    return {
        UnicastKind.SPACE_REQUEST: "space request",
        UnicastKind.RING_UPDATE: "ring unicast",
        UnicastKind.SPACE_DENIED: "space denied",
    }[decode_unicast(payload).kind]


class Model:
    """Peers, connections and a clock (seconds); delivers IPAM gossip as the mesh would.

    Every frame takes ``HOP_SECONDS`` per connection it crosses. With ``charge_cpu`` each peer
    is also one CPU: an input starts when the peer is free and its outputs leave after the
    measured ``process_time`` of the channel and allocator calls it caused (as
    ``tests/sim/harness.py`` does for the mesh); without it processing takes no model time.
    """

    def __init__(self, allocs: dict[PeerName, Allocator], charge_cpu: bool = False) -> None:
        self.nodes = {p: Node(p, a) for p, a in allocs.items()}
        self.charge_cpu = charge_cpu
        self.now = 0.0  # the time of the event being run
        self.cursor = 0.0  # when what the current peer sends leaves it
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.in_flight = 0
        self.traffic = Traffic()
        self.space_requests: list[tuple[float, PeerName, PeerName]] = []  # (time, from, to)
        self._trees: dict[PeerName, dict[PeerName, PeerName]] = {}

    # -- topology -------------------------------------------------------------------------------

    def link(self, a: PeerName, b: PeerName) -> None:
        self.nodes[a].links.add(b)
        self.nodes[b].links.add(a)
        self._trees.clear()

    def _tree(self, root: PeerName) -> dict[PeerName, PeerName]:
        """Parent of every peer in ``root``'s broadcast tree (breadth first, by name)."""
        if root in self._trees:
            return self._trees[root]
        parent = self._trees[root] = {root: root}
        level = [root]
        while level:
            nxt: list[PeerName] = []
            for p in level:
                for q in sorted(self.nodes[p].links - parent.keys()):
                    parent[q] = p
                    nxt.append(q)
            level = nxt
        return parent

    def _next_hop(self, at: PeerName, dst: PeerName) -> PeerName:
        if dst in self.nodes[at].links:
            return dst
        return self._tree(dst)[at]  # in the tree rooted at dst, our parent leads there

    # -- the clock ------------------------------------------------------------------------------

    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (when, next(self.seq), fn))

    def run(self, done: Callable[[], bool], limit: float) -> bool:
        """Run events in time order until ``done()`` holds (checked after each) or ``limit``."""
        while self.queue and not done():
            when, _, fn = heapq.heappop(self.queue)
            if when > limit:
                return False
            self.now = when
            fn()
        return done()

    def handle(self, node: Node, work: Callable[[], object]) -> object:
        """An input at ``node``: ``work`` (mesh side), then the IPAM task takes its inbox."""
        self.cursor = max(self.now, node.busy) if self.charge_cpu else self.now
        result = work()
        while node.inbox:
            kind, src, payload = node.inbox.pop(0)
            target = node.alloc.on_gossip if kind == "gossip" else node.alloc.on_unicast
            self.task(node, functools.partial(target, src, payload))
        node.busy = self.cursor
        return result

    def _spend(self, seconds: float) -> None:
        if self.charge_cpu:
            self.cursor += seconds

    def start_ticks(self, rng: random.Random) -> None:
        for node in self.nodes.values():
            self.at(rng.uniform(0, TICK_SECONDS), functools.partial(self._tick, node))

    def _tick(self, node: Node) -> None:
        self.handle(node, lambda: self.task(node, lambda: node.alloc.tick(self.now)))
        self.at(self.now + TICK_SECONDS, lambda: self._tick(node))

    # -- sending --------------------------------------------------------------------------------

    def _hop(
        self, a: PeerName, b: PeerName, tag: MessageTag, payload: bytes, arrive: Callable[[], None]
    ) -> None:
        """One frame across the connection a-b; ``arrive`` runs at b one hop later."""
        self.traffic.add(tag, payload)
        self.in_flight += 1
        node = self.nodes[b]

        def land() -> None:
            self.in_flight -= 1
            self.handle(node, arrive)

        self.at(self.cursor + HOP_SECONDS, land)

    def broadcast(self, src: PeerName, payload: bytes) -> None:
        children: dict[PeerName, list[PeerName]] = {}
        for q, p in self._tree(src).items():
            if q != src:
                children.setdefault(p, []).append(q)

        def send_down(at: PeerName) -> None:
            for child in children.get(at, []):
                self._hop(
                    at,
                    child,
                    MessageTag.GOSSIP_BROADCAST,
                    payload,
                    functools.partial(arrive, child),
                )

        def arrive(at: PeerName) -> None:
            node = self.nodes[at]
            self._count_ring(at, payload, broadcast=True)
            if self.channel(node, lambda: node.channel.on_broadcast(src, payload)) is not None:
                send_down(at)

        send_down(src)

    def unicast(
        self, src: PeerName, dst: PeerName, payload: bytes, at: PeerName | None = None
    ) -> None:
        """From ``src`` to ``dst`` hop by hop (``at``: where it is now, when relayed)."""
        here = src if at is None else at
        hop = self._next_hop(here, dst)

        def arrive() -> None:
            if hop != dst:
                self.unicast(src, dst, payload, at=hop)
                return
            node = self.nodes[dst]
            self._count_ring(dst, payload, broadcast=False)
            self.channel(node, lambda: node.channel.on_unicast(src, payload))

        self._hop(here, hop, MessageTag.GOSSIP_UNICAST, payload, arrive)

    def gossip(self, a: PeerName, b: PeerName, payload: bytes) -> None:
        """A neighbour message (digest or reply); the receiver's replies go straight back."""

        def arrive() -> None:
            node = self.nodes[b]
            self._count_ring(b, payload[1:], broadcast=True)
            replies, _news = self.channel(node, lambda: node.channel.on_gossip(a, payload))
            for reply in replies:
                self.gossip(b, a, reply)

        self._hop(a, b, MessageTag.GOSSIP, payload, arrive)

    def connect(self, a: PeerName, b: PeerName, digests: bool = True) -> None:
        """A new connection: both ends send their channel digest, as on a mesh handshake."""
        self.link(a, b)
        if digests:
            for x, y in ((a, b), (b, a)):
                digest = self.nodes[x].channel.digest()
                self.handle(self.nodes[x], functools.partial(self.gossip, x, y, digest))

    def _count_ring(self, at: PeerName, payload: bytes, broadcast: bool) -> None:
        """Count a frame that carries a whole ring and arrives at ``at``."""
        if decode_gossip(payload).ring if broadcast else decode_unicast(payload).ring:
            self.traffic.rings_to[at] = self.traffic.rings_to.get(at, 0) + 1

    # -- the owner of each allocator (what IPAMService does after each input) -------------------

    def channel(self, node: Node, call: Callable[[], T]) -> T:
        """A channel call in the mesh task; what it delivers waits in the node's inbox."""
        t0 = time.process_time()
        result = call()
        spent = time.process_time() - t0
        node.channel_cpu += spent
        self._spend(spent)
        return result

    def task(self, node: Node, call: Callable[[], T]) -> T:
        """One turn of the IPAM task: an allocator call, its actions, publishing."""
        t0 = time.process_time()
        result = call()
        actions = node.alloc.actions()
        spent = time.process_time() - t0
        self._spend(spent)
        self._carry_out(node, actions)
        t0 = time.process_time()
        state = node.alloc.full_state()
        if state != node.published.full_state:
            node.published = PublishedState(node.alloc.ring.copy(), state)
        publish = time.process_time() - t0
        node.task_cpu += spent + publish
        self._spend(publish)
        return result

    def _carry_out(self, node: Node, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Broadcast):
                self.broadcast(node.name, a.payload)
            elif isinstance(a, Unicast):
                if decode_unicast(a.payload).kind == UnicastKind.SPACE_REQUEST:
                    self.space_requests.append((self.cursor, node.name, a.dst))
                self.unicast(node.name, a.dst, a.payload)
            elif isinstance(a, Reply):
                node.replies.append((self.cursor, a))
            elif isinstance(a, Conflict):
                raise SystemExit(f"unexpected IPAM conflict at {node.name}: {a.messages}")


# -- one join -----------------------------------------------------------------------------------


@dataclass
class Trial:
    rounds: int  # until the joiner's first Reply, processing free
    ring_at: int  # the round the joiner first held a ring
    ready_ms: float  # the same with 1 ms hops and every peer's measured CPU on the path
    msgs: int
    total_bytes: int
    rings_to_joiner: int
    space_requests: int
    by_kind: dict[str, list[int]]
    joiner_cpu: float  # IPAM task + channel
    joiner_task_cpu: float
    donor_cpu: float
    other_cpu: float  # median over the peers that neither joined nor donated


@dataclass
class Join:
    """One join run to its end: the model, the joiner, when it got its address and its ring."""

    model: Model
    joiner: PeerName
    ready: float
    ring_at: float


def run_join(snapshot: Snapshot, scenario: str, seed: int, charge_cpu: bool) -> Join:
    """One fresh join on a copy of the cluster; raises SystemExit if it never completes.
    Processing free, it runs until nothing is in flight; CPU charged, until the reply."""
    rng = random.Random(seed)
    allocs = snapshot.restore(seed)
    established = sorted(allocs)
    joiner = name(len(established) + 1)
    allocs[joiner] = Allocator(joiner, UNIVERSE, Observer(), random.Random(seed))
    model = Model(allocs, charge_cpu)
    for a, b in itertools.combinations(established, 2):
        model.link(a, b)
    model.start_ticks(rng)
    attach = established if scenario != "one-link" else [rng.choice(established)]
    for p in attach:
        model.connect(joiner, p, digests=scenario != "no-digest")
    jnode = model.nodes[joiner]
    result = model.handle(
        jnode, lambda: model.task(jnode, lambda: jnode.alloc.allocate("first", None, 0.0))
    )
    if not isinstance(result, Pending):
        raise SystemExit(f"the joiner answered at once ({result}): it cannot have a ring yet")
    ring_at: list[float] = []

    def ready() -> bool:
        if not ring_at and not jnode.alloc.ring.is_empty():
            ring_at.append(model.now)
        return bool(jnode.replies) and (charge_cpu or model.in_flight == 0)

    if not model.run(ready, limit=4 * TICK_SECONDS):
        raise SystemExit(f"{scenario}: the joiner got no address within {4 * TICK_SECONDS} s")
    when, reply = jnode.replies[0]
    if not isinstance(reply.result, str):
        raise SystemExit(f"{scenario}: the join failed: {reply.result.message}")
    return Join(model, joiner, when, ring_at[0])


def trial(snapshot: Snapshot, scenario: str, seed: int) -> Trial:
    """The same join twice: processing free (rounds, traffic, CPU) and CPU charged (time)."""
    free = run_join(snapshot, scenario, seed, charge_cpu=False)
    timed = run_join(snapshot, scenario, seed, charge_cpu=True)
    model, joiner = free.model, free.joiner
    jnode = model.nodes[joiner]
    donor = next(dst for _, src, dst in model.space_requests if src == joiner)
    others = [n.task_cpu for p, n in model.nodes.items() if p not in (joiner, donor)]
    return Trial(
        rounds=round(free.ready / HOP_SECONDS), ring_at=round(free.ring_at / HOP_SECONDS),
        ready_ms=timed.ready * 1000, msgs=model.traffic.msgs,
        total_bytes=model.traffic.total_bytes,
        rings_to_joiner=model.traffic.rings_to.get(joiner, 0),
        space_requests=sum(1 for _, src, _ in model.space_requests if src == joiner),
        by_kind=model.traffic.by_kind,
        joiner_cpu=jnode.task_cpu + jnode.channel_cpu, joiner_task_cpu=jnode.task_cpu,
        donor_cpu=model.nodes[donor].task_cpu, other_cpu=statistics.median(others),
    )  # fmt: skip


def reference_cpu(snapshot: Snapshot, batches: int = 15, per_batch: int = 10) -> float:
    """CPU seconds to decode one ring of the cluster and merge it into an equal replica
    (median of ``batches``, each the mean of ``per_batch`` calls)."""
    peers = sorted(snapshot.peers)
    data = snapshot.peers[peers[0]][0]
    replica = Ring.from_bytes(snapshot.peers[peers[-1]][0])
    samples = []
    for _ in range(batches):
        t0 = time.process_time()
        for _ in range(per_batch):
            replica.merge(Ring.from_bytes(data))
        samples.append((time.process_time() - t0) / per_batch)
    return statistics.median(samples)


# -- the report ---------------------------------------------------------------------------------


@dataclass
class Row:
    n: int
    scenario: str
    entries: int
    ref: float
    trials: list[Trial]

    def med(self, attr: str) -> float:
        return float(statistics.median(getattr(t, attr) for t in self.trials))

    def worst(self) -> int:
        return max(t.rounds for t in self.trials)


def measure(sizes: tuple[int, ...], trials: int, subnets: int) -> list[Row]:
    rows = []
    for n in sizes:
        snapshot = build_cluster(n - 1, subnets)
        for scenario in SCENARIOS:
            ref = reference_cpu(snapshot)
            runs = [trial(snapshot, scenario, seed=1000 * n + k) for k in range(trials)]
            rows.append(Row(n, scenario, snapshot.entries(), ref, runs))
    return rows


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'N':>4} {'entries':>7} {'scenario':<9} {'rounds':>6} {'worst':>5} {'ring at':>7}"
        f" {'ms+CPU':>7}"
        f" {'msgs':>6} {'KB':>7} {'rings→J':>7} {'reqs':>4} {'ref µs':>7}"
        f" {'joiner':>7} {'(task)':>7} {'donor':>6} {'other':>6}"
    )
    for r in rows:
        print(
            f"{r.n:>4} {r.entries:>7} {r.scenario:<9} {r.med('rounds'):>6.0f} {r.worst():>5}"
            f" {r.med('ring_at'):>7.0f} {r.med('ready_ms'):>7.1f} {r.med('msgs'):>6.0f}"
            f" {r.med('total_bytes') / 1000:>7.1f}"
            f" {r.med('rings_to_joiner'):>7.0f} {r.med('space_requests'):>4.0f}"
            f" {r.ref * 1e6:>7.0f} {r.med('joiner_cpu') / r.ref:>7.1f}"
            f" {r.med('joiner_task_cpu') / r.ref:>7.1f} {r.med('donor_cpu') / r.ref:>6.1f}"
            f" {r.med('other_cpu') / r.ref:>6.1f}"
        )


def print_breakdown(rows: list[Row]) -> None:
    """Where the bytes of one join go, at the largest N (first trial of each scenario)."""
    n = rows[-1].n
    print(f"\nbytes of one join at N={n} by message kind (frames / KB):")
    for r in (r for r in rows if r.n == n):
        parts = sorted(r.trials[0].by_kind.items(), key=lambda kv: -kv[1][1])
        print(
            f"  {r.scenario:<9} "
            + ", ".join(f"{kind} {frames} / {size / 1000:.1f}" for kind, (frames, size) in parts)
        )


def summarize(rows: list[Row]) -> bool:
    """Print the scaling lines; True if the goal is met."""
    met = True
    print()
    for scenario in SCENARIOS:
        mine = [r for r in rows if r.scenario == scenario]
        first, last = mine[0], mine[-1]
        t_ratio = last.med("rounds") / first.med("rounds")
        ms_ratio = last.med("ready_ms") / first.med("ready_ms")
        cpu = [
            f"{last.med(a) / last.ref / (first.med(a) / first.ref):.1f}"
            for a in ("joiner_cpu", "donor_cpu", "other_cpu")
        ]
        line = (
            f"{scenario}: T({last.n})/T({first.n}) = {t_ratio:.2f} in rounds, {ms_ratio:.1f}"
            f" with CPU; CPU/ref growth "
            f"{first.n}->{last.n} joiner {cpu[0]}, donor {cpu[1]}, other {cpu[2]} "
            f"(1 = linear in N)"
        )
        if scenario == "direct":
            worst = max(r.worst() for r in mine)
            ok = worst <= GOAL_ROUNDS
            met = met and ok
            line += f"; worst {worst} rounds (goal <= {GOAL_ROUNDS}: {'met' if ok else 'NOT met'})"
        print(line)
    return met


def run_bench(doc: str, quick_help: str, body: Callable[[bool], bool]) -> None:
    """Parse ``--quick``, run ``body(quick)``, print the wall time; exit 1 if it returns False
    (a goal was missed)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args()
    began = time.perf_counter()
    met = body(args.quick)
    print(f"\ntotal wall time {time.perf_counter() - began:.1f} s")
    sys.exit(0 if met else 1)


def report(quick: bool) -> bool:
    """Measure, print the tables; True if the goal is met."""
    sizes, trials = (QUICK_SIZES, QUICK_TRIALS) if quick else (SIZES, TRIALS)
    rows = measure(sizes, trials, SUBNETS)
    print_rows(rows)
    print_breakdown(rows)
    return summarize(rows)


def main() -> None:
    run_bench(__doc__ or "", "N = 8, 32 and fewer trials", report)


if __name__ == "__main__":
    main()
