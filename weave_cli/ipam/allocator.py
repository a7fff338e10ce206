"""The IPAM allocator of one peer, as a pure state machine (no I/O, no clock; rng injected).

Inputs are method calls (``allocate``, ``claim``, ``free``, ``on_gossip``, ``on_unicast``,
``tick``, ``peer_gone``, ``rmpeer``); outputs queue up and are drained with :meth:`actions`.
The owner must carry out the actions *in order* and must apply every ``Persist`` durably before
the next action and before answering a call whose result is an address: a ``Persist`` always
precedes the ``Reply`` (or immediate return) that hands out an address, and the ``Broadcast`` or
``Unicast`` that carries new ring or Paxos state.

State: the ring replica, our ``Space`` (kept equal to the ring's ranges for us: lost ranges are
dropped at once, so we never allocate from a range our current ring does not give us), the
addresses owned per ident, the Paxos elector (consensus mode, only while the ring is empty),
and the queue of requests waiting for consensus, a ring or space. Wire formats and the action
and result types are in :mod:`weave_cli.ipam.allocator_wire`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from weave_cli.ipam.address import CIDR, Range, format_ip
from weave_cli.ipam.allocator_ring import choose_donor, donate, report_free, sync_space
from weave_cli.ipam.allocator_wire import (
    Action,
    AllocatorError,
    Broadcast,
    Conflict,
    Consensus,
    Failed,
    Gossip,
    InitMode,
    Observer,
    Pending,
    Persist,
    Reply,
    Result,
    Seed,
    Unicast,
    UnicastKind,
    UnicastMsg,
    decode_gossip,
    decode_unicast,
    encode_gossip,
    encode_unicast,
)
from weave_cli.ipam.paxos import GossipState, NodeID, Paxos, PaxosState, quorum_for
from weave_cli.ipam.ring import Ring
from weave_cli.ipam.space import Space
from weave_cli.ipam.store import Change
from weave_cli.router.peer import PeerName, random_uid

PROPOSE_INTERVAL = 5.0  # re-propose after this long (times 1..2, random) without a decision
SPACE_RETRY = 5.0  # ask another donor if a space request got no answer for this long

__all__ = ["Allocator", "AllocatorError", "Consensus", "Observer", "Seed"]


@dataclass
class _Request:
    request_id: int
    ident: str
    subnet: CIDR | None = None  # an allocation in this subnet
    cidr: CIDR | None = None  # or a claim of this address


class Allocator:
    def __init__(
        self,
        me: PeerName,
        universe: CIDR,
        init: InitMode,
        rng: random.Random,
        *,
        default_subnet: CIDR | None = None,
        ring: bytes | None = None,
        paxos: bytes | None = None,
        owned: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.me, self.universe, self.init, self.rng = me, universe.network, init, rng
        self.default_subnet = default_subnet or self.universe
        if not self.universe.range().contains_range(self.default_subnet.range()):
            raise AllocatorError(f"default subnet {self.default_subnet} is outside {universe}")
        self.ring = Ring(self.universe.start, self.universe.range().end, me)
        self.space = Space()
        self.paxos: Paxos | None = None
        self.owned: dict[str, list[CIDR]] = {}
        self._by_addr: dict[int, str] = {}
        self._pending: list[_Request] = []
        self._actions: list[Action] = []
        self._next_id = 1
        self._now = 0.0
        self._propose_at = 0.0
        self._asked: tuple[PeerName, float] | None = None  # outstanding space request
        self._gone: set[PeerName] = set()
        self.closed = False  # after handoff: every request is refused
        self._priming = False  # someone waits for the ring itself (weave prime)
        self.conflicts: list[str] = []  # every conflict any merge reported
        self.own_conflicts: list[str] = []  # those where we were a claimant or lost a range
        if ring:
            stored = Ring.from_bytes(ring)
            if stored.owner != me or stored.range != self.ring.range:
                raise AllocatorError("the stored IPAM ring belongs to another peer or range")
            self.ring = stored
        for ident, cidrs in (owned or {}).items():
            for text in cidrs:
                self._record(ident, CIDR.parse(text))
        self._sync_space()
        if paxos and self.ring.is_empty() and isinstance(init, Consensus):
            state = PaxosState.from_bytes(paxos)
            self.paxos = Paxos(NodeID(me, random_uid(rng)), quorum_for(init.n), state=state)
            self._paxos_progress(False)
        if isinstance(init, Seed) and self.ring.is_empty():
            self.ring.claim_for_peers(init.peers)
            self._sync_space()
            self._persist(Change(ring=self.ring.to_bytes()))

    # -- outputs and status ------------------------------------------------------------------

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def pending(self) -> int:
        return len(self._pending)

    def pending_requests(self) -> tuple[list[tuple[str, str]], list[str]]:
        """Waiting (ident, CIDR) claims and waiting allocation idents, oldest first."""
        claims = [(r.ident, str(r.cidr)) for r in self._pending if r.cidr is not None]
        return claims, [r.ident for r in self._pending if r.subnet is not None]

    def lookup(self, ident: str, subnet: CIDR | None = None) -> list[str]:
        """The CIDRs ``ident`` holds (inside ``subnet`` when given)."""
        cidrs = self.owned.get(ident, [])
        return [str(c) for c in cidrs if subnet is None or c.addr in subnet.network.range()]

    def status_words(self, reachable: Iterable[PeerName] | None = None) -> str:
        if self.ring.is_empty():
            if self.paxos is not None:
                known = self.paxos.known_nodes()
                return f"awaiting consensus (quorum: {self.paxos.quorum}, known: {known})"
            return "priming" if self._pending or self._priming else "idle"
        if not any(r.subnet is not None for r in self._pending):
            return "ready"
        others = {e.peer for e in self.ring.entries} - {self.me}
        alive = set(others if reachable is None else reachable) - self._gone
        if others and not others & alive:
            return "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"
        return "waiting for IP(s) to become available"

    # -- requests ----------------------------------------------------------------------------

    def allocate(self, ident: str, subnet: CIDR | None = None, now: float = 0.0) -> Result:
        """An address for ``ident`` in ``subnet`` (default subnet if None)."""
        self._now = now
        if self.closed:
            return Failed("this peer is leaving (reset)")
        subnet = (subnet or self.default_subnet).network
        if not self.universe.range().contains_range(subnet.range()):
            return Failed(f"subnet {subnet} is outside the IP allocation range {self.universe}")
        req = _Request(self._next_id, ident, subnet=subnet)
        done = self._try_allocate(req)
        if done is not None:
            return done
        return self._enqueue(req)

    def claim(self, ident: str, cidr: CIDR | str, now: float = 0.0) -> Result:
        """Record that ``ident`` uses the address of ``cidr`` (an explicit IP, a pre-claim)."""
        self._now = now
        if self.closed:
            return Failed("this peer is leaving (reset)")
        c = CIDR.parse(cidr) if isinstance(cidr, str) else cidr
        req = _Request(self._next_id, ident, cidr=c)
        done = self._try_claim(req)
        if done is not None:
            return done
        return self._enqueue(req)

    def free(self, ident: str, addr: str | None = None) -> int:
        """Release every address of ``ident`` (or only ``addr``); cancels its waiting requests.
        Returns how many addresses were freed."""
        for req in [r for r in self._pending if r.ident == ident]:
            self._pending.remove(req)
            self._actions.append(Reply(req.request_id, Failed(f"request for {ident} cancelled")))
        cidrs = self.owned.get(ident, [])
        gone = [c for c in cidrs if addr is None or format_ip(c.addr) == addr.split("/")[0]]
        if not gone:
            return 0
        self._persist(Change(remove=[(ident, str(c)) for c in gone]))
        for c in gone:
            cidrs.remove(c)
            del self._by_addr[c.addr]
            if self.space.owns(c.addr) and not self.space.is_free(c.addr):
                self.space.release(c.addr)
        if not cidrs:
            del self.owned[ident]
        self._retry_pending()
        return len(gone)

    def rmpeer(self, name: PeerName) -> tuple[int, list[str]]:
        """Take over every range of the dead peer ``name``: (addresses freed, the conflicts seen
        so far over ranges we claimed or held, e.g. an rmpeer of the same peer on another host:
        the CLI exits non-zero when there are any)."""
        if name == self.me:
            raise AllocatorError("cannot rmpeer ourselves; use 'weave reset' on this host")
        count = 0 if self.ring.is_empty() else self.ring.transfer(name, self.me)
        if count:
            self._sync_space()
            self._persist(Change(ring=self.ring.to_bytes()))
            self._broadcast()
            self._retry_pending()
        return count, list(self.own_conflicts)

    # -- network -----------------------------------------------------------------------------

    def on_gossip(self, src: PeerName, payload: bytes) -> None:
        g = decode_gossip(payload)
        if g.ring:
            self._merge(Ring.from_bytes(g.ring))
        if not self.ring.is_empty():
            if (g.need_ring or g.paxos) and not g.ring:
                self._send(src, UnicastMsg(UnicastKind.RING_UPDATE, ring=self.ring.to_bytes()))
            return
        if not isinstance(self.init, Consensus) or not (g.paxos or g.need_ring):
            return
        created = self._ensure_paxos()
        assert self.paxos is not None
        changed = self.paxos.merge(GossipState.from_bytes(g.paxos)) if g.paxos else False
        changed = self.paxos.think() or changed
        self._paxos_progress(changed or created)

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        m = decode_unicast(payload)
        if m.kind == UnicastKind.RING_UPDATE:
            # Only a ring that gave us space answers our request: the donor's earlier answer to
            # a need-ring broadcast may arrive after the request was sent.
            before = self.space.num_owned()
            self._merge(Ring.from_bytes(m.ring))
            if self._asked is not None and self._asked[0] == src:
                if self.space.num_owned() > before:
                    self._asked = None
                    self._retry_pending()  # still short: ask again now, not at the next tick
        elif m.kind == UnicastKind.SPACE_DENIED:
            if self._asked is not None and self._asked[0] == src:
                self._asked = None
        elif m.want is not None and not self.ring.is_empty():
            self._donate(src, m.want)

    def tick(self, now: float) -> None:
        """Timer: re-propose, report free counts, re-ask for space, gossip our full state."""
        self._now = now
        if self.paxos is not None and now >= self._propose_at:
            self._propose_at = now + PROPOSE_INTERVAL * (1 + self.rng.random())
            self._paxos_progress(self.paxos.propose())
        if not self.ring.is_empty() and self._report_free():
            self._persist(Change(ring=self.ring.to_bytes()))
        if self._asked is not None and now - self._asked[1] >= SPACE_RETRY:
            self._asked = None
        self._retry_pending()
        if self.paxos is not None or self._pending or (self._priming and self.ring.is_empty()):
            self._broadcast()  # while something waits; otherwise neighbour gossip repairs

    def prime(self, now: float = 0.0) -> bool:
        """Start forming the ring if there is none (consensus, or asking electors as an
        observer); True when the ring exists. ``weave prime`` calls this until it is True."""
        self._now = now
        if not self.ring.is_empty():
            return True
        self._priming = True
        if isinstance(self.init, Consensus):
            if self._ensure_paxos():
                self._paxos_progress(True)
        else:
            self._broadcast()
        return False

    def full_state(self) -> bytes:
        """Our whole state as a gossip payload, for neighbour anti-entropy."""
        return self._gossip_payload()

    def cancel(self, request_id: int) -> bool:
        """Forget a waiting request (its client gave up); True if it was still waiting."""
        for req in self._pending:
            if req.request_id == request_id:
                self._pending.remove(req)
                return True
        return False

    def handoff(self, heirs: Iterable[PeerName]) -> tuple[int, PeerName | None]:
        """Leaving for good (``weave reset``): give every range of ours to the first of
        ``heirs`` (the caller orders them: live peers with ranges, other live peers, dead peers
        with ranges), refuse every later request. Returns (addresses moved, heir)."""
        self.closed = True
        for req in self._pending:
            self._actions.append(Reply(req.request_id, Failed("this peer is leaving (reset)")))
        self._pending.clear()
        heir = next((h for h in heirs if h != self.me), None)
        if heir is None or self.ring.is_empty() or not self.ring.owned_ranges(self.me):
            return 0, heir
        moved = self.ring.transfer(self.me, heir)
        self._sync_space()
        self._persist(Change(ring=self.ring.to_bytes()))
        self._broadcast()
        return moved, heir

    def peer_gone(self, name: PeerName) -> None:
        """``name`` left the mesh: stop waiting for it to donate."""
        self._gone.add(name)
        if self._asked is not None and self._asked[0] == name:
            self._asked = None
            self._retry_pending()

    def peer_back(self, name: PeerName) -> None:
        self._gone.discard(name)

    # -- internals: requests -----------------------------------------------------------------

    def _enqueue(self, req: _Request) -> Pending:
        self._next_id += 1
        self._pending.append(req)
        if self.ring.is_empty():
            if isinstance(self.init, Consensus):
                if self._ensure_paxos():
                    self._paxos_progress(True)
            else:
                self._broadcast()
        else:
            self._ask_for_space()
        return Pending(req.request_id)

    def _retry_pending(self) -> None:
        for req in list(self._pending):
            done = self._try_claim(req) if req.cidr is not None else self._try_allocate(req)
            if done is not None:
                self._pending.remove(req)
                assert not isinstance(done, Pending)
                self._actions.append(Reply(req.request_id, done))
        if self._pending and not self.ring.is_empty():
            self._ask_for_space()

    def _try_allocate(self, req: _Request) -> str | Failed | None:
        assert req.subnet is not None
        for c in self.owned.get(req.ident, []):
            if c.prefix == req.subnet.prefix and c.addr in req.subnet.range():
                return str(c)
        if self.ring.is_empty():
            return None
        addr = self.space.allocate(req.subnet.host_range())
        if addr is None:
            return None
        cidr = CIDR(addr, req.subnet.prefix)
        self._record(req.ident, cidr)
        self._persist(Change(add=[(req.ident, str(cidr))]))
        return str(cidr)

    def _try_claim(self, req: _Request) -> str | Failed | None:
        assert req.cidr is not None
        cidr, addr, ip = req.cidr, req.cidr.addr, format_ip(req.cidr.addr)
        holder = self._by_addr.get(addr)
        if holder == req.ident:
            return str(cidr)
        if holder is not None:
            return Failed(f"address {ip} already in use by {holder}")
        if addr in self.universe.range():
            if self.ring.is_empty():
                return None
            owner = self.ring.owner_of(addr)
            if owner != self.me:
                return Failed(f"address {ip} is owned by other peer {owner}")
            if not self.space.is_free(addr):
                return Failed(f"address {ip} is not free")
            self.space.claim(addr)
        self._record(req.ident, cidr)
        self._persist(Change(add=[(req.ident, str(cidr))]))
        return str(cidr)

    def _record(self, ident: str, cidr: CIDR) -> None:
        self.owned.setdefault(ident, []).append(cidr)
        self._by_addr[cidr.addr] = ident

    # -- internals: ring and space -----------------------------------------------------------

    def _sync_space(self) -> None:
        sync_space(self.ring, self.space, self.me, self._by_addr)

    def _merge(self, other: Ring) -> None:
        was_empty = self.ring.is_empty()
        result = self.ring.merge(other)
        if result.double_claims or result.lost:
            idents = sorted(
                {i for a, i in self._by_addr.items() for lost in result.lost if a in lost.range}
            )
            self.conflicts.extend(result.conflicts)
            self.own_conflicts.extend(
                [c.message for c in result.double_claims if self.me in c.claimants]
                + [lost.message for lost in result.lost]
            )
            self._actions.append(Conflict(tuple(result.conflicts), tuple(idents)))
        if not result.changed:
            return
        self._sync_space()
        ended = was_empty and not self.ring.is_empty()
        self._persist(Change(ring=self.ring.to_bytes(), clear_paxos=ended))
        if ended:
            self.paxos = None
        self._retry_pending()

    def _report_free(self) -> bool:
        return report_free(self.ring, self.space, self.me)

    def _ask_for_space(self) -> None:
        wants = [r.subnet for r in self._pending if r.subnet is not None]
        if self._asked is not None or not wants:
            return
        want = wants[0].host_range()
        donor = choose_donor(self.ring, self.me, self._gone, want, self.rng)
        if donor is not None:
            self._asked = (donor, self._now)
            self._send(donor, UnicastMsg(UnicastKind.SPACE_REQUEST, want=want))

    def _donate(self, src: PeerName, want: Range) -> None:
        gift = donate(self.ring, self.space, self.me, src, want)
        if gift is not None:
            self._persist(Change(ring=self.ring.to_bytes()))
        self._send(src, UnicastMsg(UnicastKind.RING_UPDATE, ring=self.ring.to_bytes()))
        if gift is None:
            self._send(src, UnicastMsg(UnicastKind.SPACE_DENIED))
        else:
            self._broadcast()  # everyone else learns of the new owner at once

    def _ensure_paxos(self) -> bool:
        if self.paxos is not None or not isinstance(self.init, Consensus):
            return False
        self.paxos = Paxos(NodeID(self.me, random_uid(self.rng)), quorum_for(self.init.n))
        self.paxos.think()
        self._propose_at = self._now + PROPOSE_INTERVAL * (1 + self.rng.random())
        return True

    def _paxos_progress(self, changed: bool) -> None:
        """Persist a changed Paxos state, then build the ring if decided, then gossip."""
        assert self.paxos is not None
        decided, value = self.paxos.consensus()
        if decided and self.ring.is_empty():
            self.ring.claim_for_peers(value)
            self._sync_space()
            self._persist(Change(ring=self.ring.to_bytes(), clear_paxos=True))
            self.paxos = None
            self._broadcast()
            self._retry_pending()
        elif changed:
            self._persist(Change(paxos=self.paxos.state().to_bytes()))
            self._broadcast()

    def _persist(self, change: Change) -> None:
        self._actions.append(Persist(change))

    def _gossip_payload(self) -> bytes:
        empty = self.ring.is_empty()
        paxos = self.paxos.gossip_state().to_bytes() if empty and self.paxos else b""
        ring = b"" if empty else self.ring.to_bytes()
        need = empty and (bool(self._pending) or self._priming)
        return encode_gossip(Gossip(need, ring, paxos))

    def _broadcast(self) -> None:
        self._actions.append(Broadcast(self._gossip_payload()))

    def _send(self, dst: PeerName, m: UnicastMsg) -> None:
        self._actions.append(Unicast(dst, encode_unicast(m)))
