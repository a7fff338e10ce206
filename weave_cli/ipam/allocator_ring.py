"""Pure helpers the allocator uses to keep its ``Space`` and the ring in step.

``sync_space`` makes a peer's space exactly the ring's ranges for it (lost ranges leave at once,
gained ones arrive free except for addresses already in use); ``report_free`` writes the free
counts into our entries; ``choose_donor`` picks a peer to ask for space, weighted by the free
space it reports; ``donate`` gives away free space inside one of our entries and records the
grant in the ring.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from weave_cli.ipam.address import Range, coalesce, subtract
from weave_cli.ipam.ring import Ring
from weave_cli.ipam.space import Space
from weave_cli.router.peer import PeerName


def entry_pieces(ring: Ring, i: int) -> list[Range]:
    """The one or two address ranges of entry ``i`` (the last entry wraps)."""
    es = ring.entries
    if i + 1 < len(es):
        return [Range(es[i].token, es[i + 1].token)]
    pieces = [Range(es[i].token, ring.end), Range(ring.start, es[0].token)]
    return [p for p in pieces if p.size]


def sync_space(ring: Ring, space: Space, me: PeerName, in_use: Iterable[int]) -> None:
    """Make ``space`` own exactly ``me``'s ranges in ``ring``; ``in_use`` addresses stay taken."""
    mine = coalesce(ring.owned_ranges(me))
    for r in subtract(space.ours, mine):
        space.remove(r)
    gained = subtract(mine, space.ours)
    for r in gained:
        space.add(r)
    if gained:
        for addr in in_use:
            if any(addr in r for r in gained) and space.is_free(addr):
                space.claim(addr)


def report_free(ring: Ring, space: Space, me: PeerName) -> bool:
    """Write our free counts into our entries; True if the ring changed."""
    changed = False
    for i, e in enumerate(list(ring.entries)):
        if e.peer == me:
            free = sum(space.num_free(p) for p in entry_pieces(ring, i))
            if free != e.free:
                ring.update_free(e.token, free)
                changed = True
    return changed


def choose_donor(
    ring: Ring, me: PeerName, exclude: set[PeerName], want: Range, rng: random.Random
) -> PeerName | None:
    """A peer reporting free space in an entry that meets ``want``, weighted by that space."""
    weights: dict[PeerName, int] = {}
    for i, e in enumerate(ring.entries):
        if e.peer == me or e.peer in exclude or e.free == 0:
            continue
        if any(p.intersect(want) for p in entry_pieces(ring, i)):
            weights[e.peer] = weights.get(e.peer, 0) + e.free
    if not weights:
        return None
    peers = sorted(weights)
    return rng.choices(peers, [weights[p] for p in peers])[0]


def donate(ring: Ring, space: Space, me: PeerName, to: PeerName, want: Range) -> Range | None:
    """Give ``to`` free space of ours inside ``want`` (within one ring entry); None if none."""
    for i, e in enumerate(ring.entries):
        if e.peer != me:
            continue
        for piece in entry_pieces(ring, i):
            within = piece.intersect(want)
            if within is not None and (gift := space.donate(within)) is not None:
                ring.grant_range_to(to, gift)
                report_free(ring, space, me)
                return gift
    return None
