"""Paxos over gossip: how peers started with ``--ipalloc-init consensus[=N]`` agree on the set
of peers that seeds the IPAM ring. Pure: no I/O, clock or randomness.

Every elector is proposer, acceptor and learner at once. Nothing is addressed to anyone: each
node gossips its whole view, a map ``NodeID -> Claims`` (what each node has promised and
accepted), and merges the views it receives. Only node X ever changes the claims of X, and
both of its fields only grow, so merging is a per-node maximum and is commutative,
associative and idempotent: loss, duplication and reordering of gossip are harmless.

One step of :meth:`Paxos.think` runs the classic phases on the local view:

1. *prepare*: with nothing proposed anywhere and a quorum of peers heard from, propose
   ``(round 1, me)``. :meth:`Paxos.propose` (called by the owner on a timer while no consensus
   is known) proposes a round above every round seen, to get past a proposer that died.
2. *promise*: raise our promise to the highest proposal seen. Our claims entry *is* the
   promise message, and it carries what we accepted before.
3. *accept request*: if the proposal we promised is ours and a quorum has promised it, accept
   it with the value of the highest proposal any of those promisers accepted, or else with
   our own value: the names of every peer we have heard from (at least a quorum).
4. *accepted*: if someone accepted exactly the proposal we promised, accept it too.

A value is *chosen* when a quorum has accepted the same proposal; :meth:`Paxos.consensus`
reports the first one this node sees and never changes its answer afterwards. Counts are of
distinct peer names, so a peer never makes up a quorum with an old incarnation of itself.
Quorum is ``N // 2 + 1`` for ``consensus=N`` (:func:`quorum_for`).

Crash safety ("a restart in the middle must not produce two rings"). An acceptor must never
forget a promise or an acceptance, or two quorums could decide two values. So:

* ``think``, ``merge`` and ``propose`` return True when the state changed; the owner writes
  ``state().to_bytes()`` to disk (one transaction, fsync) *before* it sends ``gossip_state()``.
  What was never written was never sent, so a crash only loses claims nobody saw.
* A node restored from that state keeps the NodeID stored *in the state*, not this run's uid:
  the acceptor is the persisted state, and identity and memory travel together. Restoring the
  claims under a new NodeID would be unsafe, because the old NodeID would remain in everyone's
  view as a second acceptor of the same peer whose (frozen) claims count towards quorums.
* A node that lost its state must not act under its old NodeID. Without state, a node takes
  this run's uid, which is fresh, so it is a new acceptor and its old one looks crashed
  forever. That is still a risk (a new acceptor widens the acceptor set, so two quorums need
  not intersect), which is why the store refuses to start on an unreadable database rather
  than forget, and an operator who wipes the state of a peer mid-election must wait for the
  others to decide. Counting distinct names keeps a wiped peer from voting twice.
* The restored quorum is the larger of the stored and the configured one: raising a quorum
  keeps every pair of quorums intersecting, lowering it could not.

A NodeID whose claims arrive in gossip ahead of the claims this node holds for itself means
some other process is using our identity or our state went back in time (a restored backup):
:meth:`Paxos.merge` raises :class:`PaxosError` rather than act on it.

Observers take no part: they have no ``Paxos`` object at all.

Byte formats (integers unsigned big-endian; every count and length is checked against the
bytes left before anything is allocated, and the input must be consumed exactly)::

    node      name(6) uid(8)                      uid != 0
    proposal  round(8) node(14)                   round 0 = none, then the node is all zero
    claims    node promise accepted count(2) count*name(6)
              names strictly ascending; accepted <= promise; value empty iff no accepted
    gossip    "WPG" version(1)=1 count(2) count*claims          nodes strictly ascending
    state     "WPS" version(1)=1 quorum(2) me(14) decided(1) count(2) count*name(6) gossip
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from weave_cli.errors import WeaveError
from weave_cli.router.peer import PeerName

MAX_NODES: Final = 1024
MAX_ROUND: Final = 1 << 62  # so that proposing above any received round never overflows
MAX_BYTES: Final = 16 << 20
_GOSSIP_MAGIC: Final = b"WPG\x01"
_STATE_MAGIC: Final = b"WPS\x01"
_NODE = struct.Struct(">6sQ")
_PROPOSAL = struct.Struct(">Q6sQ")
_U16 = struct.Struct(">H")
_CLAIMS_MIN: Final = _NODE.size + 2 * _PROPOSAL.size + _U16.size


class PaxosError(WeaveError):
    """Malformed or contradictory Paxos state: hostile gossip, a corrupt or foreign state file."""

    exit_code = 5


def quorum_for(consensus: int) -> int:
    """The quorum for ``--ipalloc-init consensus=N``: a strict majority, ``N // 2 + 1``."""
    if consensus < 1:
        raise PaxosError(f"consensus size must be at least 1, not {consensus}")
    return consensus // 2 + 1


