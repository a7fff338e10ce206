"""The peers CRDT: one versioned entry per peer, the merge rule, routes and garbage collection.

Representation. ``Topology.entries`` maps each known peer name to its latest ``PeerEntry``:
the peer's identity (nickname, run ``uid``, 12-bit ``short_id``), a ``version`` that only
its owner increments, and the connections it announces (``ConnSummary``, sorted by remote
name, at most one per remote). Only the owner writes an entry, so merging is
"keep the winner": a higher version wins; on equal versions the higher uid wins (a restarted
router outranks its dead incarnation once it has bumped past it). Peers that appear only as
the remote end of someone's connection have no entry (the original's placeholders) and are
not listed until their own entry arrives.

Two derived indexes are maintained incrementally on every entry change, so no call walks the
whole graph unless it has to:

* ``_est[p]``  the remote names p announces as *established*;
* ``_sym[p]``  neighbours q with p->q and q->p both established (symmetric edges only).

Routes are computed over ``_sym`` by breadth-first search in which each level is visited in
ascending name order and a node's parent is the first (lowest-named) node of the previous
level adjacent to it. All peers with the same view therefore build the same trees:

* unicast: the BFS tree rooted at us gives the next hop to every reachable peer (cached);
* broadcast from ``source``: our children in the BFS tree rooted at ``source``. Computing
  that needs only the part of the BFS up to our own turn, and it is cached per source until
  the next change, so nothing computes all N trees eagerly (that is O(N^3) for a full mesh).

GC: a peer is kept while it is reachable from us following announced connections (any state,
in the announcing direction), as in the original. Everything learnt from the network is
bounded: at most ``MAX_PEERS`` entries and ``MAX_CONNECTIONS`` connections per entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from weave_cli.router.peer import PeerName

MAX_PEERS = 10_000
MAX_CONNECTIONS = 4096
Digest = dict[PeerName, tuple[int, int]]  # name -> (uid, version)


@dataclass(frozen=True, slots=True)
class ConnSummary:
    """One connection as its announcing peer sees it. ``address`` is the remote end
    ("ip:port", "[v6]:port"); for an inbound connection the port is the remote's ephemeral
    one. ``established`` is false while the data path is still unconfirmed (pending)."""

    name: PeerName
    address: str
    outbound: bool
    established: bool = True


@dataclass(frozen=True, slots=True)
class PeerEntry:
    name: PeerName
    nickname: str
    uid: int
    version: int
    short_id: int
    connections: tuple[ConnSummary, ...] = field(default=())

    def beats(self, uid: int, version: int) -> bool:
        """True when this entry wins the merge against an entry with ``uid``/``version``."""
        return wins((self.uid, self.version), (uid, version))


def wins(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """The merge rule on (uid, version) pairs: higher version, then higher uid."""
    return a[1] > b[1] or (a[1] == b[1] and a[0] > b[0])


@dataclass(frozen=True, slots=True)
class MergeResult:
    news: tuple[PeerEntry, ...]  # entries that replaced ours or were new: relay these
    local_bumped: bool  # an old incarnation of us was seen; our entry got a higher version


class Topology:
    """Everything we know about the mesh, from the local peer's point of view."""

    def __init__(self, local: PeerEntry) -> None:
        self.local_name = local.name
        self.entries: dict[PeerName, PeerEntry] = {}
        self._est: dict[PeerName, frozenset[PeerName]] = {}
        self._sym: dict[PeerName, set[PeerName]] = {}
        self._unicast: dict[PeerName, PeerName] | None = None
        self._children: dict[PeerName, tuple[PeerName, ...]] = {}
        self._store(local)

    # -- reading ------------------------------------------------------------------------------

    @property
    def local(self) -> PeerEntry:
        return self.entries[self.local_name]

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def get(self, name: PeerName) -> PeerEntry | None:
        return self.entries.get(name)

    def ordered(self) -> Iterator[PeerEntry]:
        """The local entry first, then the others in name order (the status order)."""
        yield self.local
        for name in sorted(self.entries):
            if name != self.local_name:
                yield self.entries[name]

    def symmetric_neighbours(self, name: PeerName) -> frozenset[PeerName]:
        return frozenset(self._sym.get(name, ()))

    def digest(self) -> Digest:
        return {e.name: (e.uid, e.version) for e in self.entries.values()}

    def diff(self, theirs: Digest) -> tuple[list[PeerEntry], list[PeerName]]:
        """(entries they lack or hold older, names of which they hold something we lack)."""
        give = [e for e in self.entries.values()
                if (t := theirs.get(e.name)) is None or e.beats(*t)]
        want = [name for name, t in theirs.items()
                if (ours := self.entries.get(name)) is None or wins(t, (ours.uid, ours.version))]
        return give, want

    # -- writing ------------------------------------------------------------------------------

    def set_local(self, connections: Iterable[ConnSummary]) -> PeerEntry | None:
        """Replace our connections; returns the new entry (version + 1) if anything changed."""
        conns = tuple(sorted(connections, key=lambda c: c.name))
        old = self.local
        if conns == old.connections:
            return None
        new = PeerEntry(old.name, old.nickname, old.uid, old.version + 1, old.short_id, conns)
        self._store(new)
        return new

    def merge(self, received: Iterable[PeerEntry]) -> MergeResult:
        """Apply the merge rule to each received entry (already validated by the codec)."""
        news: list[PeerEntry] = []
        bumped = False
        for entry in received:
            if entry.name == self.local_name:
                ours = self.local
                if entry.uid != ours.uid and entry.version >= ours.version:
                    self._store(PeerEntry(ours.name, ours.nickname, ours.uid, entry.version + 1,
                                          ours.short_id, ours.connections))
                    bumped = True
                continue
            current = self.entries.get(entry.name)
            if current is None:
                if len(self.entries) >= MAX_PEERS:
                    continue
            elif not entry.beats(current.uid, current.version):
                continue
            self._store(entry)
            news.append(entry)
        return MergeResult(tuple(news), bumped)

    def remove(self, name: PeerName) -> None:
        if name == self.local_name or name not in self.entries:
            return
        del self.entries[name]
        self._reindex(name, frozenset())
        self._est.pop(name, None)
        self._sym.pop(name, None)
        self._invalidate()

    def gc(self) -> list[PeerName]:
        """Remove every entry not reachable from us along announced connections."""
        unreachable = set(self.entries) - self.reachable()
        for name in sorted(unreachable):
            self.remove(name)
        return sorted(unreachable)

    def reachable(self) -> set[PeerName]:
        seen = {self.local_name}
        frontier = [self.local_name]
        while frontier:
            nxt: list[PeerName] = []
            for name in frontier:
                entry = self.entries.get(name)
                if entry is None:
                    continue
                for conn in entry.connections:
                    if conn.name not in seen and conn.name in self.entries:
                        seen.add(conn.name)
                        nxt.append(conn.name)
            frontier = nxt
        return seen

    # -- routes -------------------------------------------------------------------------------

    def unicast_routes(self) -> dict[PeerName, PeerName]:
        """Next hop for every peer reachable over symmetric established connections."""
        if self._unicast is None:
            me = self.local_name
            hops: dict[PeerName, PeerName] = {}
            visited = {me}
            level = [me]
            while level:
                nxt: list[PeerName] = []
                for node in level:
                    for child in sorted(self._sym.get(node, set()) - visited):
                        visited.add(child)
                        hops[child] = child if node == me else hops[node]
                        nxt.append(child)
                level = sorted(nxt)
            self._unicast = hops
        return self._unicast

    def next_hop(self, dest: PeerName) -> PeerName | None:
        return self.unicast_routes().get(dest)

    def broadcast_children(self, source: PeerName) -> tuple[PeerName, ...]:
        """Our children in the broadcast tree rooted at ``source`` (empty if unreachable)."""
        cached = self._children.get(source)
        if cached is None:
            cached = self._compute_children(source)
            self._children[source] = cached
        return cached

    def _compute_children(self, source: PeerName) -> tuple[PeerName, ...]:
        me = self.local_name
        if source != me and not self._sym.get(source):
            return ()
        visited = {source}
        level = [source]
        while level:
            nxt: list[PeerName] = []
            for node in level:
                new = self._sym.get(node, set()) - visited
                if node == me:
                    return tuple(sorted(new))
                if new:
                    visited |= new
                    nxt.extend(new)
            level = sorted(nxt)
        return ()

    # -- internals ----------------------------------------------------------------------------

    def _store(self, entry: PeerEntry) -> None:
        self.entries[entry.name] = entry
        est = frozenset(c.name for c in entry.connections if c.established)
        self._reindex(entry.name, est)
        self._invalidate()

    def _reindex(self, name: PeerName, est: frozenset[PeerName]) -> None:
        """Update ``_est``/``_sym`` for ``name`` now announcing ``est`` as established."""
        old = self._est.get(name, frozenset())
        self._est[name] = est
        mine = self._sym.setdefault(name, set())
        for other in old - est:
            if other in mine:
                mine.discard(other)
                self._sym[other].discard(name)
        for other in est - old:
            if other != name and name in self._est.get(other, ()):
                mine.add(other)
                self._sym.setdefault(other, set()).add(name)

    def _invalidate(self) -> None:
        self._unicast = None
        self._children.clear()
