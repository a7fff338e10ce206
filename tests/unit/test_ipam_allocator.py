"""The allocator state machine: each input, each output, status words, Persist-before-Reply."""

from __future__ import annotations

import random

import pytest

from weave_cli.ipam.address import CIDR, Range
from weave_cli.ipam.allocator import Allocator
from weave_cli.ipam.allocator_wire import (
    Action,
    AllocatorError,
    Broadcast,
    Conflict,
    Consensus,
    Failed,
    Gossip,
    Observer,
    Pending,
    Persist,
    Reply,
    Seed,
    Unicast,
    UnicastKind,
    UnicastMsg,
    decode_gossip,
    decode_unicast,
    encode_gossip,
    encode_unicast,
)
from weave_cli.ipam.ring import Ring
from weave_cli.router.peer import PeerName

A, B, C = PeerName(0x0A0000000001), PeerName(0x0A0000000002), PeerName(0x0A0000000003)
U16 = CIDR.parse("10.32.0.0/28")  # 16 addresses: A gets .0-.7, B .8-.15 when seeded by both


def seeded(me: PeerName, peers: tuple[PeerName, ...] = (A, B), universe: CIDR = U16) -> Allocator:
    alloc = Allocator(me, universe, Seed(peers), random.Random(1))
    alloc.actions()
    return alloc


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def pump(allocs: dict[PeerName, Allocator], rounds: int = 20) -> None:
    """Deliver every message between ``allocs`` until quiet."""
    for _ in range(rounds):
        moved = False
        for src, alloc in allocs.items():
            for a in alloc.actions():
                if isinstance(a, Broadcast):
                    for dst, other in allocs.items():
                        if dst != src:
                            other.on_gossip(src, a.payload)
                            moved = True
                elif isinstance(a, Unicast) and a.dst in allocs:
                    allocs[a.dst].on_unicast(src, a.payload)
                    moved = True
        if not moved:
            return


def test_allocate_persists_before_returning_the_lowest_host_address() -> None:
    alloc = Allocator(A, CIDR.parse("10.32.0.0/12"), Seed((A,)), random.Random(1))
    assert kinds(alloc.actions()) == ["Persist"]  # the seeded ring
    assert alloc.allocate("c1", None, 0.0) == "10.32.0.1/12"
    (persist,) = alloc.actions()
    assert isinstance(persist, Persist) and list(persist.change.add) == [("c1", "10.32.0.1/12")]
    assert alloc.allocate("c1") == "10.32.0.1/12"  # idempotent, nothing new to write
    assert alloc.actions() == []
    assert alloc.allocate("c2", CIDR.parse("10.33.0.0/16")) == "10.33.0.1/16"
    assert isinstance(alloc.allocate("c3", CIDR.parse("10.0.0.0/16")), Failed)


def test_free_releases_and_cancels() -> None:
    alloc = seeded(A, (A,))
    assert alloc.allocate("c1") == "10.32.0.1/28"
    alloc.actions()
    assert alloc.free("c1") == 1
    (persist,) = alloc.actions()
    assert isinstance(persist, Persist) and list(persist.change.remove) == [("c1", "10.32.0.1/28")]
    assert alloc.free("c1") == 0
    assert alloc.allocate("c2") == "10.32.0.1/28"
    assert alloc.free("c2", "10.32.0.9") == 0 and alloc.free("c2", "10.32.0.1") == 1


def test_claim_rules() -> None:
    alloc = seeded(A)
    assert alloc.claim("c1", "10.32.0.3/28") == "10.32.0.3/28"
    assert isinstance(alloc.actions()[0], Persist)
    assert alloc.claim("c1", "10.32.0.3/28") == "10.32.0.3/28"
    busy = alloc.claim("c2", "10.32.0.3/28")
    assert isinstance(busy, Failed) and "already in use by c1" in busy.message
    other = alloc.claim("c2", "10.32.0.9/28")
    assert isinstance(other, Failed) and "owned by other peer" in other.message
    assert alloc.claim("c3", "192.168.1.5/24") == "192.168.1.5/24"  # outside: recorded
    assert alloc.allocate("c4") == "10.32.0.1/28"
    assert alloc.allocate("c5") == "10.32.0.2/28"
    assert alloc.allocate("c6") == "10.32.0.4/28"  # the claimed .3 is skipped


