"""The composition root of ``weave-router run``: builds the mesh, the driver and the HTTP API.

Start-up order: read the launch configuration, load (or create) the peer name, choose the
initial targets (the launch peers, or the persisted ones with --resume or after a supervisor
restart), listen on the mesh port, then serve the API. The router is ready — GET /status
answers 200 — as soon as its listeners are up; readiness never waits for peers.

Exit codes: 0 after SIGTERM/SIGINT; ``EXIT_NO_RESTART`` when the configuration or the
environment makes a restart pointless (bad config, port in use, unusable state dir).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import socket
import time
from typing import Any

from aiohttp import web

from weave_cli import __version__
from weave_cli.config import LaunchConfig, parse_http_addr
from weave_cli.crypto.handshake import PasswordKeys
from weave_cli.crypto.kdf import password_key
from weave_cli.errors import RotationError, WeaveError
from weave_cli.ipam.channel import CHANNEL as IPAM_CHANNEL
from weave_cli.ipam.channel import IPAMChannel
from weave_cli.ipam.service import IPAMService
from weave_cli.ipam.setup import open_ipam
from weave_cli.ipam.store import IPAMStore
from weave_cli.names import EXPOSE_IDENT, Paths
from weave_cli.net.keeper import DatapathKeeper
from weave_cli.net.keeper import for_router as datapath_keeper
from weave_cli.net.overlay import OverlaySpec
from weave_cli.overlay.service import OverlayService
from weave_cli.router import rotation, state
from weave_cli.router.dataplane import (
    computed_mtu,
    docker_watcher,
    fastdp_wanted,
    start_overlay,
    stop_overlay,
)
from weave_cli.router.driver import MeshDriver
from weave_cli.router.http_api import Handlers, build_app
from weave_cli.router.http_ipam import IPAMRoutes
from weave_cli.router.mesh import MeshConfig, MeshCore
from weave_cli.router.mesh_port import DriverMeshPort
from weave_cli.router.peer import random_uid
from weave_cli.router.protocol import ProtocolSettings
from weave_cli.router.supervisor import EXIT_NO_RESTART

log = logging.getLogger("weave.router")


def host_nickname(hostname: str) -> str:
    """The host name made into a valid nickname (first label kept whole when it fits)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", hostname).lstrip("._-")[:64]
    return cleaned or "weave"


