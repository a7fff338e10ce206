"""The overlay task: one asyncio task that owns the link table and drives both transports.

Every ``interval`` (0.5 s, the heartbeat interval) one step:

1. takes in what arrived since the last step (``inbox``: fastdp heartbeats from the packet
   socket's reader, sleeve ``heard``/``pmtu`` events, reports from neighbours via the
   ``overlay`` channel) — producers only append there, so only this task touches the table;
2. reads the mesh in one query (neighbours and their addresses, routes, reachable peers, the
   MAC table), and in the same query hands the mesh this step's link verdicts
   (``set_overlay``: mode, mtu, reason, confirmed) and our reports to each neighbour;
3. sends a fastdp heartbeat to every neighbour (unless fastdp is off);
4. re-plans forwarding (``overlay/plan.py``) and, when it differs from what the kernel holds,
   applies the difference in a worker thread; the kernel is re-read every ``REREAD`` seconds
   so entries deleted behind our back come back;
5. sends the sleeve forwarder its config when it changed.

Local MACs are read from the bridge every ``MAC_SCAN`` seconds and published on the channel.
The task never dies of a kernel error: it logs once per distinct error and goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from weave_cli.errors import WeaveError
from weave_cli.overlay import plan
from weave_cli.overlay.channel import CHANNEL, OverlayChannel, encode_report, mac_bytes, mac_text
from weave_cli.overlay.links import LinkSettings, LinkState, LinkTable, PeerReport
from weave_cli.router.driver import MeshDriver
from weave_cli.router.mesh import MeshCore
from weave_cli.router.peer import PeerName

REREAD = 5.0
MAC_SCAN = 1.0
REPORT_EVERY = 1.0
log = logging.getLogger("weave.overlay")


class Sleeve(Protocol):
    """The forwarder process as this task uses it (``weave_cli.sleeve.client.SleeveProcess``)."""

    def send_config(self, cfg: Any) -> None: ...

    def events(self) -> AsyncIterator[Any]: ...

    @property
    def returncode(self) -> int | None: ...

    async def stop(self) -> None: ...


SleeveStarter = Callable[[], Awaitable[Sleeve]]
# neighbours -> address, routes, remote MAC -> owner, neighbour -> (link secret, plaintext ok),
# neighbour -> connection id
Snapshot = tuple[dict[PeerName, str], dict[PeerName, PeerName], dict[str, PeerName],
                 dict[PeerName, tuple[bytes, bool]], dict[PeerName, int]]
RESTART_MIN, RESTART_MAX = 0.5, 10.0


class OverlayService:
    def __init__(self, driver: MeshDriver, channel: OverlayChannel, settings: LinkSettings,
                 *, router_ns: str | None = None, mesh_port: int = 6783,
                 sleeve: Sleeve | None = None, start_sleeve: SleeveStarter | None = None,
                 heartbeats: Any = None, encrypted: bool = False,
                 no_plaintext_reason: str = "") -> None:
        self.driver, self.channel, self.settings = driver, channel, settings
        self.router_ns, self.mesh_port = router_ns, mesh_port
        self.sleeve, self.start_sleeve, self.heartbeats = sleeve, start_sleeve, heartbeats
        # With a password the sleeve seals every datagram with per-link keys, and fastdp (no
        # encryption of its own) is allowed only on links whose ends trust each other.
        self.encrypted, self.no_plaintext_reason = encrypted, no_plaintext_reason
        self.links = LinkTable(settings)
        self.inbox: deque[tuple[str, PeerName, Any]] = deque(maxlen=100_000)
        self.kernel: plan.Forwarding | None = None
        self._applied: plan.Forwarding | None = None  # the last plan carried out
        self._kernel_at = float("-inf")
        self._macs_at = float("-inf")
        self._reported: dict[PeerName, tuple[PeerReport, float]] = {}
        self._sleeve_cfg: dict[str, Any] | None = None
        self._last_error: str | None = None
        self._logged: dict[PeerName, str] = {}

    # -- producers (callbacks in the event loop; they only append) -----------------------------

    def fastdp_heard(self, peer: PeerName) -> None:
        self.inbox.append(("fastdp", peer, None))

    def report_received(self, peer: PeerName, report: PeerReport) -> None:
        self.inbox.append(("report", peer, report))

    async def _sleeve_events(self) -> None:
        """Read the forwarder's events; when it exits, start a new one (with backoff)."""
        delay = RESTART_MIN
        while True:
            if self.sleeve is None:
                assert self.start_sleeve is not None
                try:
                    self.sleeve = await self.start_sleeve()
                except Exception as err:  # noqa: BLE001 - keep trying, whatever went wrong
                    self._failed(f"sleeve forwarder: {err}")
                    await asyncio.sleep(delay)
                    delay = min(RESTART_MAX, delay * 2)
                    continue
                self._sleeve_cfg = None  # the new process has no config yet
                log.info("sleeve forwarder started again")
                delay = RESTART_MIN
                if self.encrypted:
                    await self._renew_link_keys()
            async for event in self.sleeve.events():
                self._sleeve_event(event)
            await self.sleeve.stop()  # reaps it
            log.warning("sleeve forwarder exited (code %s)", self.sleeve.returncode)
            if self.start_sleeve is None:
                return
            self.sleeve = None
            await asyncio.sleep(delay)

    async def _renew_link_keys(self) -> None:
        """A new forwarder starts its sequence numbers and replay windows afresh, so it must
        never get the keys of the last one (AES-GCM nonces would repeat, old datagrams would
        replay): every connection is closed, and the reconnects bring new link secrets."""
        reason = "the sleeve forwarder restarted: new link keys"
        log.warning("%s; reconnecting every peer", reason)
        await self.driver.query(lambda core, now: core.drop_connections(reason, now))

    def _sleeve_event(self, event: Any) -> None:
        from weave_cli.sleeve import control

        try:
            peer = PeerName.parse(event.peer)
        except (AttributeError, ValueError):
            return
        if isinstance(event, control.Heard):
            self.inbox.append(("sleeve", peer, None))
        elif isinstance(event, control.Pmtu):
            self.inbox.append(("pmtu", peer, event.mtu))

    # -- the task -------------------------------------------------------------------------------

    async def run(self) -> None:
        listener = None
        if self.sleeve is not None or self.start_sleeve is not None:
            listener = asyncio.ensure_future(self._sleeve_events())
        try:
            while True:
                try:
                    await self.step()
                except WeaveError as err:
                    self._failed(str(err))
                except Exception as err:  # noqa: BLE001 - a bug costs a step, not the router
                    log.debug("overlay step failed", exc_info=True)
                    self._failed(f"unexpected {type(err).__name__}: {err}")
                await asyncio.sleep(self.settings.heartbeat_interval)
        finally:
            if listener is not None:
                listener.cancel()

    def _failed(self, message: str) -> None:
        if message != self._last_error:
            log.warning("overlay: %s", message)
        self._last_error = message

    async def step(self) -> None:
        now = asyncio.get_running_loop().time()
        self._drain(now)
        if now - self._macs_at >= MAC_SCAN:
            self._macs_at = now
            await self._publish_local_macs()
        for peer, state in self.links.tick(now).items():
            if self._logged.get(peer) != state.mode:
                self._logged[peer] = state.mode
                log.info("link to %s: %s%s", peer, state.mode,
                         f" ({state.reason})" if state.reason else "")
        reports = self._reports_due(now)
        snapshot = await self.driver.query(
            lambda core, t: self._exchange(core, t, self.links.states(), reports))
        neighbours, routes, owner_of, crypto, conns = snapshot
        self.links.set_neighbours(neighbours, now, conns)
        if self.encrypted:
            self.links.deny_fastdp({p: self.no_plaintext_reason
                                    for p, (_s, plain) in crypto.items() if not plain})
        if self.heartbeats is not None:
            self.heartbeats.poll()
            self.heartbeats.send(neighbours)
            self.links.fastdp_errors(self.heartbeats.errors)
        link_modes = {p: (s.mode, neighbours[p]) for p, s in self.links.states().items()
                      if p in neighbours}
        wanted = plan.forwarding(link_modes, owner_of, set(routes))
        if self.sleeve is not None and self.sleeve.returncode is None:
            cfg = plan.sleeve_config(self.channel.local, link_modes, routes, owner_of,
                                     self.mesh_port)
            if self.encrypted:
                cfg["keys"] = {p: s for p, (s, _plain) in crypto.items() if s}
            if cfg != self._sleeve_cfg:
                self.sleeve.send_config(_as_config(cfg, self.channel.local, self.encrypted))
                self._sleeve_cfg = cfg
        await self._apply(wanted, now)  # after the sleeve: a kernel error must not hold it up

    def _drain(self, now: float) -> None:
        while self.inbox:
            kind, peer, value = self.inbox.popleft()
            if kind == "report":
                self.links.peer_report(peer, value, now)
            elif kind == "pmtu":
                self.links.sleeve_mtu(peer, value)
            else:
                self.links.heard(peer, kind, now)  # type: ignore[arg-type]

    def _reports_due(self, now: float) -> dict[PeerName, bytes]:
        due = {}
        for peer in self.links.neighbours():
            report = self.links.our_report(peer, now)
            last = self._reported.get(peer)
            if last is None or last[0] != report or now - last[1] >= REPORT_EVERY:
                self._reported[peer] = (report, now)
                due[peer] = encode_report(report)
        for gone in [p for p in self._reported if p not in self.links.neighbours()]:
            del self._reported[gone]
        return due

    def _exchange(self, core: MeshCore, now: float, states: dict[PeerName, LinkState],
                  reports: dict[PeerName, bytes]) -> Snapshot:
        """Runs inside the mesh task: verdicts and reports in, a snapshot out."""
        for peer, state in states.items():
            attrs: dict[str, object] = {}
            if state.mtu is not None:
                attrs["mtu"] = state.mtu
            if state.reason:
                attrs["fastdp"] = state.reason
            core.set_overlay(peer, state.mode, state.confirmed, attrs, now)
        for peer, payload in reports.items():
            core.unicast(CHANNEL, peer, payload)
        routes = dict(core.topology.unicast_routes())
        reachable = set(routes) | {core.config.name}
        self.channel.forget(set(core.topology.entries))
        # a MAC of our own is never pinned to an overlay port, whoever else claims it
        ours = self.channel.table.get(self.channel.local, (0, frozenset()))[1]
        owner_of = {mac_text(m): p for m, p in self.channel.owner_of().items()
                    if p in reachable and m not in ours}
        return (core.neighbours(), routes, owner_of, core.link_crypto(),
                core.neighbour_connections())

    async def _publish_local_macs(self) -> None:
        from weave_cli.net import fdb
        from weave_cli.net.netns import open_ipr

        def scan() -> list[str]:
            with open_ipr(self.router_ns) as ipr:
                return fdb.local_macs(ipr)

        macs = [mac_bytes(m) for m in await asyncio.to_thread(scan)]
        wall = time.time()

        def publish(core: MeshCore, _now: float) -> None:
            payload = self.channel.set_local(macs, wall)
            if payload is not None:
                core.broadcast(CHANNEL, payload)

        await self.driver.query(publish)

    async def _apply(self, wanted: plan.Forwarding, now: float) -> None:
        from weave_cli.net import fdb
        from weave_cli.net.netns import open_ipr

        reread = self.kernel is None or now - self._kernel_at >= REREAD
        # Nothing to do between re-reads when the kernel holds it, or when this very plan was
        # just applied and some of it could not be (a port not there yet): the re-read retries.
        if not reread and (self.kernel == wanted or self._applied == wanted):
            return

        def work() -> plan.Forwarding:
            with open_ipr(self.router_ns) as ipr:
                current = fdb.read(ipr) if reread or self.kernel is None else self.kernel
                changes = plan.diff(current, wanted)
                if changes:
                    fdb.apply(ipr, changes)
                    return fdb.read(ipr)
                return current

        self.kernel = await asyncio.to_thread(work)
        self._applied = wanted
        if reread:
            self._kernel_at = now


def _as_config(cfg: dict[str, Any], local: PeerName, encrypted: bool) -> Any:
    """The forwarder's config; with a password, the sleeve keys of every neighbour whose
    control connection gave a link secret (the others get no traffic at all)."""
    from weave_cli.crypto.kdf import sleeve_keys
    from weave_cli.sleeve.control import SleeveConfig, SleeveKeys
    from weave_cli.sleeve.seal import SecretKey

    keys = {}
    for peer, secret in cfg.get("keys", {}).items():
        tx, rx = sleeve_keys(secret, local, peer)
        keys[str(peer)] = SleeveKeys(SecretKey(tx), SecretKey(rx))
    return SleeveConfig(
        local=cfg["local"],
        neighbours={p: (a[0], a[1]) for p, a in cfg["neighbours"].items()},
        routes=dict(cfg["routes"]),
        sleeve_peers=frozenset(cfg["sleeve_peers"]),
        macs=dict(cfg["macs"]),
        encrypted=encrypted,
        keys=keys,
    )