@dataclass(frozen=True, order=True)
class NodeID:
    """One incarnation of an elector; ordered by name, then uid."""

    name: PeerName
    uid: int


_NO_NODE: Final = NodeID(PeerName(0), 0)


@dataclass(frozen=True, order=True)
class ProposalID:
    """A proposal; round 0 means "none" and precedes every real proposal."""

    round: int
    proposer: NodeID

    @property
    def valid(self) -> bool:
        return self.round > 0


NO_PROPOSAL: Final = ProposalID(0, _NO_NODE)


@dataclass(frozen=True)
class Claims:
    """What one node says of itself: the lowest proposal it may still accept, and what it
    accepted last (``value`` is empty until it accepts)."""

    promise: ProposalID = NO_PROPOSAL
    accepted: ProposalID = NO_PROPOSAL
    value: frozenset[PeerName] = frozenset()

    def merged(self, other: Claims) -> Claims:
        """The later of two snapshots of one node: both fields only ever grow."""
        promise = max(self.promise, other.promise)
        if other.accepted > self.accepted:
            return Claims(promise, other.accepted, other.value)
        return Claims(promise, self.accepted, self.value)

    def covers(self, other: Claims) -> bool:
        """True if ``self`` is the same snapshot as ``other`` or a later one."""
        return self.promise >= other.promise and self.accepted >= other.accepted


@dataclass(frozen=True)
class GossipState:
    """A node's whole view, as gossiped. Treat ``claims`` as read-only."""

    claims: Mapping[NodeID, Claims] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        out = bytearray(_GOSSIP_MAGIC)
        out += _U16.pack(len(self.claims))
        for node in sorted(self.claims):
            _put_claims(out, node, self.claims[node])
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> GossipState:
        reader = _Reader(data)
        state = reader.gossip()
        reader.end()
        return state


@dataclass(frozen=True)
class PaxosState:
    """What a node persists: its identity, quorum, view, and the value it learned, if any."""

    me: NodeID
    quorum: int
    gossip: GossipState
    decided: frozenset[PeerName] | None = None

    def to_bytes(self) -> bytes:
        out = bytearray(_STATE_MAGIC)
        out += _U16.pack(self.quorum)
        _put_node(out, self.me)
        out += b"\x01" if self.decided is not None else b"\x00"
        _put_names(out, self.decided or frozenset())
        out += self.gossip.to_bytes()
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> PaxosState:
        reader = _Reader(data)
        reader.magic(_STATE_MAGIC)
        quorum = reader.u16()
        if not 1 <= quorum <= MAX_NODES:
            raise PaxosError(f"Paxos state has quorum {quorum}")
        me = reader.node()
        flag = reader.take(1)[0]
        names = reader.names()
        if flag > 1 or (flag == 0 and names) or (flag == 1 and not names):
            raise PaxosError("Paxos state has a malformed decided value")
        gossip = reader.gossip()
        reader.end()
        return cls(me, quorum, gossip, names if flag else None)