class Router:
    """Holds the running pieces; ``report()`` is the `weave report` document."""

    def __init__(self, paths: Paths, cfg: LaunchConfig, rng: random.Random,
                 keeper: DatapathKeeper | None = None) -> None:
        self.paths, self.cfg, self.rng = paths, cfg, rng
        self.keeper = keeper  # None: this router manages no data path (not root)
        self.overlay: OverlayService | None = None
        self.ready = False
        self.runners: list[web.AppRunner] = []
        self.driver: MeshDriver | None = None
        self.ipam: IPAMService | None = None
        self.ipam_store: IPAMStore | None = None
        self._reloading = asyncio.Lock()  # one password reload at a time

    async def report(self) -> dict[str, Any]:
        assert self.driver is not None
        router = await self.driver.query(lambda core, now: core.status(now, wall=time.time()))
        router["AcceptLimit"] = self.driver.accept_status()  # the mesh port's token bucket
        return {
            "Ready": self.ready,
            "Version": __version__,
            "VersionCheck": {"Enabled": False},
            "Router": router,
            "IPAM": await self.ipam.report() if self.ipam is not None else None,
        }

    async def connect(self, peers: list[str], replace: bool) -> None:
        assert self.driver is not None
        await self.driver.query(lambda core, now: core.connect(peers, now, replace=replace))

    async def forget(self, peers: list[str], _replace: bool) -> None:
        assert self.driver is not None
        await self.driver.query(lambda core, now: core.forget(peers, now))

    def initial_targets(self) -> list[str]:
        restarted = int(os.environ.get("WEAVE_RESTART_COUNT", "0") or 0) > 0
        if self.cfg.resume or restarted:
            return state.load_targets(self.paths)
        state.save_targets(self.paths, self.cfg.peers)
        return list(self.cfg.peers)

    async def password_keys(self) -> PasswordKeys | None:
        """The scrypt keys of the password files (one slow derivation per password, in a
        thread), or None without a password."""
        if not self.cfg.encrypted:
            return None
        return await asyncio.to_thread(rotation.load_keys, self.paths, password_key)

    async def reload_password(self) -> str:
        """A rotation step: the files again, then the mesh core's keys (which closes the
        connections keyed with a password no longer accepted)."""
        assert self.driver is not None
        async with self._reloading:  # files read and keys applied in one order
            keys = await self.password_keys()
            if keys is None:
                raise RotationError("this router runs without a password")
            closed = await self.driver.query(lambda core, now: core.set_password_keys(keys, now))
        what = rotation.describe(keys.rotation) or "one password (no rotation in progress)"
        log.info("password files reloaded: %s; %d connection(s) redialled", what, closed)
        return f"{what}; {closed} connection(s) redialled\n"

    async def start(self) -> None:
        pw_key = await self.password_keys()
        peer_existed = self.paths.peer_file.exists()
        name = state.load_or_create_peer_name(self.paths, self.cfg.name, self.rng)
        setup = open_ipam(self.paths, self.cfg, name, self.rng, peer_existed=peer_existed)
        nickname = self.cfg.nickname or host_nickname(socket.gethostname())
        loop = asyncio.get_running_loop()
        hb = self.cfg.heartbeat_interval
        mesh_config = MeshConfig(
            name=name,
            nickname=nickname,
            uid=random_uid(self.rng),
            port=self.cfg.port,
            conn_limit=self.cfg.conn_limit,
            discovery=self.cfg.discovery,
            gossip_interval=self.cfg.gossip_interval,
            protocol=ProtocolSettings(heartbeat_interval=hb, heartbeat_timeout=4 * hb),
            retry_max=self.cfg.retry_max,
            confirm_data_path=self.keeper is not None,
            password_keys=pw_key,
            trusted_subnets=tuple(self.cfg.trusted_subnets),
        )
        core = MeshCore(mesh_config, now=loop.time(), rng=self.rng, targets=self.initial_targets())
        self.driver = MeshDriver(
            core,
            host=self.cfg.host,
            port=self.cfg.port,
            on_targets=lambda targets: state.save_targets(self.paths, targets),
        )
        if setup is not None:
            self.ipam_store = setup.store
            self.ipam = IPAMService(
                setup.allocator,
                setup.store,
                DriverMeshPort(self.driver, IPAM_CHANNEL),
                clock=loop.time,
                timeout=self.cfg.ipalloc_timeout,
            )
            service = self.ipam
            core.register_channel(
                IPAM_CHANNEL, IPAMChannel(lambda: service.published, service.deliver)
            )
        if self.keeper is not None:
            self.overlay = await start_overlay(self.driver, core, name, self.cfg, self.keeper)
        await self.driver.start()
        log.info("Communication between peers is %s.",
                 "encrypted" if pw_key is not None else "unencrypted")
        log.info("Our name is %s(%s)", name, nickname)
        await self._serve_http()
        self.ready = True

    async def _serve_http(self) -> None:
        handlers = Handlers(self.report, self.connect, self.forget, IPAMRoutes(self.ipam),
                            self.reload_password if self.cfg.encrypted else None)
        full = web.AppRunner(build_app(handlers, full=True), access_log=None, shutdown_timeout=2)
        await full.setup()
        self.runners.append(full)
        sock_path = self.paths.socket
        state.remove_quietly(sock_path)
        old_umask = os.umask(0o177)
        try:
            await web.UnixSite(full, str(sock_path)).start()
        finally:
            os.umask(old_umask)
        os.chmod(sock_path, 0o600)
        if self.cfg.http_addr:
            host, port = parse_http_addr(self.cfg.http_addr)
            control = web.AppRunner(
                build_app(handlers, full=True, tcp=True), access_log=None, shutdown_timeout=2
            )
            await control.setup()
            self.runners.append(control)
            await web.TCPSite(control, host, port).start()
        if self.cfg.status_addr:
            host, port = parse_http_addr(self.cfg.status_addr)
            status = web.AppRunner(
                build_app(handlers, full=False, tcp=True), access_log=None, shutdown_timeout=2
            )
            await status.setup()
            self.runners.append(status)
            try:
                await web.TCPSite(status, host, port).start()
            except OSError as err:
                log.warning("status address %s unavailable: %s", self.cfg.status_addr, err.strerror)

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        if self.driver is not None:
            await self.driver.shutdown()
        if self.overlay is not None:
            await stop_overlay(self.overlay)
        if self.ipam_store is not None:
            self.ipam_store.close()


