"""Composition of the router's data plane: what runs next to the mesh when the router manages
the kernel (as root): the overlay task with its fastdp heartbeats and sleeve forwarder, the
Docker events watcher, and the overlay MTU. The daemon calls these; nothing here decides.
"""

from __future__ import annotations

import functools
import logging

from weave_cli.config import LaunchConfig
from weave_cli.errors import WeaveError
from weave_cli.ipam.service import IPAMService
from weave_cli.net.heartbeat import FastdpHeartbeats
from weave_cli.net.keeper import DatapathKeeper
from weave_cli.overlay.channel import CHANNEL as OVERLAY_CHANNEL
from weave_cli.overlay.channel import OverlayChannel
from weave_cli.overlay.links import LinkSettings
from weave_cli.overlay.service import OverlayService
from weave_cli.router.docker_events import DockerWatcher
from weave_cli.router.driver import MeshDriver
from weave_cli.router.mesh import MeshCore
from weave_cli.router.peer import PeerName
from weave_cli.sleeve.client import SleeveProcess

log = logging.getLogger("weave.router")


async def start_overlay(driver: MeshDriver, core: MeshCore, name: PeerName, cfg: LaunchConfig,
                        keeper: DatapathKeeper) -> OverlayService:
    """Start the sleeve forwarder, register the ``overlay`` channel, build the overlay task
    (not yet running). A forwarder that cannot start now (no /dev/net/tun, port taken) is
    logged; the task keeps trying to start one."""
    spec = keeper.overlay_spec
    assert spec is not None

    async def start_sleeve() -> SleeveProcess:
        sleeve = SleeveProcess(port=cfg.port, host=cfg.host)
        await sleeve.start()
        await keeper.ensure_once()  # plug the forwarder's TAP into the bridge
        return sleeve

    first: SleeveProcess | None = None
    try:
        first = await start_sleeve()
    except WeaveError as err:
        log.warning("sleeve unavailable: %s", err)
    no_plaintext = encrypted_sleeve_reason() if cfg.encrypted else ""
    settings = LinkSettings(fastdp_enabled=spec.fastdp, fastdp_port=spec.vxlan_port,
                            fastdp_mtu=spec.mtu,
                            fastdp_off_reason=no_plaintext or "fastdp disabled here (--no-fastdp)")
    service: list[OverlayService] = []  # the callbacks below run only once it is filled
    channel = OverlayChannel(name, lambda peer, rep: service[0].report_received(peer, rep))
    heartbeats = None
    if spec.fastdp:
        heartbeats = FastdpHeartbeats(name, spec.vxlan_port, spec.mtu,
                                      lambda peer: service[0].fastdp_heard(peer))
    overlay = OverlayService(driver, channel, settings, mesh_port=cfg.port, sleeve=first,
                             start_sleeve=start_sleeve, heartbeats=heartbeats,
                             encrypted=cfg.encrypted, no_plaintext_reason=no_plaintext)
    service.append(overlay)
    core.register_channel(OVERLAY_CHANNEL, channel)
    return overlay


async def stop_overlay(overlay: OverlayService) -> None:
    if overlay.heartbeats is not None:
        overlay.heartbeats.close()
    if overlay.sleeve is not None:
        await overlay.sleeve.stop()


def fastdp_wanted(cfg: LaunchConfig) -> bool:
    """fastdp carries no encryption of its own: with a password it is kept only for links
    whose ends trust each other (--trusted-subnets); without trusted subnets it is off."""
    if cfg.no_fastdp:
        return False
    return not cfg.encrypted or bool(cfg.trusted_subnets)


@functools.cache
def encrypted_sleeve_reason() -> str:
    """The status reason of an encrypted link that is not on fastdp."""
    from weave_cli.net.esp import esp_missing

    missing = esp_missing()
    return f"encrypted sleeve: {missing or 'encrypted fastdp (ESP) is not built yet'}"


def docker_watcher(ipam: IPAMService) -> DockerWatcher:
    """Frees the addresses of Docker containers that die (router/docker_events.py)."""

    async def held() -> list[str]:
        return list(await ipam.owned())

    return DockerWatcher(ipam.free, held)


def computed_mtu(peers: list[str]) -> int:
    """The overlay MTU from the underlay (net/mtu.py), in the router's namespace."""
    from weave_cli.net.mtu import overlay_mtu, underlay_mtu
    from weave_cli.net.netns import open_ipr

    with open_ipr(None) as ipr:
        return overlay_mtu(underlay_mtu(ipr, peers))