class Paxos:
    """One elector. See the module docstring for the algorithm and the persistence contract.

    ``state``, when given, is what this node persisted before a restart: the node continues
    as ``state.me`` (whose name must be ``me.name``), and ``me.uid`` is not used.
    """

    def __init__(self, me: NodeID, quorum: int, *, state: PaxosState | None = None) -> None:
        if not 1 <= quorum <= MAX_NODES:
            raise PaxosError(f"quorum must be between 1 and {MAX_NODES}, not {quorum}")
        if me.uid == 0:
            raise PaxosError("a Paxos node needs a non-zero uid")
        self._decided: frozenset[PeerName] | None = None
        self._knows: dict[NodeID, Claims] = {}
        if state is not None:
            if state.me.name != me.name:
                raise PaxosError(
                    f"the stored Paxos state belongs to peer {state.me.name}, not {me.name}",
                    "the IPAM data of another peer was copied here; remove it",
                )
            me, quorum = state.me, max(quorum, state.quorum)
            self._knows.update(state.gossip.claims)
            self._decided = state.decided
        self._me = me
        self._quorum = quorum
        self._knows.setdefault(me, Claims())

    @property
    def me(self) -> NodeID:
        return self._me

    @property
    def quorum(self) -> int:
        return self._quorum

    def known_nodes(self) -> int:
        """Distinct peers heard from (ourselves included): the K of the status words."""
        return len({node.name for node in self._knows})

    def state(self) -> PaxosState:
        """What to persist after any call that returned True, before gossiping."""
        return PaxosState(self._me, self._quorum, self.gossip_state(), self._decided)

    def gossip_state(self) -> GossipState:
        return GossipState(dict(self._knows))

    def merge(self, gossip: GossipState) -> bool:
        """Take in a peer's view; True if ours changed. All or nothing on error."""
        mine = self._knows[self._me]
        theirs = gossip.claims.get(self._me)
        if theirs is not None and not mine.covers(theirs):
            raise PaxosError(
                f"gossip shows node {self._me.name}/{self._me.uid:x} further on than it is",
                "another router runs with this peer's state, or the state was restored from "
                "an old copy",
            )
        values = {c.accepted: c.value for c in self._knows.values() if c.accepted.valid}
        updates: dict[NodeID, Claims] = {}
        for node, claims in gossip.claims.items():
            if node == self._me:
                continue
            if claims.accepted.valid:
                if values.setdefault(claims.accepted, claims.value) != claims.value:
                    raise PaxosError(f"two values for one Paxos proposal, seen at {node.name}")
            old = self._knows.get(node)
            new = claims if old is None else old.merged(claims)
            if new != old:
                updates[node] = new
        self._knows.update(updates)
        return bool(updates)

    def propose(self) -> bool:
        """Start a new round above every round seen; True if our state changed. Call on a timer
        while :meth:`consensus` is False, so that a dead proposer cannot stall the election."""
        if self._decided is not None:
            return False
        top = max(max(c.promise.round, c.accepted.round) for c in self._knows.values())
        if top >= MAX_ROUND:
            raise PaxosError("Paxos round numbers are exhausted")
        mine = self._knows[self._me]
        self._knows[self._me] = Claims(ProposalID(top + 1, self._me), mine.accepted, mine.value)
        self.think()
        return True

    def think(self) -> bool:
        """Run the phases once on the local view; True if our claims or decision changed."""
        before, decided_before = self._knows[self._me], self._decided
        if all(not c.promise.valid for c in self._knows.values()):
            if self.known_nodes() >= self._quorum and self._decided is None:
                self._knows[self._me] = Claims(ProposalID(1, self._me))
        mine = self._knows[self._me]
        promise = max(c.promise for c in self._knows.values())
        accepted, value = mine.accepted, mine.value
        if promise.proposer == self._me and accepted != promise:
            promisers = [(n, c) for n, c in self._knows.items() if c.promise == promise]
            if len({n.name for n, _ in promisers}) >= self._quorum:
                best = max((c for _, c in promisers), key=lambda c: c.accepted)
                accepted = promise
                if best.accepted.valid:
                    value = best.value
                else:
                    value = frozenset(n.name for n in self._knows)
        if accepted != promise:
            for claims in self._knows.values():
                if claims.accepted == promise:
                    accepted, value = promise, claims.value
                    break
        self._knows[self._me] = Claims(promise, accepted, value)
        if self._decided is None:
            self._decided = self._chosen()
        return self._knows[self._me] != before or self._decided != decided_before

    def consensus(self) -> tuple[bool, frozenset[PeerName]]:
        """(True, the agreed peer names) once this node knows a value was chosen; sticky."""
        if self._decided is None:
            return False, frozenset()
        return True, self._decided

    def _chosen(self) -> frozenset[PeerName] | None:
        voters: dict[ProposalID, set[PeerName]] = {}
        for node, claims in self._knows.items():
            if claims.accepted.valid:
                voters.setdefault(claims.accepted, set()).add(node.name)
        for proposal in sorted(voters, reverse=True):
            if len(voters[proposal]) >= self._quorum:
                return next(c.value for c in self._knows.values() if c.accepted == proposal)
        return None