async def serve(paths: Paths, cfg: LaunchConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    keeper = datapath_keeper()  # None (logged) unless root with pyroute2
    if keeper is not None:
        mtu: int = cfg.mtu if cfg.mtu else await asyncio.to_thread(computed_mtu, cfg.peers)
        keeper.mtu = mtu
        fastdp = fastdp_wanted(cfg)
        trusted = tuple(n for n in cfg.trusted_subnets if ":" not in n) \
            if cfg.encrypted and fastdp else ()  # VXLAN runs over IPv4 only
        keeper.overlay_spec = OverlaySpec(mtu, fastdp=fastdp, port=cfg.port, vxlan_from=trusted,
                                          listeners=cfg.listener_ports)
        log.info("data path: mtu %d%s, %s", mtu, "" if cfg.mtu else " (computed)",
                 "fastdp preferred" if fastdp and not cfg.encrypted
                 else "fastdp only between trusted subnets, else the encrypted sleeve"
                 if fastdp else "the encrypted sleeve" if cfg.encrypted
                 else "sleeve only (--no-fastdp)")
        await keeper.ensure_once()  # so the bridge exists by the time the router is ready
    router = Router(paths, cfg, random.Random(int.from_bytes(os.urandom(16), "big")), keeper)
    try:
        await router.start()
    except OSError as err:
        log.error("cannot listen on port %d: %s", cfg.port, err.strerror or err)
        await router.stop()
        return EXIT_NO_RESTART
    assert router.driver is not None
    owners = {asyncio.ensure_future(router.driver.run())}
    if router.ipam is not None:
        owners.add(asyncio.ensure_future(router.ipam.run()))
        owners.add(asyncio.ensure_future(docker_watcher(router.ipam).run()))
    if keeper is not None:
        if router.ipam is not None:  # only now: the IPAM task answers queries from here on
            ipam = router.ipam

            async def exposed() -> list[str]:
                return (await ipam.owned()).get(EXPOSE_IDENT, [])

            keeper.exposed = exposed
        owners.add(asyncio.ensure_future(keeper.run(first_delay=keeper.interval)))
    overlay_task = None
    if router.overlay is not None:
        overlay_task = asyncio.ensure_future(router.overlay.run())
        owners.add(overlay_task)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait(owners | {stopper}, return_when=asyncio.FIRST_COMPLETED)
    failures = [t for t in owners if t.done() and t.exception() is not None]
    for task in failures:
        log.error("router task failed", exc_info=task.exception())
    if not failures:
        log.info("stopping")
    stopper.cancel()
    if overlay_task is not None:  # before its forwarder is stopped, so it does not restart it
        overlay_task.cancel()
    await router.stop()  # HTTP first, while the owner tasks can still answer queued queries
    for task in owners:
        task.cancel()
    return 1 if failures else 0


def _no_bad_request_tracebacks(record: logging.LogRecord) -> bool:
    """Drop aiohttp's traceback for a malformed request (it already answered 400): whoever can
    reach the status port must not be able to flood the log. Handler errors still log."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, HttpProcessingError)


def main(paths: Paths) -> int:
    supervised = os.environ.get("WEAVE_SUPERVISED") == "1"
    try:
        cfg = LaunchConfig.from_json(paths.launch_config.read_text())
    except (OSError, ValueError, WeaveError) as err:
        print(f"weave-router: cannot read {paths.launch_config}: {err}", flush=True)
        return EXIT_NO_RESTART
    logging.basicConfig(
        level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.server").addFilter(_no_bad_request_tracebacks)
    try:
        state.ensure_dirs(paths)
    except WeaveError as err:
        log.error("%s", err)
        return EXIT_NO_RESTART
    if not supervised and state.acquire_launcher_lock(paths) is None:
        log.error("another weave launcher runs with %s; not starting", paths.run_dir)
        return EXIT_NO_RESTART
    state.write_pid(paths.router_pidfile)
    if not supervised:
        state.write_pid(paths.launcher_pidfile)
    try:
        return asyncio.run(serve(paths, cfg))
    except WeaveError as err:
        log.error("%s", err)
        return EXIT_NO_RESTART
    finally:
        # Only we (holding the launcher lock, directly or through our supervisor) got here.
        state.remove_quietly(paths.socket)
        state.remove_if_mine(paths.router_pidfile)
        if not supervised:
            state.remove_if_mine(paths.launcher_pidfile)
