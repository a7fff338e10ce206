"""The overlay ports of the bridge: the fastdp VXLAN devices and the sleeve's TAP. Kernel.

Desired state (``OverlaySpec``), kept by the keeper next to the bridge:

* ``weave-vxlan``: kind vxlan, VNI ``VXLAN_VNI``, UDP port ``port + 1`` (6784), no learning
  (the router writes every forwarding entry, see ``overlay/plan.py``), MTU of the bridge, a
  port of ``weave`` with bridge learning off and ``isolated`` on, up;
* ``weave-vxhb``: kind vxlan, VNI ``VXLAN_HB_VNI``, same UDP port, on no bridge, up: it only
  receives fastdp heartbeats (the router reads them with a packet socket), so heartbeats never
  reach a container;
* ``weave-sleeve`` (the forwarder's TAP, created by that process): when present, a port of
  ``weave`` with learning off and ``isolated`` on, MTU of the bridge, ``gso_max_size`` 60000,
  up.

With fastdp off (``--no-fastdp``) both VXLAN devices are removed if present, so no VXLAN device
carries container traffic. A device of ours with the wrong VNI or port is deleted and made
again; a device of that name that is not a vxlan is reported, never replaced. ``ensure``
returns one line per repair, like ``bridge.ensure``. All three ignore IPv6 router
advertisements (``accept_ra`` 0, set before they come up or join the bridge): ``weave-vxhb``
is on no bridge, so a frame decapsulated there reaches the host's own IP stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weave_cli.names import (
    FASTDP_PORT_OFFSET,
    MESH_PORT,
    SLEEVE_IFNAME,
    STATUS_PORT,
    VXLAN_HB_IFNAME,
    VXLAN_HB_VNI,
    VXLAN_IFNAME,
    VXLAN_VNI,
)
from weave_cli.net import links
from weave_cli.net.errors import DatapathError
from weave_cli.net.links import IPRoute, Link, kernel

SLEEVE_GSO_MAX = 60000


@dataclass(frozen=True)
class OverlaySpec:
    mtu: int
    fastdp: bool = True
    port: int = MESH_PORT
    # With a password: the subnets plaintext VXLAN may come from (--trusted-subnets), else ().
    vxlan_from: tuple[str, ...] = ()
    # For the firewall only, like vxlan_from: the TCP ports of the router's HTTP listeners
    # (``LaunchConfig.listener_ports``), guarded next to the mesh port.
    listeners: tuple[int, ...] = (STATUS_PORT,)

    @property
    def vxlan_port(self) -> int:
        return self.port + FASTDP_PORT_OFFSET


def _vxlan_params(ipr: IPRoute, link: Link) -> tuple[int | None, int | None]:
    with kernel(f"cannot read {link.name}"):
        msg: Any = ipr.get_links(link.index)[0]
    data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    return data.get_attr("IFLA_VXLAN_ID"), data.get_attr("IFLA_VXLAN_PORT")


def _port_flags(ipr: IPRoute, link: Link) -> tuple[int | None, int | None]:
    """(learning, isolated) of a bridge port."""
    with kernel(f"cannot read {link.name}"):
        msg: Any = ipr.get_links(link.index)[0]
    slave = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_SLAVE_DATA")
    if slave is None:
        return None, None
    return slave.get_attr("IFLA_BRPORT_LEARNING"), slave.get_attr("IFLA_BRPORT_ISOLATED")


def _ensure_vxlan(ipr: IPRoute, name: str, vni: int, spec: OverlaySpec,
                  router_ns: str | None) -> tuple[Link, list[str]]:
    seen = links.get_link(ipr, name)
    repairs = []
    if seen is not None and seen.kind != "vxlan":
        raise DatapathError(f"device {name} exists but is not a vxlan device",
                            f"weave did not create it; remove it (ip link del {name})")
    if seen is not None and _vxlan_params(ipr, seen) != (vni, spec.vxlan_port):
        links.delete_link(ipr, seen)
        repairs.append(f"{name}: wrong VNI or port, made again")
        seen = None
    made = seen is None
    if seen is None:
        with kernel(f"cannot create vxlan device {name}"):
            ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni,
                     vxlan_port=spec.vxlan_port, vxlan_learning=0, mtu=spec.mtu)
        seen = links.get_link(ipr, name)
        if seen is None:
            raise DatapathError(f"vxlan device {name} vanished right after it was created")
        links.no_ipv6_autoconf(ipr, seen)
        repairs.append(f"created {name} (vni {vni}, udp {spec.vxlan_port})")
    if links.accept_ra_off_early(router_ns, seen) and not made:
        repairs += links.ra_repair([name])
    if seen.mtu != spec.mtu:
        links.set_mtu(ipr, seen, spec.mtu)
    return seen, repairs


def _ensure_port(ipr: IPRoute, bridge: Link, dev: Link, mtu: int,
                 router_ns: str | None) -> list[str]:
    todo = []
    ra = links.ra_repair([dev.name]) if links.accept_ra_off_early(router_ns, dev) else []
    if dev.master != bridge.index:
        links.set_master(ipr, dev, bridge)
        todo.append("master")
    if dev.mtu != mtu:
        links.set_mtu(ipr, dev, mtu)
    if _port_flags(ipr, dev) != (0, 1):
        with kernel(f"cannot set the bridge port flags of {dev.name}"):
            ipr.brport("set", index=dev.index, learning=0, isolated=1)
        if "master" not in todo:
            todo.append("port flags")
    if not dev.up:
        links.set_up(ipr, dev)
        todo.append("up")
    return ra + ([f"port {dev.name}: {' and '.join(todo)} set"] if todo and todo != ["up"] else [])


def ensure(ipr: IPRoute, bridge: Link, spec: OverlaySpec,
           router_ns: str | None = None) -> list[str]:
    """The overlay devices as desired in the namespace ``ipr`` is bound to (``router_ns``)."""
    repairs: list[str] = []
    if spec.fastdp:
        vx, made = _ensure_vxlan(ipr, VXLAN_IFNAME, VXLAN_VNI, spec, router_ns)
        repairs += made + _ensure_port(ipr, bridge, vx, spec.mtu, router_ns)
        hb, made = _ensure_vxlan(ipr, VXLAN_HB_IFNAME, VXLAN_HB_VNI, spec, router_ns)
        repairs += made
        if not hb.up:
            links.set_up(ipr, hb)
    else:
        for name in (VXLAN_IFNAME, VXLAN_HB_IFNAME):
            seen = links.get_link(ipr, name)
            if seen is not None and seen.kind == "vxlan" and links.delete_link(ipr, seen):
                repairs.append(f"removed {name} (fastdp is off)")
    tap = links.get_link(ipr, SLEEVE_IFNAME)
    if tap is not None:
        repairs += _ensure_port(ipr, bridge, tap, spec.mtu, router_ns)
        _ensure_gso(ipr, tap)
    return repairs


def _ensure_gso(ipr: IPRoute, tap: Link) -> None:
    """TCP super-packets read from the TAP at most ``SLEEVE_GSO_MAX`` bytes: one batched UDP
    send of the forwarder (about 44 datagrams) instead of two (docs/sleeve.md)."""
    with kernel(f"cannot read {tap.name}"):
        msg: Any = ipr.get_links(tap.index)[0]
    if msg.get_attr("IFLA_GSO_MAX_SIZE") != SLEEVE_GSO_MAX:
        with kernel(f"cannot set gso_max_size of {tap.name}"):
            ipr.link("set", index=tap.index, gso_max_size=SLEEVE_GSO_MAX)


def owned(link: Link) -> bool:
    """The overlay devices ``remove_all`` deletes."""
    if link.name in (VXLAN_IFNAME, VXLAN_HB_IFNAME):
        return link.kind == "vxlan"
    return link.name == SLEEVE_IFNAME and link.kind == "tun"