def _put_node(out: bytearray, node: NodeID) -> None:
    out += _NODE.pack(node.name.to_bytes6(), node.uid)


def _put_proposal(out: bytearray, proposal: ProposalID) -> None:
    out += _PROPOSAL.pack(proposal.round, proposal.proposer.name.to_bytes6(), proposal.proposer.uid)


def _put_names(out: bytearray, names: Iterable[PeerName]) -> None:
    ordered = sorted(names)
    out += _U16.pack(len(ordered))
    for name in ordered:
        out += name.to_bytes6()


def _put_claims(out: bytearray, node: NodeID, claims: Claims) -> None:
    _put_node(out, node)
    _put_proposal(out, claims.promise)
    _put_proposal(out, claims.accepted)
    _put_names(out, claims.value)


class _Reader:
    """Strict, bounded decoding; every failure is a ``PaxosError`` with the reason."""

    def __init__(self, data: bytes) -> None:
        if len(data) > MAX_BYTES:
            raise PaxosError(f"Paxos data of {len(data)} bytes exceeds {MAX_BYTES}")
        self.data, self.pos = memoryview(bytes(data)), 0

    def take(self, size: int) -> bytes:
        if size > len(self.data) - self.pos:
            raise PaxosError("Paxos data is truncated")
        chunk = bytes(self.data[self.pos : self.pos + size])
        self.pos += size
        return chunk

    def end(self) -> None:
        if self.pos != len(self.data):
            raise PaxosError(f"{len(self.data) - self.pos} stray bytes after the Paxos data")

    def magic(self, magic: bytes) -> None:
        if self.take(len(magic)) != magic:
            raise PaxosError("not Paxos data of a known version")

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(_U16.size))[0]
        return value

    def node(self) -> NodeID:
        name, uid = _NODE.unpack(self.take(_NODE.size))
        if uid == 0:
            raise PaxosError("a Paxos node has uid 0")
        return NodeID(PeerName.from_bytes6(name), uid)

    def proposal(self) -> ProposalID:
        rnd, name, uid = _PROPOSAL.unpack(self.take(_PROPOSAL.size))
        if rnd == 0:
            if name != bytes(6) or uid != 0:
                raise PaxosError("an empty Paxos proposal names a proposer")
            return NO_PROPOSAL
        if rnd > MAX_ROUND or uid == 0:
            raise PaxosError(f"a Paxos proposal has round {rnd} and uid {uid}")
        return ProposalID(rnd, NodeID(PeerName.from_bytes6(name), uid))

    def names(self) -> frozenset[PeerName]:
        count = self.u16()
        if count > MAX_NODES or 6 * count > len(self.data) - self.pos:
            raise PaxosError(f"a Paxos value claims {count} names")
        names = [PeerName.from_bytes6(self.take(6)) for _ in range(count)]
        if any(a >= b for a, b in zip(names, names[1:], strict=False)):
            raise PaxosError("the names of a Paxos value are not strictly ascending")
        return frozenset(names)

    def gossip(self) -> GossipState:
        self.magic(_GOSSIP_MAGIC)
        count = self.u16()
        if count > MAX_NODES or count * _CLAIMS_MIN > len(self.data) - self.pos:
            raise PaxosError(f"Paxos gossip claims {count} nodes")
        claims: dict[NodeID, Claims] = {}
        last: NodeID | None = None
        for _ in range(count):
            node = self.node()
            if last is not None and node <= last:
                raise PaxosError("the nodes of Paxos gossip are not strictly ascending")
            last = node
            promise, accepted, value = self.proposal(), self.proposal(), self.names()
            if accepted > promise or accepted.valid != bool(value):
                raise PaxosError(f"contradictory Paxos claims for {node.name}")
            claims[node] = Claims(promise, accepted, value)
        return GossipState(claims)
