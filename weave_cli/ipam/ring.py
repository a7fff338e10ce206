"""The IPAM ring: a CRDT saying which peer owns which part of the allocation range.

Representation: the universe ``[start, end)`` is cut at *tokens*. ``entries`` is a list of
``Entry(token, peer, version, free)`` sorted by token; entry i owns ``[token_i, token_{i+1})``
and the last entry wraps, owning ``[token_last, end)`` plus ``[start, token_0)``. ``free`` is the
owner's last report of unused addresses in that range (a hint for choosing donors). ``seeds`` are
the peers the ring was first divided between; rings with other seeds never merge. ``owner`` is
the peer holding this replica. Tokens are never deleted: ranges only split and change hands.

Updates: only an entry's owner changes it, and it bumps the version when it does; ``transfer``
(rmpeer, reset) is the one exception and adds ``TRANSFER_BUMP`` so it beats concurrent updates.

Merge rule: the union by token, and on the same token the entry with the greatest key
``(version, peer, free)`` wins; then every ``free`` is clamped to its range's size. A per-token
maximum of a total order is a join, so merge is commutative, associative and idempotent; the clamp
only depends on the final token set, so it keeps those laws. Equal versions with different peers
(two hosts ran rmpeer for the same dead peer) resolve to the greater peer name on every replica,
and ``MergeResult`` reports the double claim; every range this replica owned and lost in a merge
is reported too, so the allocator stops allocating there and can surface it.

Invariants (``check_invariants``): tokens sorted and unique, inside ``[start, end)``, ``free``
within ``0..size``, versions in ``0..MAX_VERSION``, and a ring with entries has seeds.
"""

from __future__ import annotations

import bisect
import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from weave_cli.errors import WeaveError
from weave_cli.ipam.address import ADDRESS_SPACE, Range, coalesce, format_ip, subtract
from weave_cli.router.peer import PeerName

TRANSFER_BUMP = 100  # as the original: a transfer beats any concurrent update by the old owner
MAX_VERSION = (1 << 32) - 1


class RingErrorKind(enum.Enum):
    NOT_SORTED = "not sorted"
    DUPLICATE_TOKEN = "duplicate token"
    OUT_OF_RANGE = "token outside range"
    FREE_TOO_BIG = "free > size"
    BAD_VALUE = "bad value"
    DIFFERENT_SEEDS = "different seeds"
    DIFFERENT_RANGE = "different range"
    NOT_OWNER = "not owner"
    MALFORMED = "malformed"


