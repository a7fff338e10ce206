"""The forwarder's neighbours: addresses, heartbeats, ``heard`` events and PMTU discovery.
Pure: time is an argument, sending is returning datagrams, and the one kernel question (the
route MTU towards an address) is a function passed in.

A ``Link`` is one directly connected peer. ``addr`` is where its datagrams go: the address
from the config until a heartbeat from that peer arrives from somewhere, after which the
learned source address wins (a config that names the same peer again keeps it). ``cap`` is
the frame bytes one datagram carries on it (from ``pmtu.current``); the data path reads
``addr`` and ``cap`` on every send, so the table keeps them up to date in place.

A peer is "(re)appearing" on its first heartbeat, on one from a new address, or on one after
``SILENCE`` seconds without any: then a ``heard`` event goes out at once and PMTU discovery
restarts; otherwise ``heard`` is repeated at most once per ``HEARD_EVERY`` seconds.

Encryption (``sealed``, the config's ``encrypted``): ``tx``/``rx`` are the link's key states
(from the ``KeyBook``, kept across configs), and ``cap`` and the reported MTU leave room for
the seal. A link without keys then gets nothing at all, not even heartbeats or probes, and the
data path only calls ``heartbeat``/``probe``/``ack`` for datagrams that authenticated, so a
forged heartbeat cannot make a link look alive.
"""

from __future__ import annotations

from collections.abc import Callable

from weave_cli.sleeve import wire
from weave_cli.sleeve.control import Event, Heard, Pmtu
from weave_cli.sleeve.keybook import KeyBook, Pair
from weave_cli.sleeve.pmtu import PathMtu
from weave_cli.sleeve.seal import RxState, TxState

Addr = tuple[str, int]
SILENCE = 10.0
HEARD_EVERY = 1.0


def peer_text(peer: bytes) -> str:
    return ":".join(f"{b:02x}" for b in peer)


def peer_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


class Link:
    __slots__ = ("peer", "name", "addr", "learned", "cap", "gso", "pmtu", "last_heard",
                 "last_event", "probe_id", "sealed", "tx", "rx")

    def __init__(self, peer: bytes, addr: Addr, pmtu: PathMtu) -> None:
        self.peer = peer
        self.name = peer_text(peer)
        self.addr = addr
        self.learned = False
        self.pmtu = pmtu
        self.cap = wire.payload_capacity(pmtu.current)
        self.gso = pmtu.batch_ok  # datagrams to it may be batched with UDP_SEGMENT
        self.last_heard: float | None = None
        self.last_event = 0.0
        self.probe_id = 0
        self.sealed = False  # encryption on: only sealed datagrams, none without ``tx``
        self.tx: TxState | None = None
        self.rx: RxState | None = None

    def __repr__(self) -> str:
        return f"Link({self.name}, {self.addr}, cap={self.cap}, sealed={self.sealed})"


class Outgoing:
    """A control datagram to send; ``probe`` is the probed size (EMSGSIZE -> ``fail``);
    ``batch``: send it twice in one UDP_SEGMENT send (the batch check)."""

    __slots__ = ("data", "link", "probe", "batch")

    def __init__(self, data: bytes, link: Link, probe: int = 0, batch: bool = False) -> None:
        self.data = data
        self.link = link
        self.probe = probe
        self.batch = batch


