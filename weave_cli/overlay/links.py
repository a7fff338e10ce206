"""Which transport carries each direct link: fastdp, sleeve, or none yet. Pure.

Every directly connected peer (a *neighbour*) is probed on both transports at once: fastdp
heartbeats (VXLAN frames as large as the overlay MTU, so a heartbeat that arrives also proves
the MTU) and sleeve heartbeats (the forwarder's UDP). Hearing a peer proves only one direction,
so each side also tells the other, over the mesh, what it hears (``PeerReport``). A transport
is *up* on a link when we hear the peer on it and the peer's latest report says it hears us,
both within ``heartbeat_timeout``.

The mode of a link, re-decided by ``tick``:

* ``fastdp`` while fastdp is up (preferred: the kernel carries the traffic);
* ``sleeve`` while fastdp is down and the sleeve is up; a link that fell back goes back to
  fastdp once fastdp has been up again for ``fastdp_recover`` seconds (hysteresis, so a
  flapping underlay does not flap the forwarding tables);
* ``none`` while neither is up: the link is not *confirmed*, so the mesh shows it as pending
  and routes around it.

A link's first confirmation takes fastdp at once when it is up (no hysteresis), else the
sleeve. ``reason`` says in words why a link is not on fastdp, for ``weave status``.
State: one ``_Link`` per neighbour; forgetting a neighbour forgets its history. Time is the
``now`` argument throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from weave_cli.router.peer import PeerName

Mode = Literal["fastdp", "sleeve", "none"]
Transport = Literal["fastdp", "sleeve"]


@dataclass(frozen=True)
class LinkSettings:
    fastdp_enabled: bool = True  # False with --no-fastdp
    fastdp_port: int = 6784
    fastdp_mtu: int = 1450  # the overlay MTU fastdp heartbeats prove
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 3.0
    fastdp_recover: float = 2.0
    # Why fastdp is off when ``fastdp_enabled`` is False: --no-fastdp, or a password on a
    # kernel without ESP (then the traffic goes through the encrypted sleeve).
    fastdp_off_reason: str = "fastdp disabled here (--no-fastdp)"


@dataclass(frozen=True)
class PeerReport:
    """What a neighbour says about our heartbeats, and whether it runs fastdp at all."""

    fastdp_capable: bool
    hears_fastdp: bool
    hears_sleeve: bool


@dataclass(frozen=True)
class LinkState:
    mode: Mode
    mtu: int | None
    reason: str  # why not fastdp ("" on fastdp)

    @property
    def confirmed(self) -> bool:
        return self.mode != "none"


@dataclass
class _Link:
    peer: PeerName
    address: str
    since: float
    heard: dict[str, float] = field(default_factory=dict)
    report: PeerReport | None = None
    report_at: float = float("-inf")
    fastdp_up_since: float | None = None
    conn: int | None = None
    send_error: str | None = None
    sleeve_mtu: int | None = None
    state: LinkState = LinkState("none", None, "waiting for heartbeats")


class LinkTable:
    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self._links: dict[PeerName, _Link] = {}
        self._denied: dict[PeerName, str] = {}  # peers that must not use fastdp, and why

    # -- inputs ---------------------------------------------------------------------------------

    def set_neighbours(self, neighbours: Mapping[PeerName, str], now: float,
                       connections: Mapping[PeerName, int] | None = None) -> None:
        """The direct peers and their underlay addresses (and, optionally, an id of the
        connection to each); links of vanished peers are dropped, and a link whose address or
        connection changed starts afresh: nothing heard on the old one counts for the new."""
        for peer in [p for p in self._links if p not in neighbours]:
            del self._links[peer]
        for peer, address in neighbours.items():
            conn = connections.get(peer) if connections else None
            link = self._links.get(peer)
            if link is None or link.address != address or link.conn != conn:
                self._links[peer] = _Link(peer, address, now, conn=conn)

    def fastdp_errors(self, errors: Mapping[PeerName, str]) -> None:
        """Why sending fastdp heartbeats to a peer failed (e.g. Message too long), if it did."""
        for peer, link in self._links.items():
            link.send_error = errors.get(peer)

    def deny_fastdp(self, denied: Mapping[PeerName, str]) -> None:
        """The neighbours whose traffic must not go over fastdp (plaintext), with the reason;
        replaces the previous set."""
        self._denied = dict(denied)

    def heard(self, peer: PeerName, transport: Transport, now: float) -> None:
        if (link := self._links.get(peer)) is not None:
            link.heard[transport] = now

    def sleeve_mtu(self, peer: PeerName, mtu: int) -> None:
        if (link := self._links.get(peer)) is not None:
            link.sleeve_mtu = mtu

    def peer_report(self, peer: PeerName, report: PeerReport, now: float) -> None:
        if (link := self._links.get(peer)) is not None:
            link.report, link.report_at = report, now

    # -- outputs --------------------------------------------------------------------------------

    def our_report(self, peer: PeerName, now: float) -> PeerReport:
        link = self._links.get(peer)
        return PeerReport(
            fastdp_capable=self.settings.fastdp_enabled and peer not in self._denied,
            hears_fastdp=link is not None and self._hears(link, "fastdp", now),
            hears_sleeve=link is not None and self._hears(link, "sleeve", now),
        )

    def neighbours(self) -> dict[PeerName, str]:
        return {peer: link.address for peer, link in self._links.items()}

    def states(self) -> dict[PeerName, LinkState]:
        return {peer: link.state for peer, link in self._links.items()}

    def tick(self, now: float) -> dict[PeerName, LinkState]:
        """Re-decide every link; returns the links whose state changed."""
        changed = {}
        for peer, link in self._links.items():
            state = self._decide(link, now)
            if state != link.state:
                link.state = state
                changed[peer] = state
        return changed

    # -- the rule -------------------------------------------------------------------------------

    def _hears(self, link: _Link, transport: Transport, now: float) -> bool:
        at = link.heard.get(transport)
        return at is not None and now - at <= self.settings.heartbeat_timeout

    def _report(self, link: _Link, now: float) -> PeerReport | None:
        fresh = now - link.report_at <= self.settings.heartbeat_timeout
        return link.report if fresh else None

    def _fastdp_down_reason(self, link: _Link, now: float) -> str:
        cfg = self.settings
        if not cfg.fastdp_enabled:
            return cfg.fastdp_off_reason
        if link.peer in self._denied:
            return self._denied[link.peer]
        report = self._report(link, now)
        if link.report is not None and not link.report.fastdp_capable:
            return "fastdp disabled on the peer"
        if not self._hears(link, "fastdp", now):
            if link.send_error:
                return f"cannot send fastdp heartbeats: {link.send_error}"
            if now - link.since <= cfg.heartbeat_timeout:
                return "waiting for fastdp heartbeats"
            return (f"no fastdp heartbeat from the peer (UDP {cfg.fastdp_port} blocked, or the "
                    f"underlay does not carry mtu {cfg.fastdp_mtu}?)")
        if report is None:
            return "no report from the peer over the mesh"
        if not report.hears_fastdp:
            return f"the peer hears no fastdp heartbeat from us (UDP {cfg.fastdp_port} blocked?)"
        return ""

    def _decide(self, link: _Link, now: float) -> LinkState:
        cfg = self.settings
        why_not = self._fastdp_down_reason(link, now)
        if why_not:
            link.fastdp_up_since = None
        elif link.fastdp_up_since is None:
            link.fastdp_up_since = now
        current = link.state.mode
        if not why_not:
            assert link.fastdp_up_since is not None
            waited = now - link.fastdp_up_since
            if current != "sleeve" or waited >= cfg.fastdp_recover:
                return LinkState("fastdp", cfg.fastdp_mtu, "")
            why_not = f"fastdp recovering: back in {cfg.fastdp_recover - waited:.1f}s"
        report = self._report(link, now)
        if self._hears(link, "sleeve", now) and report is not None and report.hears_sleeve:
            return LinkState("sleeve", link.sleeve_mtu, why_not)
        return LinkState("none", None, why_not)