def test_consensus_of_one_decides_at_first_allocate() -> None:
    alloc = Allocator(A, U16, Consensus(1), random.Random(1))
    assert alloc.status_words() == "idle" and alloc.actions() == []
    result = alloc.allocate("c1", None, 0.0)
    assert isinstance(result, Pending)
    actions = alloc.actions()
    reply = next(i for i, a in enumerate(actions) if isinstance(a, Reply))
    assert actions[reply] == Reply(result.request_id, "10.32.0.1/28")
    adds = [i for i, a in enumerate(actions) if isinstance(a, Persist) and a.change.add]
    assert adds and adds[0] < reply  # Persist precedes Reply
    ring_at = next(i for i, a in enumerate(actions) if isinstance(a, Persist) and a.change.ring)
    gossip_at = next(i for i, a in enumerate(actions) if isinstance(a, Broadcast))
    assert ring_at < gossip_at
    assert alloc.status_words() == "ready" and alloc.paxos is None


def test_two_electors_agree_and_persist_paxos_before_gossip() -> None:
    allocs = {p: Allocator(p, U16, Consensus(2), random.Random(i)) for i, p in enumerate((A, B))}
    result = allocs[A].allocate("c1", None, 0.0)
    assert isinstance(result, Pending)
    assert allocs[A].status_words() == "awaiting consensus (quorum: 2, known: 1)"
    assert allocs[B].status_words() == "idle"
    first = allocs[A].actions()
    assert kinds(first)[:2] == ["Persist", "Broadcast"] and first[0].change.paxos  # type: ignore[union-attr]
    allocs[B].on_gossip(A, first[1].payload)  # type: ignore[union-attr]
    assert allocs[B].status_words() == "awaiting consensus (quorum: 2, known: 2)"
    pump(allocs)
    assert allocs[A].status_words() == allocs[B].status_words() == "ready"
    assert allocs[A].ring.same_state(allocs[B].ring)
    assert allocs[A].ring.seeds == (A, B)
    assert allocs[A].owned["c1"] == [CIDR.parse("10.32.0.1/28")]


def test_observer_primes_and_gets_ring_from_an_elector() -> None:
    obs = Allocator(C, U16, Observer(), random.Random(3))
    elector = seeded(A, (A, B))
    result = obs.allocate("c1")
    assert isinstance(result, Pending) and obs.status_words() == "priming"
    (gossip,) = obs.actions()
    assert isinstance(gossip, Broadcast) and decode_gossip(gossip.payload).need_ring
    elector.on_gossip(C, gossip.payload)
    (update,) = elector.actions()
    assert isinstance(update, Unicast) and update.dst == C
    obs.on_unicast(A, update.payload)
    actions = obs.actions()
    assert kinds(actions) == ["Persist", "Unicast"]  # ring stored; no space: asks a donor
    assert obs.status_words() == "waiting for IP(s) to become available"
    donor = {A: elector}[actions[1].dst]  # type: ignore[union-attr]
    donor.on_unicast(C, actions[1].payload)  # type: ignore[union-attr]
    grant = donor.actions()
    assert kinds(grant) == ["Persist", "Unicast", "Broadcast"]  # the new owner, to everyone
    obs.on_unicast(A, grant[1].payload)  # type: ignore[union-attr]
    done = obs.actions()
    assert kinds(done) == ["Persist", "Persist", "Reply"]
    assert isinstance(done[2], Reply) and done[2].result == "10.32.0.4/28"
    assert obs.status_words() == "ready"


def test_space_request_denied_when_donor_is_full() -> None:
    a, b = seeded(A), seeded(B)
    for k in range(7):
        assert isinstance(b.allocate(f"b{k}"), str)
    b.tick(1.0)
    b.actions()
    for k in range(7):
        assert a.allocate(f"a{k}") == f"10.32.0.{k + 1}/28"
    a.actions()
    a.on_gossip(B, encode_gossip(Gossip(False, b.ring.to_bytes(), b"")))
    assert kinds(a.actions()) == ["Persist"]  # B's new free count (only its broadcast address)
    assert isinstance(a.allocate("a7"), Pending)
    (ask,) = a.actions()
    assert isinstance(ask, Unicast) and ask.dst == B
    assert a.status_words({B}) == "waiting for IP(s) to become available"
    assert a.status_words(set()).startswith("all IP ranges owned by unreachable peers")
    b.on_unicast(A, ask.payload)
    sent = [decode_unicast(x.payload).kind for x in b.actions() if isinstance(x, Unicast)]
    assert sent == [UnicastKind.RING_UPDATE, UnicastKind.SPACE_DENIED]


