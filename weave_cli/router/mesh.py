"""``MeshCore``: the whole control plane of one router as a pure state machine.

Inputs are the driver's calls (``connection_opened/_data/_closed``, ``dial_failed``, ``tick``,
``connect``/``forget``); outputs are the actions drained by ``actions()``: ``Dial``, ``Send``,
``Close`` and ``TargetsChanged``. Time is the ``now`` argument, randomness the injected
``rng``; ``next_deadline()`` says when to call ``tick``.

State, and its invariants:

* ``conns``: every socket the driver told us about and we have not closed, each with its own
  ``ConnectionProtocol``. ``active[peer]`` is the one established connection we use to a
  peer; a second one to the same peer is a duplicate and is closed at once, both ends
  choosing the same survivor: the connection dialled by the lower peer name, then the lower
  ``conn_uid`` (a newer incarnation of the remote always replaces the old one).
* our topology entry lists exactly ``active`` (``_local_dirty`` marks it stale inside a call;
  every public call ends in ``_finish``, which re-announces it if it changed).
* ``conn_limit`` counts live connections plus dials in flight (``dialling``); inbound
  connections beyond it are closed, and no dial is started at the limit.

Peer discovery, GC and route caches are refreshed ``SETTLE`` seconds after a topology change,
coalescing bursts (the original defers route recalculation by 100 ms the same way); the
relay of a change is never deferred. Gossip relaying lives in ``mesh_gossip.py`` (the base
class), status rendering in ``mesh_status.py``, the action and config types in
``mesh_types.py`` (re-exported here: the driver imports them from this module).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Sequence

from weave_cli.errors import ProtocolError
from weave_cli.router import mesh_crypto
from weave_cli.router.channels import ChannelHandler, TopologyChannel
from weave_cli.router.gossip import GossipMessage, encode_gossip
from weave_cli.router.mesh_gossip import TOPOLOGY, GossipPlane
from weave_cli.router.mesh_links import LinkPlane
from weave_cli.router.mesh_status import render_status
from weave_cli.router.mesh_types import (
    Action,
    Close,
    Conn,
    Dial,
    MeshConfig,
    RefusedPeers,
    Send,
    TargetsChanged,
)
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import (
    AUTH_FAILED,
    Closed,
    ConnectionProtocol,
    HandshakeDone,
    LocalIdentity,
    MessageReceived,
    MessageTag,
)
from weave_cli.router.targets import TargetSet, discovered
from weave_cli.router.topology import ConnSummary, PeerEntry, Topology

SETTLE = 0.1
SELF_CONNECTION = "cannot connect to ourself"
__all__ = ["Action", "Close", "Conn", "Dial", "MeshConfig", "MeshCore", "Send", "TargetsChanged",
           "TOPOLOGY"]


class MeshCore(GossipPlane, LinkPlane):
    def __init__(self, config: MeshConfig, *, now: float, rng: random.Random,
                 targets: Iterable[str] = (),
                 entropy: Callable[[int], bytes] = os.urandom) -> None:
        self.config, self.rng, self.entropy = config, rng, entropy  # entropy: X25519 keys
        self.trusted = mesh_crypto.parse_subnets(config.trusted_subnets)
        self.password_keys = config.password_keys
        self.identity = LocalIdentity(config.name, config.nickname, config.uid)
        self.topology = Topology(PeerEntry(config.name, config.nickname, config.uid, 1,
                                           rng.getrandbits(12)))
        budget = min(1 << 20, config.protocol.max_frame // 2)
        self.topo_channel = TopologyChannel(self.topology, budget)
        self.channels: dict[str, ChannelHandler] = {TOPOLOGY: self.topo_channel}
        self.targets = TargetSet(config.port, config.retry_initial, config.retry_max)
        self.targets.add_direct(targets, now)
        self.conns: dict[int, Conn] = {}
        self.active: dict[PeerName, int] = {}
        self.dialling: set[str] = set()
        self.termination_count = 0
        self.refused = RefusedPeers()  # inbound connections refused for their password
        self._actions: list[Action] = []
        self._touched: set[int] = set()
        self._local_dirty = False
        self._settle_pending = False  # a topology change happened; settle SETTLE s later
        self._settle_at: float | None = None
        self._next_gossip = now + config.gossip_interval

    # -- driver inputs ------------------------------------------------------------------------

    def connect(self, peers: Sequence[str], now: float, replace: bool = False) -> None:
        changed = False
        if replace:
            changed = self.targets.remove_direct(d for d in self.targets.direct() if d not in peers)
        changed = self.targets.add_direct(peers, now) or changed
        if changed:
            self._actions.append(TargetsChanged(self.targets.direct()))
        self._finish(now)

    def forget(self, peers: Sequence[str], now: float) -> None:
        if self.targets.remove_direct(peers):
            self._actions.append(TargetsChanged(self.targets.direct()))
        self._finish(now)

    def connection_opened(self, conn: int, remote_addr: tuple[str, int], outbound: bool,
                          now: float, target: str | None = None) -> None:
        if conn in self.conns:
            return
        if target is not None:
            self.dialling.discard(target)
        limit = self.config.conn_limit
        if not outbound and limit and self._live() >= limit:
            self._actions.append(Close(conn, f"Connection limit reached ({limit})"))
            return
        extra = mesh_crypto.local_features(self.trusted, remote_addr[0])
        identity = LocalIdentity(self.identity.name, self.identity.nickname, self.identity.uid,
                                 {**self.identity.features, **extra})
        proto = ConnectionProtocol(identity, outbound=outbound,
                                   conn_id=self.rng.getrandbits(63), now=now,
                                   settings=self.config.protocol,
                                   handshake=mesh_crypto.new_handshake(self.password_keys,
                                                                       self.entropy, outbound))
        self.conns[conn] = Conn(conn, proto, remote_addr, outbound, target,
                                data_path_confirmed=not self.config.confirm_data_path)
        self._touched.add(conn)
        self._finish(now)

    def connection_data(self, conn: int, data: bytes, now: float) -> None:
        c = self.conns.get(conn)
        if c is not None:
            c.proto.receive_data(data, now)
            self._touched.add(conn)
            self._pump(c, now)
        self._finish(now)

    def connection_closed(self, conn: int, reason: str, now: float) -> None:
        c = self.conns.get(conn)
        if c is not None:
            self._drop(c, reason, now, tell_driver=False)
        self._finish(now)

    def dial_failed(self, target: str, error: str, now: float) -> None:
        self.dialling.discard(target)
        self.targets.failed(target, error, now, self.rng)
        self._finish(now)

    def tick(self, now: float) -> None:
        for c in list(self.conns.values()):
            timer = c.proto.get_timer()
            if timer is not None and timer <= now and c.id in self.conns:
                c.proto.handle_timer(now)
                self._touched.add(c.id)
                self._pump(c, now)
        if now >= self._next_gossip:
            self._next_gossip = now + self.config.gossip_interval
            self._anti_entropy_round()
        if self._settle_at is not None and now >= self._settle_at:
            self._settle(now)
        self._finish(now)

    def next_deadline(self) -> float | None:
        times = [t for c in self.conns.values() if (t := c.proto.get_timer()) is not None]
        times.append(self._next_gossip)
        if self._settle_at is not None:
            times.append(self._settle_at)
        if not self._at_limit() and (due := self.targets.next_deadline()) is not None:
            times.append(due)
        return min(times)

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    # -- accessors ----------------------------------------------------------------------------

    def peer_names(self) -> list[PeerName]:
        return sorted(self.topology.entries)

    def connected_peers(self) -> list[PeerName]:
        return sorted(self.active)

    def status(self, now: float, wall: float | None = None) -> dict[str, object]:
        """The `weave report` Router section; ``wall`` is the wall clock matching ``now``
        (used only to print retry times; without it ``now`` is taken as the wall clock)."""
        return render_status(self, now, wall)

    # -- connection events --------------------------------------------------------------------

    def _pump(self, c: Conn, now: float) -> None:
        while (event := c.proto.next_event()) is not None:
            if isinstance(event, Closed):
                self._drop(c, event.reason, now, tell_driver=True)
                return
            if isinstance(event, HandshakeDone):
                self._on_handshake(c, event, now)
            elif isinstance(event, MessageReceived) and c.id in self.conns:
                try:
                    self._on_message(c, event)
                except ProtocolError as err:
                    c.proto.close(err.message)
                except Exception as err:  # a bug must cost one connection, never the router
                    c.proto.close(f"internal error handling a message: {type(err).__name__}")

    def _on_handshake(self, c: Conn, event: HandshakeDone, now: float) -> None:
        remote = c.remote = event.remote
        c.conn_uid, c.established_at = event.conn_uid, now
        c.data_plaintext = mesh_crypto.data_plaintext(self.trusted, c)
        other = self.conns.get(self.active.get(remote.name, -1))
        if other is not None and other.remote is not None:
            if other.remote.uid == remote.uid and self._rank(other) < self._rank(c):
                self._supersede(c, other, now)
                return
            self.active[remote.name] = c.id  # first, so dropping ``other`` loses no peer
            self._supersede(other, c, now)
        self.active[remote.name] = c.id
        self._local_dirty = True
        if c.target is not None:
            self.targets.connected(c.target, remote.name, now)
        for name, handler in self.channels.items():
            self._send(c, MessageTag.GOSSIP, encode_gossip(
                MessageTag.GOSSIP, GossipMessage(name, self.config.name, None, handler.digest())))

    def _rank(self, c: Conn) -> tuple[int, int]:
        assert c.remote is not None
        dialler = self.config.name if c.outbound else c.remote.name
        return (0 if dialler == min(self.config.name, c.remote.name) else 1, c.conn_uid)

    def _supersede(self, loser: Conn, winner: Conn, now: float) -> None:
        assert winner.remote is not None
        loser.superseded = True
        if loser.target is not None:
            self.targets.connected(loser.target, winner.remote.name, now)
        loser.proto.close(f"duplicate connection to {winner.remote.name}"
                          f"({winner.remote.nickname}): keeping one per pair of peers")
        self._pump(loser, now)

    def _drop(self, c: Conn, reason: str, now: float, *, tell_driver: bool) -> None:
        del self.conns[c.id]
        self._touched.discard(c.id)
        if tell_driver:
            if lingering := c.proto.data_to_send():  # only after an auth failure
                self._actions.append(Send(c.id, lingering))
            self._actions.append(Close(c.id, reason))
        if c.established_at is not None:
            self.termination_count += 1
        if c.remote is not None and self.active.get(c.remote.name) == c.id:
            del self.active[c.remote.name]
            self._local_dirty = True
            self.targets.peer_lost(c.remote.name, reason, now, self.rng)
        if not c.outbound and reason.startswith(AUTH_FAILED):
            self.refused.note(c.address[0], c.address_text, reason, now)
        target = self.targets.get(c.target)
        if target is not None and target.phase == "attempting" and not c.superseded:
            if reason == SELF_CONNECTION:
                self.targets.never(target.key, reason)
            else:
                self.targets.failed(target.key, reason, now, self.rng)

    # -- bookkeeping --------------------------------------------------------------------------

    def _finish(self, now: float) -> None:
        """End of every public call: re-announce our entry, schedule settling, dial, flush."""
        if self._local_dirty:
            self._local_dirty = False
            entry = self.topology.set_local(self._summaries())
            if entry is not None:
                self._announce([entry])
                self._settle_pending = True
        self._after_topology()
        if self._settle_pending and self._settle_at is None:
            self._settle_at = now + SETTLE
        self._settle_pending = False
        for target in self.targets.due(now):
            if self._at_limit():
                break
            if target.peer is not None and target.peer in self.active:
                self.targets.connected(target.key, target.peer, now)
                continue
            self.targets.attempting(target.key)
            self.dialling.add(target.key)
            self._actions.append(Dial(target.key, target.host, target.port))
        self._flush()

    def _settle(self, now: float) -> None:
        """Deferred work after topology changes: GC, then peer discovery."""
        self._settle_at = None
        self.topology.gc()
        if not self.config.discovery:
            return
        keys = discovered(self.topology.entries.values(), self.config.name, set(self.active),
                          self.config.port)
        self.targets.set_discovered(keys, now)

    def _summaries(self) -> list[ConnSummary]:
        out = []
        for name, cid in self.active.items():
            c = self.conns[cid]
            out.append(ConnSummary(name, c.address_text, c.outbound, c.data_path_confirmed))
        return out

    def _live(self) -> int:
        return len(self.conns) + len(self.dialling)

    def _at_limit(self) -> bool:
        return bool(self.config.conn_limit) and self._live() >= self.config.conn_limit