class RingError(WeaveError):
    """A ring operation or incoming ring was refused; ``kind`` says which rule it broke."""

    def __init__(self, kind: RingErrorKind, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Entry:
    token: int
    peer: PeerName
    version: int
    free: int

    def key(self) -> tuple[int, int, int]:
        """The merge order: the greatest key wins a token."""
        return (self.version, int(self.peer), self.free)


@dataclass(frozen=True, slots=True)
class DoubleClaim:
    """Two peers claimed one token at the same version; every replica picks ``winner``."""

    token: int
    claimants: tuple[PeerName, PeerName]
    winner: PeerName
    version: int

    @property
    def message(self) -> str:
        a, b = self.claimants
        return (
            f"IP range from {format_ip(self.token)} claimed by both {a} and {b} at version "
            f"{self.version}; {self.winner} keeps it (was rmpeer run on more than one host?)"
        )


@dataclass(frozen=True, slots=True)
class LostRange:
    """A range this replica's owner believed it owned and, after a merge, does not."""

    range: Range
    now_owner: PeerName

    @property
    def message(self) -> str:
        return (
            f"Peer {self.now_owner} says it owns the IP range from {self.range}, "
            "which I think I own"
        )


@dataclass(frozen=True, slots=True)
class MergeResult:
    changed: bool = False
    double_claims: tuple[DoubleClaim, ...] = ()
    lost: tuple[LostRange, ...] = ()

    @property
    def conflicts(self) -> list[str]:
        return [c.message for c in self.double_claims] + [lost.message for lost in self.lost]


class Ring:
    """One replica of the ring, held by ``owner``."""

    def __init__(self, start: int, end: int, owner: PeerName) -> None:
        if not 0 <= start < end <= ADDRESS_SPACE:
            raise ValueError(f"invalid ring range [{start}, {end})")
        self.start, self.end, self.owner = start, end, owner
        self.entries: list[Entry] = []
        self.seeds: tuple[PeerName, ...] = ()

    # -- reading -----------------------------------------------------------------------------

    @property
    def range(self) -> Range:
        return Range(self.start, self.end)

    def is_empty(self) -> bool:
        return not self.entries

    def copy(self, owner: PeerName | None = None) -> Ring:
        ring = Ring(self.start, self.end, self.owner if owner is None else owner)
        ring.entries, ring.seeds = list(self.entries), self.seeds
        return ring

    def same_state(self, other: Ring) -> bool:
        """Equal content (range, seeds, entries), whoever holds the replica."""
        return (self.range, self.seeds, self.entries) == (other.range, other.seeds, other.entries)

    def _size(self, i: int, entries: list[Entry] | None = None) -> int:
        es = self.entries if entries is None else entries
        if i + 1 < len(es):
            return es[i + 1].token - es[i].token
        return (self.end - es[i].token) + (es[0].token - self.start)

    def _pieces(self, i: int) -> list[Range]:
        """The one or two address ranges of entry i (the last entry wraps)."""
        e = self.entries[i]
        if i + 1 < len(self.entries):
            return [Range(e.token, self.entries[i + 1].token)]
        pieces = [Range(e.token, self.end), Range(self.start, self.entries[0].token)]
        return [p for p in pieces if p.size]

    def _index_of(self, addr: int) -> int:
        """Index of the entry whose range holds ``addr`` (ring must be non-empty)."""
        i = bisect.bisect_right([e.token for e in self.entries], addr) - 1
        return i if i >= 0 else len(self.entries) - 1

    def owner_of(self, addr: int) -> PeerName | None:
        if self.is_empty() or addr not in self.range:
            return None
        return self.entries[self._index_of(addr)].peer

    def owned_ranges(self, peer: PeerName) -> list[Range]:
        """The ranges ``peer`` owns, one per entry (a wrapping one split in two), by address."""
        out = [p for i, e in enumerate(self.entries) if e.peer == peer for p in self._pieces(i)]
        return sorted(out)

    def entry_size(self, token: int) -> int:
        return self._size(self._entry_index(token))

    def _entry_index(self, token: int) -> int:
        i = bisect.bisect_left([e.token for e in self.entries], token)
        if i == len(self.entries) or self.entries[i].token != token:
            raise RingError(RingErrorKind.NOT_OWNER, f"no ring entry at {format_ip(token)}")
        return i

    # -- owner-only updates ------------------------------------------------------------------

    def claim_for_peers(self, peers: Iterable[PeerName]) -> None:
        """Divide an empty ring between ``peers`` by repeated halving; record them as seeds.

        The result depends only on the sorted, de-duplicated peer set, so every peer that agreed
        on the set builds the same ring. With a power-of-two range every share is CIDR-aligned.
        """
        seeds = tuple(sorted(set(peers)))
        if not self.is_empty() or not seeds:
            raise ValueError("claim_for_peers needs an empty ring and at least one peer")

        def divide(lo: int, hi: int, ps: tuple[PeerName, ...]) -> None:
            size = hi - lo
            if size == 1 or len(ps) == 1:
                self.entries.append(Entry(lo, ps[0], 0, size))
                return
            mid, half = lo + size // 2, len(ps) // 2
            divide(lo, mid, ps[:half])
            divide(mid, hi, ps[half:])

        divide(self.start, self.end, seeds)
        self.seeds = seeds

    def _mine(self, token: int) -> int:
        i = self._entry_index(token)
        if self.entries[i].peer != self.owner:
            raise RingError(
                RingErrorKind.NOT_OWNER,
                f"the IP range from {format_ip(token)} belongs to {self.entries[i].peer}, "
                f"not to {self.owner}",
            )
        return i

    def _bump(self, e: Entry, by: int = 1, **changes: Any) -> Entry:
        if e.version + by > MAX_VERSION:
            raise RingError(RingErrorKind.BAD_VALUE, f"version overflow at {format_ip(e.token)}")
        return replace(e, version=e.version + by, **changes)

    def update_free(self, token: int, free: int) -> None:
        """Report the free count of one of our entries (bumps the version if it changed)."""
        i = self._mine(token)
        if not 0 <= free <= self._size(i):
            raise RingError(RingErrorKind.FREE_TOO_BIG, f"free {free} outside 0..{self._size(i)}")
        if self.entries[i].free != free:
            self.entries[i] = self._bump(self.entries[i], free=free)

    def grant_range_to(self, peer: PeerName, r: Range) -> None:
        """Give ``r``, which must lie inside one of our entries, to ``peer``: at most 2 new tokens.

        The granted entry starts all free (the donor gave free space); our remaining pieces keep
        their free count clamped to their new size until the allocator reports it.
        """
        if r.size == 0 or self.is_empty() or not self.range.contains_range(r):
            raise RingError(RingErrorKind.NOT_OWNER, f"cannot grant {r}: not inside the ring")
        i = self._index_of(r.start)
        if self.entries[i].peer != self.owner or not any(
            p.contains_range(r) for p in self._pieces(i)
        ):
            raise RingError(RingErrorKind.NOT_OWNER, f"cannot grant {r}: not one range of ours")
        orig = self.entries[i]
        tokens = [e.token for e in self.entries]
        end = self.start if r.end == self.end else r.end
        if end not in tokens:  # our remainder after the grant
            self._insert(Entry(end, self.owner, 0, orig.free))
        if r.start in tokens:
            j = self._entry_index(r.start)
            self.entries[j] = self._bump(self.entries[j], peer=peer)
        else:
            self._insert(Entry(r.start, peer, 0, 0))
            j = self._entry_index(orig.token)
            self.entries[j] = self._bump(self.entries[j])
        self._clamp_all(granted=r.start)

    def _insert(self, e: Entry) -> None:
        bisect.insort(self.entries, e, key=lambda x: x.token)

    def _clamp_all(self, granted: int | None = None) -> None:
        for k, e in enumerate(self.entries):
            size = self._size(k)
            free = size if e.token == granted else min(e.free, size)
            if free != e.free:
                self.entries[k] = replace(e, free=free)

    def transfer(self, from_peer: PeerName, to_peer: PeerName) -> int:
        """Hand every entry of ``from_peer`` to ``to_peer`` (rmpeer, reset); version +100.

        One side must be this replica's owner. The moved ranges are all free for the new owner
        (the old owner's containers are gone); returns how many addresses moved.
        """
        if self.owner not in (from_peer, to_peer) or from_peer == to_peer:
            raise RingError(RingErrorKind.NOT_OWNER, "transfer must be from or to this peer")
        moved = 0
        for k, e in enumerate(self.entries):
            if e.peer == from_peer:
                size = self._size(k)
                self.entries[k] = self._bump(e, TRANSFER_BUMP, peer=to_peer, free=size)
                moved += size
        return moved

    # -- merge -------------------------------------------------------------------------------

    def validate_incoming(self, other: Ring) -> None:
        """Raise RingError if ``other`` may not be merged into this ring."""
        if other.range != self.range:
            raise RingError(
                RingErrorKind.DIFFERENT_RANGE,
                f"Incompatible IP allocation ranges (received: {_cidrish(other.range)}, "
                f"ours: {_cidrish(self.range)})",
            )
        other.check_invariants()
        if other.seeds and self.seeds and other.seeds != self.seeds:
            raise RingError(
                RingErrorKind.DIFFERENT_SEEDS,
                "IP allocation was seeded by different peers (received: "
                f"{_names(other.seeds)}, ours: {_names(self.seeds)})",
                hint="the two groups of peers formed separate rings; reset one of them",
            )

    def plan_merge(self, other: Ring) -> tuple[list[Entry], MergeResult]:
        """What ``merge`` would do, without changing this ring (validates first)."""
        self.validate_incoming(other)
        by_token = {e.token: e for e in self.entries}
        claims: list[DoubleClaim] = []
        for e in other.entries:
            mine = by_token.get(e.token)
            if mine is None or e.key() > mine.key():
                by_token[e.token] = e
            if mine is not None and mine.version == e.version and mine.peer != e.peer:
                win = max(mine, e, key=Entry.key)
                pair = (min(mine.peer, e.peer), max(mine.peer, e.peer))
                claims.append(DoubleClaim(e.token, pair, win.peer, e.version))
        merged = [by_token[t] for t in sorted(by_token)]
        merged = [replace(e, free=min(e.free, self._size(k, merged))) for k, e in enumerate(merged)]
        changed = merged != self.entries or (not self.seeds and bool(other.seeds))
        probe = self.copy()
        probe.entries = merged
        lost = [
            LostRange(piece, probe.owner_of(piece.start) or self.owner)
            for r in coalesce(self.owned_ranges(self.owner))
            for piece in _split_by_owner(probe, subtract([r], probe.owned_ranges(self.owner)))
        ]
        return merged, MergeResult(changed, tuple(claims), tuple(lost))

    def merge(self, other: Ring) -> MergeResult:
        """Merge a valid incoming ring; a refused one raises RingError and changes nothing."""
        merged, result = self.plan_merge(other)
        self.entries = merged
        if not self.seeds:
            self.seeds = other.seeds
        return result

    def check_invariants(self) -> None:
        """Raise RingError naming the first broken invariant."""
        prev: int | None = None
        for e in self.entries:
            if prev is not None and e.token == prev:
                raise RingError(RingErrorKind.DUPLICATE_TOKEN, f"token {_ip(e.token)} repeated")
            if prev is not None and e.token < prev:
                raise RingError(RingErrorKind.NOT_SORTED, "ring entries are not sorted")
            if e.token not in self.range:
                raise RingError(
                    RingErrorKind.OUT_OF_RANGE,
                    f"token {_ip(e.token)} is outside the ring range {self.range}",
                )
            prev = e.token
        for k, e in enumerate(self.entries):
            if not 0 <= e.version <= MAX_VERSION or e.free < 0:
                raise RingError(RingErrorKind.BAD_VALUE, f"bad entry at {_ip(e.token)}")
            if e.free > self._size(k):
                raise RingError(
                    RingErrorKind.FREE_TOO_BIG,
                    f"entry at {_ip(e.token)} reports {e.free} free of {self._size(k)}",
                )
        if self.entries and not self.seeds:
            raise RingError(RingErrorKind.MALFORMED, "ring has entries but no seeds")

    # -- encoding ----------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """``_HEAD`` (magic, start, end, owner, seed count, entry count), seeds, ``_ENTRY``s."""
        out = [_HEAD.pack(_MAGIC, self.start, self.end, self.owner.to_bytes6(),
                          len(self.seeds), len(self.entries))]  # fmt: skip
        out += [p.to_bytes6() for p in self.seeds]
        out += [_ENTRY.pack(e.token, e.peer.to_bytes6(), e.version, e.free) for e in self.entries]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes, max_entries: int = 65536) -> Ring:
        """Decode and check a ring; any malformed or hostile input raises RingError.

        The counts are bounded and the length checked before anything is allocated for them.
        """

        def bad(why: str) -> RingError:
            return RingError(RingErrorKind.MALFORMED, f"malformed ring: {why}")

        if len(data) < _HEAD.size:
            raise bad("too short")
        magic, start, end, owner, n_seeds, n_entries = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            raise bad("bad magic")
        if n_entries > max_entries or n_seeds > max_entries:
            raise bad(f"{n_entries} entries, {n_seeds} seeds: more than {max_entries}")
        if len(data) != _HEAD.size + 6 * n_seeds + _ENTRY.size * n_entries:
            raise bad("length does not match the counts")
        if not 0 <= start < end <= ADDRESS_SPACE:
            raise bad(f"invalid range [{start}, {end})")
        ring = cls(start, end, PeerName.from_bytes6(owner))
        pos = _HEAD.size
        seeds = [PeerName.from_bytes6(data[pos + 6 * k : pos + 6 * k + 6]) for k in range(n_seeds)]
        if seeds != sorted(set(seeds)):
            raise bad("seeds not sorted and unique")
        ring.seeds = tuple(seeds)
        pos += 6 * n_seeds
        for token, peer, version, free in _ENTRY.iter_unpack(data[pos:]):
            ring.entries.append(Entry(token, PeerName.from_bytes6(peer), version, free))
        ring.check_invariants()
        return ring

    def to_report(self) -> list[dict[str, object]]:
        """The ``Entries`` of the original's IPAM report; the caller adds nicknames."""
        return [
            {"Token": _ip(e.token), "Size": self._size(k), "Peer": str(e.peer),
             "Version": e.version, "Free": e.free}
            for k, e in enumerate(self.entries)
        ]  # fmt: skip


_MAGIC = b"WRG1"
_HEAD = struct.Struct(">4sQQ6sII")
_ENTRY = struct.Struct(">I6sIQ")


def _ip(addr: int) -> str:
    return format_ip(addr) if 0 <= addr < ADDRESS_SPACE else str(addr)


def _names(peers: Iterable[PeerName]) -> str:
    return ", ".join(str(p) for p in peers) or "(none)"


def _cidrish(r: Range) -> str:
    size = r.size
    if size & (size - 1) == 0 and r.start % size == 0:
        return f"{format_ip(r.start)}/{33 - size.bit_length()}"
    return str(r)


def _split_by_owner(ring: Ring, ranges: list[Range]) -> list[Range]:
    """Cut ranges at the ring's tokens so each piece has one owner."""
    tokens = [e.token for e in ring.entries]
    out: list[Range] = []
    for r in ranges:
        cuts = [t for t in tokens if r.start < t < r.end]
        bounds = [r.start, *cuts, r.end]
        out.extend(Range(a, b) for a, b in pairwise(bounds))
    return out