def test_peer_gone_and_retry_ask_another_donor() -> None:
    a = seeded(A, (A, B, C), CIDR.parse("10.32.0.0/27"))
    while not isinstance(a.allocate(f"x{len(a.owned)}", None, 0.0), Pending):
        pass
    (ask,) = [x for x in a.actions() if isinstance(x, Unicast)]
    a.peer_gone(ask.dst)
    (again,) = [x for x in a.actions() if isinstance(x, Unicast)]
    assert again.dst != ask.dst and again.dst in (B, C)
    a.tick(1.0)
    assert not [x for x in a.actions() if isinstance(x, Unicast)]  # still waiting for it
    a.tick(10.0)
    assert [x for x in a.actions() if isinstance(x, Unicast)]  # timed out: asks again


def test_lost_range_is_dropped_and_reported() -> None:
    a, b = seeded(A), seeded(B)
    assert a.allocate("c1") == "10.32.0.1/28"
    b.rmpeer(A)  # B wrongly thinks A is dead
    b.actions()
    a.on_gossip(B, encode_gossip(Gossip(False, b.ring.to_bytes(), b"")))
    actions = a.actions()
    conflict = next(x for x in actions if isinstance(x, Conflict))
    assert conflict.idents == ("c1",) and "which I think I own" in conflict.messages[0]
    assert a.space.num_owned() == 0
    assert isinstance(a.allocate("c2"), Pending)  # never from a range it no longer owns
    assert a.free("c1") == 1  # freeing an address in a lost range is harmless


def test_rmpeer_takes_over_and_reports_double_claims() -> None:
    a, b, c = seeded(A, (A, B, C)), seeded(B, (A, B, C)), seeded(C, (A, B, C))
    count, conflicts = a.rmpeer(C)
    assert count == 4 and conflicts == []  # C had .12-.15
    assert kinds(a.actions()) == ["Persist", "Broadcast"]
    b.rmpeer(C)
    b_gossip = [x for x in b.actions() if isinstance(x, Broadcast)][0]
    a.on_gossip(B, b_gossip.payload)
    assert any(isinstance(x, Conflict) for x in a.actions())
    count, conflicts = a.rmpeer(C)
    assert count == 0 and conflicts and str(A) in conflicts[0] and str(B) in conflicts[0]
    with pytest.raises(AllocatorError):
        a.rmpeer(A)
    del c


def test_restore_from_persisted_changes() -> None:
    alloc = seeded(A, (A,))
    ring = alloc.ring.to_bytes()
    for k in range(3):
        alloc.allocate(f"c{k}")
    owned: dict[str, list[str]] = {}
    for x in alloc.actions():
        assert isinstance(x, Persist)
        for ident, cidr in x.change.add:
            owned.setdefault(ident, []).append(cidr)
    again = Allocator(A, U16, Seed((A,)), random.Random(2), ring=ring, owned=owned)
    assert again.actions() == []  # a stored ring wins over the seed
    assert again.allocate("c1") == "10.32.0.2/28"
    assert again.allocate("new") == "10.32.0.4/28"
    with pytest.raises(AllocatorError):
        Allocator(B, U16, Seed((A,)), random.Random(2), ring=ring)


def test_restored_paxos_keeps_its_identity() -> None:
    alloc = Allocator(A, U16, Consensus(3), random.Random(1))
    alloc.allocate("c1")
    persist = alloc.actions()[0]
    assert isinstance(persist, Persist) and persist.change.paxos
    again = Allocator(A, U16, Consensus(3), random.Random(9), paxos=persist.change.paxos)
    assert again.paxos is not None and alloc.paxos is not None
    assert again.paxos.me == alloc.paxos.me
    assert again.status_words() == "awaiting consensus (quorum: 2, known: 1)"


def test_tick_reports_free_counts_and_full_state_carries_them() -> None:
    alloc = seeded(A, (A,))
    alloc.allocate("c1")
    alloc.actions()
    alloc.tick(1.0)
    assert kinds(alloc.actions()) == ["Persist"]  # nothing waits: neighbour gossip spreads it
    g = decode_gossip(alloc.full_state())
    assert Ring.from_bytes(g.ring).entries[0].free == 15 and not g.paxos and not g.need_ring
    alloc.tick(2.0)
    assert alloc.actions() == []
    idle = Allocator(A, U16, Consensus(3), random.Random(1))
    idle.tick(1.0)
    assert idle.actions() == []


