"""Paxos over gossip, phase by phase, plus persistence and hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.ipam.paxos import (
    NO_PROPOSAL,
    Claims,
    GossipState,
    NodeID,
    Paxos,
    PaxosError,
    PaxosState,
    ProposalID,
    quorum_for,
)
from weave_cli.router.peer import PeerName


def nid(i: int, uid: int = 1) -> NodeID:
    return NodeID(PeerName(0x020000000000 + i), uid)


def exchange(nodes: list[Paxos]) -> None:
    """One full round: everyone thinks, then everyone merges everyone's view."""
    for node in nodes:
        node.think()
    views = [n.gossip_state() for n in nodes]
    for node in nodes:
        for view in views:
            node.merge(view)


def test_quorum_for_is_a_strict_majority() -> None:
    assert [quorum_for(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    with pytest.raises(PaxosError):
        quorum_for(0)


def test_single_node_with_quorum_one_decides_on_first_think() -> None:
    node = Paxos(nid(1), 1)
    assert node.consensus() == (False, frozenset())
    assert node.think() is True
    assert node.consensus() == (True, frozenset({nid(1).name}))
    assert node.think() is False


def test_no_proposal_before_hearing_from_a_quorum() -> None:
    node = Paxos(nid(1), 2)
    assert node.think() is False
    assert node.gossip_state().claims[nid(1)] == Claims()
    assert (node.known_nodes(), node.quorum) == (1, 2)


def test_prepare_when_a_quorum_is_heard_from() -> None:
    a, b = Paxos(nid(1), 2), Paxos(nid(2), 2)
    a.merge(b.gossip_state())
    assert a.known_nodes() == 2
    assert a.think() is True
    assert a.gossip_state().claims[nid(1)].promise == ProposalID(1, nid(1))


def test_promise_copies_the_highest_proposal() -> None:
    a, b = Paxos(nid(1), 2), Paxos(nid(2), 2)
    a.merge(b.gossip_state())
    b.merge(a.gossip_state())
    a.think()
    b.think()  # both proposed round 1; b's name is higher
    a.merge(b.gossip_state())
    assert a.think() is True
    assert a.gossip_state().claims[nid(1)].promise == ProposalID(1, nid(2))


def test_accept_request_needs_a_quorum_of_promises() -> None:
    a, b, c = (Paxos(nid(i), 2) for i in (1, 2, 3))
    a.merge(c.gossip_state())
    a.think()  # a proposes (1, a)
    p = ProposalID(1, nid(1))
    assert a.gossip_state().claims[nid(1)].accepted == NO_PROPOSAL
    b.merge(a.gossip_state())
    b.think()  # b promises (1, a)
    assert b.gossip_state().claims[nid(2)].promise == p
    assert b.gossip_state().claims[nid(2)].accepted == NO_PROPOSAL
    a.merge(b.gossip_state())
    a.think()
    mine = a.gossip_state().claims[nid(1)]
    assert mine.accepted == p
    assert mine.value == {nid(1).name, nid(2).name, nid(3).name}
    assert a.consensus()[0] is False  # only a accepted so far


def test_accepted_step_copies_and_learns() -> None:
    a, b = Paxos(nid(1), 2), Paxos(nid(2), 2)
    rounds = 0
    while not (a.consensus()[0] and b.consensus()[0]):
        exchange([a, b])
        rounds += 1
    # presence, prepare, promise, accept request, accepted, learn
    assert rounds == 6
    assert a.consensus() == b.consensus() == (True, frozenset({nid(1).name, nid(2).name}))


def test_proposer_adopts_a_previously_accepted_value() -> None:
    a = Paxos(nid(1), 2)
    old = ProposalID(1, nid(3))
    value = frozenset({nid(2).name, nid(3).name})
    prior = GossipState(
        {
            nid(2): Claims(old, old, value),
            nid(3): Claims(old, old, value),
        }
    )
    # a hears of the old round's acceptances only as a chosen value
    a.merge(prior)
    a.think()
    assert a.consensus() == (True, value)
    # a fresh proposer whose promisers report an accepted value must use it
    d = Paxos(nid(4), 2)
    d.merge(GossipState({nid(2): Claims(old, old, value)}))
    assert d.propose() is True
    p = ProposalID(2, nid(4))
    d.merge(GossipState({nid(2): Claims(p, old, value)}))
    d.think()
    assert d.gossip_state().claims[nid(4)] == Claims(p, p, value)


def test_propose_goes_above_every_round_and_stops_after_decision() -> None:
    a = Paxos(nid(1), 3)
    a.merge(GossipState({nid(2): Claims(ProposalID(7, nid(2)))}))
    assert a.propose() is True
    assert a.gossip_state().claims[nid(1)].promise == ProposalID(8, nid(1))
    solo = Paxos(nid(5), 1)
    solo.think()
    assert solo.propose() is False


def test_consensus_is_sticky_when_a_later_round_moves_acceptors() -> None:
    a, b, c = (Paxos(nid(i), 2) for i in (1, 2, 3))
    for _ in range(5):
        exchange([a, b, c])
    first = a.consensus()
    assert first[0]
    c.propose()
    for _ in range(5):
        exchange([a, b, c])
        assert a.consensus() == first
    assert b.consensus() == c.consensus() == first


def test_minority_never_decides() -> None:
    nodes = [Paxos(nid(i), quorum_for(5)) for i in (1, 2)]
    for _ in range(10):
        exchange(nodes)
        for n in nodes:
            n.propose()
    assert not any(n.consensus()[0] for n in nodes)


def test_quorum_counts_names_not_incarnations() -> None:
    # a wiped peer (new uid) plus its own old incarnation is one vote, not two
    p = ProposalID(1, nid(1, 5))
    view = GossipState(
        {
            nid(1, 5): Claims(p, p, frozenset({nid(1).name})),
            nid(1, 6): Claims(p, p, frozenset({nid(1).name})),
        }
    )
    other = Paxos(nid(2), 2)
    other.merge(view)
    # other's own think accepts p too, which makes a real quorum of two names
    other.think()
    assert other.consensus() == (True, frozenset({nid(1).name}))
    lone = Paxos(nid(3), 3)
    lone.merge(view)
    assert lone.known_nodes() == 2


def test_restart_keeps_the_persisted_node_id_and_claims() -> None:
    a, b = Paxos(nid(1, 11), 2), Paxos(nid(2), 2)
    a.merge(b.gossip_state())
    assert a.think()
    saved = a.state().to_bytes()
    again = Paxos(nid(1, 99), 2, state=PaxosState.from_bytes(saved))
    assert again.me == nid(1, 11)
    assert again.gossip_state() == a.gossip_state()
    assert again.state() == a.state()


def test_restart_keeps_the_higher_quorum() -> None:
    a = Paxos(nid(1), 3)
    assert Paxos(nid(1, 2), 2, state=a.state()).quorum == 3
    assert Paxos(nid(1, 2), 4, state=a.state()).quorum == 4


def test_state_of_another_peer_is_refused() -> None:
    with pytest.raises(PaxosError, match="belongs to peer"):
        Paxos(nid(2), 2, state=Paxos(nid(1), 2).state())


def test_gossip_about_us_ahead_of_us_is_refused() -> None:
    a = Paxos(nid(1), 2)
    ahead = GossipState({nid(1): Claims(ProposalID(3, nid(1)))})
    with pytest.raises(PaxosError, match="further on"):
        a.merge(ahead)


def test_two_values_for_one_proposal_is_refused_atomically() -> None:
    a = Paxos(nid(1), 2)
    p = ProposalID(1, nid(2))
    a.merge(GossipState({nid(2): Claims(p, p, frozenset({nid(2).name}))}))
    before = a.gossip_state()
    bad = GossipState(
        {
            nid(4): Claims(),
            nid(3): Claims(p, p, frozenset({nid(3).name})),
        }
    )
    with pytest.raises(PaxosError, match="two values"):
        a.merge(bad)
    assert a.gossip_state() == before


def test_merge_is_monotonic_and_idempotent() -> None:
    a = Paxos(nid(1), 3)
    p1, p2 = ProposalID(1, nid(2)), ProposalID(2, nid(3))
    new = GossipState({nid(2): Claims(p2, p1, frozenset({nid(2).name}))})
    old = GossipState({nid(2): Claims(p1)})
    assert a.merge(new) is True
    assert a.merge(old) is False
    assert a.merge(new) is False
    assert a.gossip_state().claims[nid(2)] == new.claims[nid(2)]


def test_bad_constructor_arguments() -> None:
    with pytest.raises(PaxosError):
        Paxos(nid(1), 0)
    with pytest.raises(PaxosError):
        Paxos(nid(1, 0), 1)


# --- byte formats --------------------------------------------------------------------------


def test_round_trips() -> None:
    a, b, c = (Paxos(nid(i), 2) for i in (1, 2, 3))
    for _ in range(8):
        exchange([a, b, c])
    g = a.gossip_state()
    assert GossipState.from_bytes(g.to_bytes()) == g
    s = a.state()
    assert s.decided is not None
    assert PaxosState.from_bytes(s.to_bytes()) == s
    fresh = Paxos(nid(4), 2).state()
    assert PaxosState.from_bytes(fresh.to_bytes()) == fresh


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"XXXX\x00\x00", "known version"),
        (b"WPG\x01\xff\xff", "claims 65535 nodes"),
        (b"WPG\x01\x00\x00junk", "stray bytes"),
        (b"WPG\x01\x00\x01" + bytes(60), "uid 0"),
    ],
)
def test_hostile_gossip_is_a_paxos_error(data: bytes, reason: str) -> None:
    with pytest.raises(PaxosError, match=reason):
        GossipState.from_bytes(data)


