"""The ``ipam`` gossip channel: checks what arrives, hands it to the IPAM task, never decides.

It runs inside the mesh's owner task, so it must not touch the allocator (the IPAM task owns
it). It only reads the *published* view the IPAM task replaces after every change (an
immutable ``PublishedState``) and forwards payloads through ``submit``.

Checks made here, before anything reaches the allocator, so that the mesh can drop the
connection that sent them (``ProtocolError``):

* the payload parses (lengths bounded, magic right, the ring's invariants hold);
* a ring for another range, or seeded by other peers, is refused with the original's words
  ("IP allocation was seeded by different peers ..."): two separately formed rings never mix.

Neighbour anti-entropy: ``digest()`` is ``b"D"`` + our full state; a neighbour answers a digest
that differs from its own state with ``b"R"`` + its state (a reply is never answered), so two
neighbours exchange at most two messages per gossip round and both end up merged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from weave_cli.errors import ProtocolError, WeaveError
from weave_cli.ipam.allocator_wire import Gossip, UnicastKind, decode_gossip, decode_unicast
from weave_cli.ipam.ring import Ring
from weave_cli.router.channels import GossipReply
from weave_cli.router.peer import PeerName

CHANNEL = "ipam"
DIGEST, REPLY = b"D", b"R"
log = logging.getLogger("weave.ipam")


@dataclass(frozen=True)
class PublishedState:
    """What the IPAM task last published: its ring (a private copy) and gossip payload."""

    ring: Ring
    full_state: bytes


Deliver = Callable[[str, PeerName, bytes], None]  # (kind "gossip"/"unicast", src, payload)


class IPAMChannel:
    def __init__(self, published: Callable[[], PublishedState], deliver: Deliver) -> None:
        self.published, self.deliver = published, deliver

    def _check_ring(self, data: bytes) -> Ring | None:
        if not data:
            return None
        try:
            ring = Ring.from_bytes(data)
            self.published().ring.validate_incoming(ring)
        except WeaveError as err:
            raise ProtocolError(err.message) from None
        return ring

    def _check_gossip(self, payload: bytes) -> tuple[Gossip, Ring | None]:
        try:
            g = decode_gossip(payload)
        except WeaveError as err:
            raise ProtocolError(f"bad IPAM gossip: {err.message}") from None
        return g, self._check_ring(g.ring)

    def _same_as_ours(self, g: Gossip, ring: Ring | None) -> bool:
        """Equal content: the ring bytes name the replica's holder, which always differs."""
        pub = self.published()
        if g.need_ring or g.paxos or (ring is None) != pub.ring.is_empty():
            return False
        return ring is None or ring.same_state(pub.ring)

    def on_broadcast(self, src: PeerName, payload: bytes) -> bytes | None:
        with _logged_refusal(src):
            self._check_gossip(payload)
        self.deliver("gossip", src, payload)
        return payload  # broadcast trees deliver each message once: always relay

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        with _logged_refusal(src):
            try:
                m = decode_unicast(payload)
            except WeaveError as err:
                raise ProtocolError(f"bad IPAM message: {err.message}") from None
            if m.kind == UnicastKind.RING_UPDATE:
                self._check_ring(m.ring)
        self.deliver("unicast", src, payload)

    def on_gossip(self, sender: PeerName, payload: bytes) -> GossipReply:
        kind, state = payload[:1], payload[1:]
        with _logged_refusal(sender):
            if kind not in (DIGEST, REPLY):
                raise ProtocolError("bad IPAM gossip kind")
            g, ring = self._check_gossip(state)
        if self._same_as_ours(g, ring):
            return [], None
        self.deliver("gossip", sender, state)
        if kind == DIGEST:
            return [REPLY + self.published().full_state], None
        return [], None

    def digest(self) -> bytes:
        return DIGEST + self.published().full_state


@contextmanager
def _logged_refusal(src: PeerName) -> Iterator[None]:
    """Log why a payload is refused: the mesh closes the connection without saying why, and
    the operator must learn that, e.g., two rings were seeded separately."""
    try:
        yield
    except ProtocolError as err:
        log.error("IPAM: refusing gossip from %s, dropping the connection: %s", src, err.message)
        raise
