"""Paxos electors gossiping over a hostile network, with crashes and restarts from disk.

The network delivers whole gossip payloads (bytes) in any order, drops them (30 %),
duplicates them, and crashes nodes; a crashed node comes back from the bytes it last wrote.
Each node follows the owner's contract: after ``merge``/``think``/``propose`` returned True it
writes ``state().to_bytes()`` before its next send, so a crash loses only what nobody saw.

After every step: (a) agreement — every value any node ever learned is the same, and a node
(by name, across restarts) never learns a second one; (b) validity — the value holds at least
a quorum of real peer names; and every claim a NodeID sends covers what it sent before (a
restarted node never goes back on a promise). Then (c) liveness: with loss, duplication and
crashes stopped, every live node learns within a bounded number of synchronous rounds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.ipam.paxos import Claims, GossipState, NodeID, Paxos, PaxosState, quorum_for
from weave_cli.router.peer import PeerName, random_uid

LIVENESS_ROUNDS = 60
RETRY_ROUNDS = 6  # a node that saw no change for this long re-proposes (the owner's timer)


def name(i: int) -> PeerName:
    return PeerName(0x020000000000 + i)


@dataclass
class Host:
    name: PeerName
    paxos: Paxos | None = None
    disk: bytes | None = None
    dirty: bool = False
    idle: int = 0


@dataclass
class Sim:
    n: int
    rng: random.Random
    loss: float = 0.3
    dup: float = 0.1
    crash: float = 0.03
    hosts: list[Host] = field(default_factory=list)
    inflight: list[tuple[int, bytes]] = field(default_factory=list)
    learned: dict[PeerName, frozenset[PeerName]] = field(default_factory=dict)
    sent: dict[NodeID, Claims] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.quorum = quorum_for(self.n)
        self.hosts = [Host(name(i + 1)) for i in range(self.n)]

    # --- the owner of each node ------------------------------------------------------------

    def boot(self, i: int) -> None:
        host = self.hosts[i]
        state = PaxosState.from_bytes(host.disk) if host.disk is not None else None
        me = NodeID(host.name, random_uid(self.rng))
        host.paxos, host.dirty, host.idle = Paxos(me, self.quorum, state=state), False, 0

    def changed(self, host: Host, did: bool) -> None:
        if did:
            host.dirty, host.idle = True, 0

    def send(self, i: int) -> None:
        """Think, persist if anything changed, then gossip the whole view to everyone."""
        host = self.hosts[i]
        assert host.paxos is not None
        self.changed(host, host.paxos.think())
        if host.dirty:
            host.disk, host.dirty = host.paxos.state().to_bytes(), False
        view = host.paxos.gossip_state()
        me = host.paxos.me
        assert view.claims[me].covers(self.sent.get(me, Claims())), "went back on a claim"
        self.sent[me] = view.claims[me]
        payload = view.to_bytes()
        for j in range(self.n):
            if j != i and self.rng.random() >= self.loss:
                self.inflight.append((j, payload))

    def deliver(self, k: int) -> None:
        j, payload = self.inflight.pop(k)
        if self.rng.random() < self.dup:
            self.inflight.append((j, payload))
        host = self.hosts[j]
        if host.paxos is None:
            return
        self.changed(host, host.paxos.merge(GossipState.from_bytes(payload)))
        self.changed(host, host.paxos.think())

    def retry(self, i: int) -> None:
        host = self.hosts[i]
        if host.paxos is not None and not host.paxos.consensus()[0]:
            self.changed(host, host.paxos.propose())

    # --- the checks -------------------------------------------------------------------------

    def check(self) -> None:
        everyone = {h.name for h in self.hosts}
        for host in self.hosts:
            if host.paxos is None:
                continue
            ok, value = host.paxos.consensus()
            if not ok:
                continue
            assert self.learned.setdefault(host.name, value) == value, "learned a second value"
            assert value <= everyone and len(value) >= self.quorum, "invalid value"
        assert len(set(self.learned.values())) <= 1, f"two values: {self.learned}"

    # --- schedules --------------------------------------------------------------------------

    def chaos(self, steps: int, alive: set[int]) -> None:
        for i in alive:
            self.boot(i)
        for _ in range(steps):
            roll = self.rng.random()
            i = self.rng.choice(sorted(alive))
            host = self.hosts[i]
            if host.paxos is None:
                if roll < 0.3:
                    self.boot(i)
            elif roll < self.crash:
                host.paxos = None  # kill -9: whatever was not written is gone
            elif roll < 0.08:
                self.retry(i)
            elif roll < 0.4:
                self.send(i)
            elif self.inflight:
                self.deliver(self.rng.randrange(len(self.inflight)))
            self.check()

    def settle(self, alive: set[int]) -> int:
        """Loss and crashes stop; synchronous rounds until every live node has learned."""
        self.inflight.clear()
        self.loss = self.dup = 0.0
        for i in alive:
            if self.hosts[i].paxos is None:
                self.boot(i)
        for rounds in range(1, LIVENESS_ROUNDS + 1):
            for i in alive:
                self.send(i)
            self.rng.shuffle(self.inflight)
            while self.inflight:
                self.deliver(0)
            for i in alive:
                host = self.hosts[i]
                host.idle += 1
                if host.idle > RETRY_ROUNDS + 2 * i:  # staggered, like jittered timers
                    self.retry(i)
            self.check()
            if all(self.hosts[i].paxos.consensus()[0] for i in alive):  # type: ignore[union-attr]
                return rounds
        raise AssertionError(f"no consensus after {LIVENESS_ROUNDS} rounds")


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", range(25))
def test_agreement_validity_liveness_under_loss_and_restarts(n: int, seed: int) -> None:
    sim = Sim(n, random.Random(seed * 1000 + n))
    everyone = set(range(n))
    sim.chaos(600, everyone)
    sim.settle(everyone)
    assert len(set(sim.learned.values())) == 1


@pytest.mark.parametrize("seed", range(15))
def test_a_bare_quorum_decides_after_the_rest_died(seed: int) -> None:
    sim = Sim(5, random.Random(seed))
    sim.chaos(300, set(range(5)))
    for dead in (0, 3):  # dead for good, maybe holding the highest proposal
        sim.hosts[dead].paxos = None
    sim.settle({1, 2, 4})


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("seed", range(10))
def test_less_than_a_quorum_alive_decides_nothing(n: int, seed: int) -> None:
    sim = Sim(n, random.Random(seed), loss=0.0)
    alive = set(range(quorum_for(n) - 1)) or {0}
    if n == 2:
        alive = {1}
    sim.chaos(400, alive)
    assert not sim.learned
    with pytest.raises(AssertionError, match="no consensus"):
        sim.settle(alive)
    assert not sim.learned


def test_single_node_decides_on_its_first_think() -> None:
    sim = Sim(1, random.Random(0))
    sim.boot(0)
    assert sim.hosts[0].paxos is not None
    assert sim.hosts[0].paxos.think() is True
    assert sim.hosts[0].paxos.consensus() == (True, frozenset({name(1)}))


ACTIONS = st.tuples(
    st.sampled_from(["send", "deliver", "crash", "boot", "retry"]), st.integers(0, 63)
)


@settings(max_examples=60, deadline=None)
@given(
    n=st.sampled_from([2, 3, 5]),
    seed=st.integers(0, 2**16),
    schedule=st.lists(ACTIONS, max_size=300),
)
def test_hypothesis_schedules(n: int, seed: int, schedule: list[tuple[str, int]]) -> None:
    """Hypothesis picks who acts and which message arrives; loss and duplicates stay seeded."""
    sim = Sim(n, random.Random(seed))
    everyone = set(range(n))
    for i in everyone:
        sim.boot(i)
    for action, k in schedule:
        host = sim.hosts[k % n]
        if action == "boot" and host.paxos is None:
            sim.boot(k % n)
        elif host.paxos is None:
            continue
        elif action == "send":
            sim.send(k % n)
        elif action == "deliver" and sim.inflight:
            sim.deliver(k % len(sim.inflight))
        elif action == "crash":
            host.paxos = None
        elif action == "retry":
            sim.retry(k % n)
        sim.check()
    sim.settle(everyone)