def _claims_bytes(claims: Claims) -> bytes:
    return GossipState({nid(1): claims}).to_bytes()


def test_contradictory_claims_are_refused() -> None:
    p1, p2 = ProposalID(1, nid(1)), ProposalID(2, nid(1))
    good = _claims_bytes(Claims(p2, p1, frozenset({nid(1).name})))
    GossipState.from_bytes(good)
    with pytest.raises(PaxosError, match="contradictory"):
        GossipState.from_bytes(_claims_bytes(Claims(p1, p2, frozenset({nid(1).name}))))
    with pytest.raises(PaxosError, match="contradictory"):
        GossipState.from_bytes(_claims_bytes(Claims(p2, p1, frozenset())))
    # a value count larger than the bytes left is refused before allocating
    with pytest.raises(PaxosError, match="names"):
        GossipState.from_bytes(good[:-8] + b"\x03\xe8" + good[-6:])
    # unsorted nodes
    two = GossipState({nid(1): Claims(), nid(2): Claims()}).to_bytes()
    entry = len(two[6:]) // 2
    swapped = two[:6] + two[6 + entry :] + two[6 : 6 + entry]
    with pytest.raises(PaxosError, match="ascending"):
        GossipState.from_bytes(swapped)


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(PaxosError, match="exceeds"):
        GossipState.from_bytes(bytes(17 << 20))


def test_corrupt_state_is_a_paxos_error() -> None:
    s = Paxos(nid(1), 2).state().to_bytes()
    with pytest.raises(PaxosError):
        PaxosState.from_bytes(s[:-1])
    with pytest.raises(PaxosError, match="quorum 0"):
        PaxosState.from_bytes(s[:4] + b"\x00\x00" + s[6:])
    with pytest.raises(PaxosError, match="decided"):
        PaxosState.from_bytes(s[:20] + b"\x01" + s[21:])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for parse in (GossipState.from_bytes, PaxosState.from_bytes):
        try:
            parse(data)
        except PaxosError:
            pass