def test_cancelled_request_gets_a_failed_reply() -> None:
    alloc = Allocator(A, U16, Consensus(3), random.Random(1))
    result = alloc.allocate("c1")
    assert isinstance(result, Pending)
    alloc.actions()
    alloc.free("c1")
    assert alloc.actions() == [Reply(result.request_id, Failed("request for c1 cancelled"))]


def test_pending_claim_completes_when_the_ring_arrives() -> None:
    a, b = Allocator(A, U16, Observer(), random.Random(1)), seeded(B, (A, B))
    result = a.claim("c1", "10.32.0.9/28")
    assert isinstance(result, Pending)
    a.actions()
    a.on_unicast(B, encode_unicast(UnicastMsg(UnicastKind.RING_UPDATE, ring=b.ring.to_bytes())))
    reply = a.actions()[-1]
    assert isinstance(reply, Reply) and isinstance(reply.result, Failed)


@pytest.mark.parametrize(
    "payload",
    [b"", b"WAG1", b"WAG1\x02" + bytes(8), b"WAG1\x00\x00\x00\x00\x05", b"WAG1\x00" + bytes(9)],
)
def test_malformed_gossip_raises(payload: bytes) -> None:
    with pytest.raises(AllocatorError):
        decode_gossip(payload)


@pytest.mark.parametrize(
    "payload", [b"WAU1", b"WAU1\x07", b"WAU1\x00" + bytes(4), b"WAU1\x00" + bytes(16), b"WAU1\x02x"]
)
def test_malformed_unicast_raises(payload: bytes) -> None:
    with pytest.raises(AllocatorError):
        decode_unicast(payload)


def test_wire_round_trip() -> None:
    g = Gossip(True, b"ring", b"paxos")
    assert decode_gossip(encode_gossip(g)) == g
    m = UnicastMsg(UnicastKind.SPACE_REQUEST, want=Range(5, 10))
    assert decode_unicast(encode_unicast(m)) == m


def test_cancel_forgets_a_waiting_request_without_reply() -> None:
    alloc = Allocator(A, U16, Consensus(3), random.Random(1))
    result = alloc.allocate("c1")
    assert isinstance(result, Pending)
    alloc.actions()
    assert alloc.cancel(result.request_id) and not alloc.cancel(result.request_id)
    assert alloc.pending() == 0 and not any(isinstance(x, Reply) for x in alloc.actions())


def test_handoff_gives_every_range_to_the_first_heir_and_refuses_later_requests() -> None:
    a = seeded(A, (A, B))
    assert isinstance(a.allocate("c1"), str)
    a.actions()
    moved, heir = a.handoff([A, B, C])
    assert heir == B and moved == 8
    assert kinds(a.actions()) == ["Persist", "Broadcast"]
    assert a.ring.owned_ranges(A) == [] and a.space.ours == []
    assert isinstance(a.allocate("c2"), Failed)
    assert isinstance(a.claim("c3", "10.32.0.9/28"), Failed)


def test_handoff_with_nobody_to_inherit_moves_nothing() -> None:
    a = seeded(A, (A,))
    assert a.handoff([A]) == (0, None)
    assert a.actions() == []


def test_prime_starts_consensus_and_an_observer_asks_for_the_ring() -> None:
    alone = Allocator(A, U16, Consensus(1), random.Random(1))
    assert alone.status_words() == "idle"
    assert alone.prime() is False or not alone.ring.is_empty()
    assert alone.prime() is True and alone.status_words() == "ready"
    obs = Allocator(C, U16, Observer(), random.Random(3))
    assert obs.prime() is False and obs.status_words() == "priming"
    (gossip,) = obs.actions()
    assert isinstance(gossip, Broadcast) and decode_gossip(gossip.payload).need_ring


def test_a_ring_from_the_donor_that_gives_nothing_does_not_end_the_space_request() -> None:
    obs = Allocator(C, U16, Observer(), random.Random(3))
    elector = seeded(A, (A, B))
    obs.allocate("c1")
    (gossip,) = obs.actions()
    elector.on_gossip(C, gossip.payload)  # type: ignore[union-attr]
    (update,) = elector.actions()
    obs.on_unicast(A, update.payload)  # type: ignore[union-attr]
    asked = [a for a in obs.actions() if isinstance(a, Unicast)]
    assert len(asked) == 1 and obs._asked is not None
    donor = asked[0].dst
    obs.on_unicast(donor, update.payload)  # type: ignore[union-attr]  # a stale, earlier answer
    assert obs._asked is not None and not [a for a in obs.actions() if isinstance(a, Unicast)]
