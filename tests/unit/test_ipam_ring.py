"""The ring CRDT: division, owner-only updates, merge laws, conflict reports, validation, bytes."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weave_cli.ipam.address import CIDR, Range, coalesce, parse_ip
from weave_cli.ipam.ring import Entry, Ring, RingError, RingErrorKind
from weave_cli.router.peer import PeerName

BASE = parse_ip("10.32.0.0")
A, B, C, D = (PeerName(0x020000000000 + k) for k in (1, 2, 3, 4))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def seeded(owner: PeerName, peers: list[PeerName], size: int = 64) -> Ring:
    ring = Ring(BASE, BASE + size, owner)
    ring.claim_for_peers(peers)
    return ring


def merged(a: Ring, b: Ring) -> Ring:
    out = a.copy()
    out.merge(b)
    out.check_invariants()
    return out


def apply_random_op(
    data: st.DataObject, rings: dict[PeerName, Ring], names: list[PeerName]
) -> None:
    """One legal operation on one replica (by its owner), or one gossip between two replicas."""
    me = data.draw(st.sampled_from(sorted(rings)))
    ring = rings[me]
    op = data.draw(st.sampled_from(["grant", "free", "transfer", "gossip", "gossip"]))
    mine = [e for e in ring.entries if e.peer == me]
    if op == "grant" and mine:
        piece = data.draw(st.sampled_from(ring.owned_ranges(me)))
        a = data.draw(st.integers(piece.start, piece.end - 1))
        b = data.draw(st.integers(a + 1, piece.end))
        to = data.draw(st.sampled_from([p for p in names if p != me]))
        before = len(ring.entries)
        ring.grant_range_to(to, Range(a, b))
        assert len(ring.entries) - before <= 2
        assert all(ring.owner_of(x) == to for x in (a, b - 1))
    elif op == "free" and mine:
        e = data.draw(st.sampled_from(mine))
        ring.update_free(e.token, data.draw(st.integers(0, ring.entry_size(e.token))))
    elif op == "transfer":
        dead = data.draw(st.sampled_from([p for p in names if p != me]))
        ring.transfer(dead, me)
    else:
        other = rings[data.draw(st.sampled_from(sorted(rings)))]
        ring.merge(other.copy())
    ring.check_invariants()


@st.composite
def replica_sets(draw: st.DrawFn) -> tuple[dict[PeerName, Ring], list[PeerName]]:
    n = draw(st.integers(2, 4))
    names = [PeerName(0x020000000000 + k) for k in range(1, n + 2)]  # the last one never runs
    live = names[:n]
    base = seeded(live[0], names, size=draw(st.sampled_from([16, 64, 256])))
    rings = {p: base.copy(owner=p) for p in live}
    data = draw(st.data())
    for _ in range(draw(st.integers(0, 25))):
        apply_random_op(data, rings, names)
    return rings, names


@FAST
@given(replica_sets(), st.data())
def test_merge_is_commutative_associative_idempotent(
    setup: tuple[dict[PeerName, Ring], list[PeerName]], data: st.DataObject
) -> None:
    rings, _ = setup
    pick = st.sampled_from(sorted(rings))
    a, b, c = (rings[data.draw(pick)] for _ in range(3))
    assert merged(a, b).same_state(merged(b, a))
    assert merged(merged(a, b), c).same_state(merged(a, merged(b, c)))
    assert merged(a, a).same_state(a)
    assert merged(merged(a, b), b).same_state(merged(a, b))


@FAST
@given(replica_sets(), st.randoms(use_true_random=False))
def test_gossip_in_any_order_converges_to_one_owner_per_token(
    setup: tuple[dict[PeerName, Ring], list[PeerName]], rnd: random.Random
) -> None:
    rings, _ = setup
    order = [p for p in rings for _ in range(2)]
    rnd.shuffle(order)
    for p in order:  # a random gossip pattern, then a full round so that every replica met all
        rings[p].merge(rings[rnd.choice(order)].copy())
    for _ in range(2):
        for p in rings:
            for q in rings:
                rings[p].merge(rings[q].copy())
    first = next(iter(rings.values()))
    for ring in rings.values():
        ring.check_invariants()
        assert ring.same_state(first)
    covered = [r for e in first.entries for r in first.owned_ranges(e.peer)]
    assert coalesce(covered) == [first.range]


def test_double_transfer_of_a_dead_peer_converges_and_is_reported() -> None:
    ra, rb, rc = (seeded(p, [A, B, D]) for p in (A, B, C))
    dead_tokens = [e.token for e in ra.entries if e.peer == D]
    assert dead_tokens
    assert ra.transfer(D, A) == rb.transfer(D, B) == sum(ra.entry_size(t) for t in dead_tokens)
    sent_a, sent_b = ra.copy(), rb.copy()  # the two gossips cross on the wire
    res_a, res_b = ra.merge(sent_b), rb.merge(sent_a)
    assert ra.same_state(rb)
    for t in dead_tokens:
        assert ra.owner_of(t) == B, "the greater peer name wins an equal-version double claim"
    for res in (res_a, res_b):
        assert [(c.token, c.claimants, c.winner) for c in res.double_claims] == [
            (t, (A, B), B) for t in dead_tokens
        ]
    assert res_b.lost == ()
    assert [lost.range for lost in res_a.lost] == [
        Range(t, t + ra.entry_size(t)) for t in dead_tokens
    ]
    assert "Peer 02:00:00:00:00:02 says it owns the IP range from" in res_a.conflicts[-1]
    assert ra.owned_ranges(A) == [Range(BASE, BASE + 32)], "A stops at its own share"
    # A third replica hearing both, in either order, ends the same way.
    r1, r2 = rc.copy(), rc.copy()
    r1.merge(ra.copy()), r1.merge(rb.copy())
    r2.merge(rb.copy()), r2.merge(ra.copy())
    assert r1.same_state(r2) and r1.same_state(ra)


def test_takeover_of_our_range_is_reported_and_can_be_previewed() -> None:
    ours = seeded(A, [A, B])
    forged = ours.copy(owner=B)
    forged.entries[0] = Entry(BASE, B, 7, 0)
    before = ours.to_bytes()
    merged_entries, preview = ours.plan_merge(forged)
    assert ours.to_bytes() == before, "plan_merge changes nothing"
    assert [lost.range for lost in preview.lost] == [Range(BASE, BASE + 32)]
    assert preview.conflicts == [
        "Peer 02:00:00:00:00:02 says it owns the IP range from 10.32.0.0-10.32.0.31, "
        "which I think I own"
    ]
    assert ours.merge(forged) == preview and ours.entries == merged_entries


def test_claim_for_peers_example() -> None:
    ring = seeded(A, [C, A, B, A], size=256)
    assert ring.seeds == (A, B, C)
    assert [(e.token - BASE, e.peer, e.free) for e in ring.entries] == [
        (0, A, 128), (128, B, 64), (192, C, 64)
    ]  # fmt: skip
    assert ring.to_report()[1] == {
        "Token": "10.32.0.128", "Size": 64, "Peer": "02:00:00:00:00:02", "Version": 0, "Free": 64
    }  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 1 << 48 - 1).map(PeerName), min_size=1, max_size=20),
       st.integers(20, 32))  # fmt: skip
def test_claim_for_peers_gives_disjoint_aligned_cover(peers: list[PeerName], prefix: int) -> None:
    cidr = CIDR(BASE, prefix)
    ring = Ring(cidr.start, cidr.start + cidr.size, peers[0])
    ring.claim_for_peers(peers)
    ring.check_invariants()
    same = Ring(ring.start, ring.end, peers[-1])
    same.claim_for_peers(reversed(peers))
    assert same.same_state(ring), "deterministic from the peer set"
    pos = ring.start
    for e in ring.entries:
        size = ring.entry_size(e.token)
        assert e.token == pos and size & (size - 1) == 0 and e.token % size == 0
        assert e.free == size and e.version == 0
        pos += size
    assert pos == ring.end
    if len(set(peers)) <= cidr.size:
        assert {e.peer for e in ring.entries} == set(peers)


def test_grant_inserts_at_most_two_tokens_and_keeps_the_rest() -> None:
    ring = seeded(A, [A, B])
    ring.grant_range_to(C, Range(BASE + 8, BASE + 16))
    assert [(e.token - BASE, e.peer) for e in ring.entries] == [(0, A), (8, C), (16, A), (32, B)]
    assert ring.owned_ranges(A) == [Range(BASE, BASE + 8), Range(BASE + 16, BASE + 32)]
    assert ring.entries[1].free == 8 and ring.entries[0].version == 1
    with pytest.raises(RingError) as err:
        ring.grant_range_to(C, Range(BASE + 40, BASE + 44))
    assert err.value.kind is RingErrorKind.NOT_OWNER
    ring.grant_range_to(D, Range(BASE + 16, BASE + 32))
    assert ring.owner_of(BASE + 31) == D and len(ring.entries) == 4
    with pytest.raises(RingError):
        ring.update_free(BASE + 32, 1)


def _bad_rings() -> list[tuple[RingErrorKind, Ring]]:
    good = seeded(B, [A, B, C])
    out: list[tuple[RingErrorKind, Ring]] = []

    def mutate(kind: RingErrorKind, entries: list[Entry]) -> None:
        bad = good.copy()
        bad.entries = entries
        out.append((kind, bad))

    es = good.entries
    mutate(RingErrorKind.NOT_SORTED, [es[1], es[0], es[2]])
    mutate(RingErrorKind.DUPLICATE_TOKEN, [es[0], es[1], Entry(es[1].token, C, 9, 0), es[2]])
    mutate(RingErrorKind.OUT_OF_RANGE, [*es, Entry(BASE + 64, C, 0, 0)])
    mutate(RingErrorKind.FREE_TOO_BIG, [es[0], Entry(es[1].token, B, 1, 17), es[2]])
    other_seeds = Ring(good.start, good.end, B)
    other_seeds.claim_for_peers([A, D])
    out.append((RingErrorKind.DIFFERENT_SEEDS, other_seeds))
    other_range = Ring(BASE, BASE + 128, B)
    other_range.claim_for_peers([A, B, C])
    out.append((RingErrorKind.DIFFERENT_RANGE, other_range))
    return out


@pytest.mark.parametrize(("kind", "bad"), _bad_rings(), ids=lambda x: getattr(x, "name", ""))
def test_malformed_rings_are_refused_and_leave_ours_unchanged(
    kind: RingErrorKind, bad: Ring
) -> None:
    ours = seeded(A, [A, B, C])
    ours.update_free(BASE, 3)
    before = ours.to_bytes()
    with pytest.raises(RingError) as err:
        ours.merge(bad)
    assert err.value.kind is kind
    assert ours.to_bytes() == before
    if kind is RingErrorKind.DIFFERENT_SEEDS:
        assert str(err.value).startswith(
            "IP allocation was seeded by different peers (received: 02:00:00:00:00:01, "
            "02:00:00:00:00:04, ours: 02:00:00:00:00:01, 02:00:00:00:00:02, 02:00:00:00:00:03)"
        )
    if kind is RingErrorKind.DIFFERENT_RANGE:
        assert str(err.value) == (
            "Incompatible IP allocation ranges (received: 10.32.0.0/25, ours: 10.32.0.0/26)"
        )
    if kind not in (RingErrorKind.DIFFERENT_SEEDS, RingErrorKind.DIFFERENT_RANGE):
        with pytest.raises(RingError) as err2:
            Ring.from_bytes(bad.to_bytes())
        assert err2.value.kind is kind


@FAST
@given(replica_sets())
def test_bytes_round_trip(setup: tuple[dict[PeerName, Ring], list[PeerName]]) -> None:
    for ring in setup[0].values():
        back = Ring.from_bytes(ring.to_bytes())
        assert back.same_state(ring) and back.owner == ring.owner


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_from_bytes_on_random_bytes_only_raises_ring_error(data: bytes) -> None:
    try:
        Ring.from_bytes(data).check_invariants()
    except RingError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_from_bytes_on_corrupted_rings_only_raises_ring_error(data: st.DataObject) -> None:
    raw = bytearray(seeded(A, [A, B, C]).to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        Ring.from_bytes(bytes(raw)).check_invariants()
    except RingError:
        pass


def test_entry_count_is_bounded_before_allocating() -> None:
    raw = bytearray(seeded(A, [A, B, C]).to_bytes())
    raw[30:34] = (10**9).to_bytes(4, "big")  # the entry count in the header
    with pytest.raises(RingError, match="more than 16"):
        Ring.from_bytes(bytes(raw), max_entries=16)
    with pytest.raises(RingError, match="more than 2"):
        Ring.from_bytes(seeded(A, [A, B, C]).to_bytes(), max_entries=2)