class LinkTable:
    def __init__(self, route_mtu: Callable[[Addr], int],
                 make_pmtu: Callable[[], PathMtu] = PathMtu, book: KeyBook | None = None) -> None:
        self.route_mtu = route_mtu
        self.make_pmtu = make_pmtu
        self.book = book or KeyBook()
        self.sealed = False
        self.local = b""
        self.links: dict[bytes, Link] = {}
        self.events: list[Event] = []
        self.next_heartbeat = 0.0
        self.heartbeats_rx = 0
        self.probes_rx = 0

    def configure(self, local: bytes, neighbours: dict[bytes, Addr], sealed: bool = False,
                  keys: dict[bytes, Pair] | None = None, now: float = 0.0) -> None:
        """Adopt a new neighbour set; links that stay keep their learned address and MTU, and
        their key states while their keys are unchanged (``KeyBook``)."""
        self.local = local
        self.sealed = sealed
        keys = keys or {}
        self.book.configure({p: k for p, k in keys.items() if p in neighbours} if sealed else {},
                            now)
        old = self.links
        self.links = {}
        for peer, addr in neighbours.items():
            link = old.get(peer)
            if link is None:
                link = Link(peer, addr, self.make_pmtu())
            elif not link.learned:
                link.addr = addr
            if link.sealed != sealed:
                link.pmtu.reported = None  # report the MTU again, with the new overhead
            link.sealed = sealed
            link.tx = self.book.tx.get(peer)
            link.rx = self.book.rx.get(peer)
            link.cap = wire.payload_capacity(link.pmtu.current, sealed)
            self.links[peer] = link

    def tick(self, now: float) -> list[Outgoing]:
        """Heartbeats and probes due now; periodic PMTU re-runs start here."""
        out = []
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + wire.HEARTBEAT_INTERVAL
            if self.local:
                out = [Outgoing(wire.heartbeat(self.local, p), link)
                       for p, link in self.links.items() if link.tx or not link.sealed]
        for link in self.links.values():
            if link.sealed and link.tx is None:
                continue
            pm = link.pmtu
            if pm.due(now):
                pm.rerun_now(self.route_mtu(link.addr), now)
            due = pm.poll(now)
            if due is not None:
                size, batch = due
                link.probe_id = (link.probe_id + 1) & 0xFFFFFFFF
                data = wire.probe(self.local, link.peer, link.probe_id, size, batch,
                                  link.sealed)
                out.append(Outgoing(data, link, size, batch))
            self._update(link)
        return out

    def heartbeat(self, src: bytes, addr: Addr, now: float) -> None:
        link = self.links.get(src)
        if link is None:
            return
        self.heartbeats_rx += 1
        moved = link.addr != addr
        appeared = moved or link.last_heard is None or now - link.last_heard > SILENCE
        link.addr = addr
        link.learned = True
        link.last_heard = now
        if appeared:
            link.pmtu.restart(self.route_mtu(addr), now)
            self._update(link)
        if appeared or now - link.last_event >= HEARD_EVERY:
            link.last_event = now
            self.events.append(Heard(link.name, addr))

    def probe(self, src: bytes, addr: Addr, probe_id: int, size: int, batch: bool = False
              ) -> bytes | None:
        """The ack to send back to ``addr`` for a probe from a neighbour."""
        if src not in self.links or not self.local:
            return None
        self.probes_rx += 1
        return wire.probe_ack(self.local, src, probe_id, size, batch)

    def ack(self, src: bytes, size: int, now: float, batch: bool = False) -> None:
        link = self.links.get(src)
        if link is not None:
            link.pmtu.ack(size, now, batch)
            self._update(link)

    def send_failed(self, out: Outgoing, now: float) -> None:
        """Sending ``out`` failed with EMSGSIZE: the probed size cannot leave this host."""
        if out.probe and not out.batch:
            out.link.pmtu.fail(out.probe, now)
            self._update(out.link)

    def _update(self, link: Link) -> None:
        link.cap = wire.payload_capacity(link.pmtu.current, link.sealed)
        link.gso = link.pmtu.batch_ok
        mtu = link.pmtu.take_report()
        if mtu is not None:
            self.events.append(Pmtu(link.name, wire.ethernet_mtu(mtu, link.sealed)))

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def next_deadline(self) -> float:
        deadline = self.next_heartbeat
        for link in self.links.values():
            d = link.pmtu.next_deadline()
            if d is not None and d < deadline:
                deadline = d
        return deadline
