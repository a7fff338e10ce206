"""A peer's own address space: which ranges it owns and which of their addresses are free.

Representation: two lists of ranges, ``ours`` (everything the ring gives this peer) and ``free``
(the subset not handed to any container). Each list is sorted by start, disjoint and coalesced:
no two ranges overlap or touch, and none is empty, so there is exactly one representation of a
set of addresses and "the lowest free address" is the start of the first range that meets the
request. Lists stay short (one range per gap between allocations), so the linear operations here
are cheap; lookups use ``bisect`` on the starts.

Invariants (``check()``): both lists sorted, disjoint, coalesced; every free range lies in ours.
The space does no I/O and knows nothing of containers; the allocator tells it what happened.
"""

from __future__ import annotations

import bisect

from weave_cli.ipam.address import Range, coalesce, subtract


class SpaceError(ValueError):
    """A caller asked for something impossible (free an address that is not ours, ...)."""


def _find(ranges: list[Range], addr: int) -> int:
    """Index of the range holding ``addr``, or -1."""
    i = bisect.bisect_right([r.start for r in ranges], addr) - 1
    return i if i >= 0 and addr < ranges[i].end else -1


class Space:
    """The owned and free addresses of one peer."""

    def __init__(self) -> None:
        self.ours: list[Range] = []
        self.free: list[Range] = []

    # -- ownership ---------------------------------------------------------------------------

    def add(self, r: Range) -> None:
        """Take ownership of ``r``; its addresses start free."""
        self.ours = coalesce([*self.ours, r])
        self.free = coalesce([*self.free, r])

    def remove(self, r: Range) -> None:
        """Give up ``r`` (given away or lost): it is no longer ours nor free."""
        self.ours = subtract(self.ours, [r])
        self.free = subtract(self.free, [r])

    def owns(self, addr: int) -> bool:
        return _find(self.ours, addr) >= 0

    def is_free(self, addr: int) -> bool:
        return _find(self.free, addr) >= 0

    # -- addresses ---------------------------------------------------------------------------

    def allocate(self, within: Range) -> int | None:
        """Take the lowest free address in ``within``; None when there is none."""
        for r in self.free:
            hit = r.intersect(within)
            if hit is not None:
                self.claim(hit.start)
                return hit.start
        return None

    def claim(self, addr: int) -> None:
        """Mark a specific owned, free address as in use."""
        i = _find(self.free, addr)
        if i < 0:
            raise SpaceError(f"address {addr} is not a free address of ours")
        r = self.free[i]
        pieces = [p for p in (Range(r.start, addr), Range(addr + 1, r.end)) if p.size]
        self.free[i : i + 1] = pieces

    def release(self, addr: int) -> None:
        """Return an address to the free list, coalescing with its neighbours."""
        if not self.owns(addr):
            raise SpaceError(f"address {addr} is not ours to free")
        if self.is_free(addr):
            raise SpaceError(f"address {addr} is already free")
        self.free = coalesce([*self.free, Range(addr, addr + 1)])

    # -- sizes -------------------------------------------------------------------------------

    def num_free(self, within: Range | None = None) -> int:
        if within is None:
            return sum(r.size for r in self.free)
        return sum(hit.size for r in self.free if (hit := r.intersect(within)) is not None)

    def num_owned(self) -> int:
        return sum(r.size for r in self.ours)

    # -- donation ----------------------------------------------------------------------------

    def donate(self, within: Range) -> Range | None:
        """Give away free space inside ``within`` and return it, or None if there is none.

        The donation comes from the biggest free chunk inside ``within`` (the lowest such chunk
        on a tie), is its upper part, and is never more than half of *all* our free space (rounded
        down), so a donor always keeps at least as much as it gives. One free address left means
        nothing to give. The donated range is removed from ours and from free.
        """
        chunks = [hit for r in self.free if (hit := r.intersect(within)) is not None]
        if not chunks:
            return None
        biggest = max(chunks, key=lambda c: (c.size, -c.start))
        size = min(biggest.size, self.num_free() // 2)
        if size == 0:
            return None
        gift = Range(biggest.end - size, biggest.end)
        self.remove(gift)
        return gift

    def check(self) -> None:
        """Raise SpaceError if the representation invariants do not hold."""
        for name, lst in (("ours", self.ours), ("free", self.free)):
            if lst != coalesce(lst):
                raise SpaceError(f"{name} is not sorted and coalesced: {lst}")
        if subtract(self.free, self.ours):
            raise SpaceError("free space outside our ranges")
