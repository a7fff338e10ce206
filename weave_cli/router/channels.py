"""Gossip channels: the handler contract, and the built-in ``topology`` channel. Pure.

A channel is a named stream of opaque payloads that ``MeshCore`` carries three ways (the
message kinds of ``gossip.py``):

* broadcast — ``on_broadcast(src, payload)`` merges; the returned bytes (usually just the
  news, possibly ``payload`` itself) are relayed to our children in ``src``'s broadcast tree;
  ``None`` stops the relay here. Returning only news is what keeps traffic linear in N: in a
  stable mesh each peer sees each change exactly once.
* unicast — ``on_unicast(src, payload)`` at the destination; intermediate peers just relay.
* neighbour gossip (anti-entropy) — on each new connection and every ``gossip_interval``
  to a few neighbours, the core sends ``digest()``; ``on_gossip(sender, payload)`` answers
  a digest or a reply and returns ``(replies to the sender, news to broadcast from us)``.

Handlers raise ``ProtocolError`` for malformed payloads; the core then closes that one
connection. Handlers must not keep references to the core: they decide, the core sends.
"""

from __future__ import annotations

from typing import Protocol

from weave_cli.errors import ProtocolError
from weave_cli.router import topology_wire as wire
from weave_cli.router.peer import PeerName
from weave_cli.router.topology import Digest, PeerEntry, Topology

GossipReply = tuple[list[bytes], bytes | None]


class ChannelHandler(Protocol):
    def on_broadcast(self, src: PeerName, payload: bytes) -> bytes | None: ...

    def on_unicast(self, src: PeerName, payload: bytes) -> None: ...

    def on_gossip(self, sender: PeerName, payload: bytes) -> GossipReply: ...

    def digest(self) -> bytes: ...


class TopologyChannel:
    """Topology gossip over a ``Topology``. Anti-entropy is three messages at most:
    A -> B DIGEST (what A has); B -> A ENTRIES (what A lacks) and REQUEST (what B lacks);
    A -> B ENTRIES. ``changed``/``bumped`` tell the core to recompute and re-announce; it
    clears them. ``budget`` keeps each payload well under the protocol's max frame."""

    def __init__(self, topology: Topology, budget: int = 1 << 20) -> None:
        self.topology = topology
        self.budget = budget
        self.changed = False
        self.bumped = False

    def digest(self) -> bytes:
        return wire.encode_digest(self.topology.digest())

    def announce(self, entries: list[PeerEntry]) -> list[bytes]:
        return wire.encode_entries(entries, self.budget)

    def on_broadcast(self, src: PeerName, payload: bytes) -> bytes | None:
        kind, content = wire.decode(payload)
        if kind != wire.ENTRIES:
            raise ProtocolError("topology broadcast that is not an entries message")
        received: list[PeerEntry] = content  # type: ignore[assignment]
        news = self._merge(received)
        if not news:
            return None
        if len(news) == len(received):
            return payload
        return b"".join(self.announce(news)[:1]) or None

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        return None  # the topology travels by broadcast and neighbour gossip only

    def on_gossip(self, sender: PeerName, payload: bytes) -> GossipReply:
        kind, content = wire.decode(payload)
        if kind == wire.DIGEST:
            theirs: Digest = content  # type: ignore[assignment]
            give, want = self.topology.diff(theirs)
            replies = self.announce(give)
            if want:
                replies.append(wire.encode_request(want))
            return replies, None
        if kind == wire.REQUEST:
            names: list[PeerName] = content  # type: ignore[assignment]
            found = [e for n in dict.fromkeys(names) if (e := self.topology.get(n)) is not None]
            return self.announce(found), None
        received: list[PeerEntry] = content  # type: ignore[assignment]
        news = self._merge(received)
        if news:
            gone = set(self.topology.gc())  # do not spread what is already unreachable
            news = [e for e in news if e.name not in gone]
        return [], (b"".join(self.announce(news)[:1]) or None) if news else None

    def _merge(self, received: list[PeerEntry]) -> list[PeerEntry]:
        result = self.topology.merge(received)
        self.changed = self.changed or bool(result.news) or result.local_bumped
        self.bumped = self.bumped or result.local_bumped
        return list(result.news)
