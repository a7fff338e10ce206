"""The gossip half of ``MeshCore``: channels, relaying, anti-entropy. Pure.

``GossipPlane`` holds the state gossip needs (topology, channels, the active connection per
peer) and the rules for moving messages; ``MeshCore`` (mesh.py) adds connections, targets and
the driver contract on top. Relay rules:

* our own broadcasts go to every connected peer; a broadcast from ``src`` is relayed, only if
  its channel handler says it was news, to our children in ``src``'s broadcast tree, never
  back to the connection it came from;
* a unicast is delivered when ``dst`` is us, else forwarded to the next hop (dropped when
  there is no route, or when the next hop is where it came from);
* neighbour gossip (digests, replies) is answered on the same connection and never relayed;
  news it brings is broadcast from us.

Everything sent goes through ``_send``, which marks the connection for the next flush and
drops (never raises) what cannot be sent: the connection is gone, not yet established, or
the message exceeds its frame limit (anti-entropy sends smaller pieces later).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from weave_cli.errors import ProtocolError
from weave_cli.router.channels import ChannelHandler, TopologyChannel
from weave_cli.router.gossip import CHANNEL_RE, GossipMessage, decode_gossip, encode_gossip
from weave_cli.router.mesh_types import Action, Conn, MeshConfig, Send
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import MessageReceived, MessageTag
from weave_cli.router.topology import PeerEntry, Topology

TOPOLOGY = "topology"


class GossipPlane:
    config: MeshConfig
    rng: random.Random
    topology: Topology
    topo_channel: TopologyChannel
    channels: dict[str, ChannelHandler]
    conns: dict[int, Conn]
    active: dict[PeerName, int]
    _actions: list[Action]
    _touched: set[int]
    _settle_pending: bool

    # -- channels -----------------------------------------------------------------------------

    def register_channel(self, name: str, handler: ChannelHandler) -> None:
        if not CHANNEL_RE.match(name) or name in self.channels:
            raise ValueError(f"gossip channel {name!r} is invalid or already registered")
        self.channels[name] = handler

    def broadcast(self, channel: str, payload: bytes) -> None:
        self._relay(channel, self.config.name, payload, None)
        self._flush()

    def unicast(self, channel: str, dst: PeerName, payload: bytes) -> None:
        """To ``dst`` directly when connected to it (also before the link's data path is
        confirmed: the overlay's own reports need that), else along the unicast route."""
        hop = dst if dst in self.active else self.topology.next_hop(dst)
        if hop is not None:
            msg = GossipMessage(channel, self.config.name, dst, payload)
            self._send(self.active[hop], MessageTag.GOSSIP_UNICAST,
                       encode_gossip(MessageTag.GOSSIP_UNICAST, msg))
        self._flush()

    # -- gossip -------------------------------------------------------------------------------

    def _on_message(self, c: Conn, event: MessageReceived) -> None:
        assert c.remote is not None
        if event.tag == MessageTag.OVERLAY_CONTROL:
            return
        msg = decode_gossip(event.tag, event.body)
        handler = self.channels.get(msg.channel)
        if handler is None:
            return
        if event.tag == MessageTag.GOSSIP:
            replies, news = handler.on_gossip(c.remote.name, msg.payload)
            for reply in replies:
                self._send(c, MessageTag.GOSSIP, encode_gossip(MessageTag.GOSSIP, GossipMessage(
                    msg.channel, self.config.name, None, reply)))
            if news is not None:
                self._relay(msg.channel, self.config.name, news, None)
        elif event.tag == MessageTag.GOSSIP_BROADCAST:
            if msg.src != self.config.name:
                relay = handler.on_broadcast(msg.src, msg.payload)
                if relay is not None:
                    body = event.body if relay is msg.payload else None
                    self._relay(msg.channel, msg.src, relay, c.id, body)
        elif msg.dst == self.config.name:
            handler.on_unicast(msg.src, msg.payload)
        elif msg.dst is not None and (hop := self.topology.next_hop(msg.dst)) is not None:
            if self.active[hop] != c.id:
                self._send(self.conns[self.active[hop]], MessageTag.GOSSIP_UNICAST, event.body)
        self._after_topology()

    def _relay(self, channel: str, src: PeerName, payload: bytes, exclude: int | None,
               body: bytes | None = None) -> None:
        """Send a broadcast to our children in ``src``'s tree (``body`` if already encoded).
        Our own broadcasts go to every connected peer: a neighbour whose entry has not yet
        reached us is not in our tree, but must not miss what we send meanwhile."""
        if src == self.config.name:
            children: Iterable[PeerName] = sorted(self.active)
        else:
            children = self.topology.broadcast_children(src)
        for child in children:
            conn = self.active.get(child)
            if conn is not None and conn != exclude:
                if body is None:
                    body = encode_gossip(MessageTag.GOSSIP_BROADCAST,
                                         GossipMessage(channel, src, None, payload))
                self._send(self.conns[conn], MessageTag.GOSSIP_BROADCAST, body)

    def _send(self, c: Conn | int, tag: MessageTag, body: bytes) -> None:
        conn = c if isinstance(c, Conn) else self.conns.get(c)
        if conn is None or conn.proto.state != "established":
            return
        try:
            conn.proto.send_message(tag, body)
        except ProtocolError:
            return  # too big for this peer: anti-entropy sends it in smaller pieces
        self._touched.add(conn.id)

    def _anti_entropy_round(self) -> None:
        peers = sorted(self.active)
        if not peers:
            return
        k = min(len(peers), max(1, 2 * math.ceil(math.log2(len(peers) + 1))))
        for peer in self.rng.sample(peers, k):
            for name, handler in self.channels.items():
                self._send(self.active[peer], MessageTag.GOSSIP, encode_gossip(
                    MessageTag.GOSSIP,
                    GossipMessage(name, self.config.name, None, handler.digest())))

    def _after_topology(self) -> None:
        if self.topo_channel.bumped:
            self.topo_channel.bumped = False
            self._announce([self.topology.local])
        if self.topo_channel.changed:
            self.topo_channel.changed = False
            self._settle_pending = True

    def _announce(self, entries: list[PeerEntry]) -> None:
        for payload in self.topo_channel.announce(entries):
            self._relay(TOPOLOGY, self.config.name, payload, None)

    def _flush(self) -> None:
        for cid in sorted(self._touched):
            c = self.conns.get(cid)
            if c is not None and (data := c.proto.data_to_send()):
                self._actions.append(Send(cid, data))
        self._touched.clear()
