"""The ``weave`` bridge: its desired state, the plan that gets there, and applying the plan.

Desired state (``BridgeSpec``): a Linux bridge named ``weave``, up, with the data path's MTU,
IPv6 address generation off (the bridge and its ports need no link-local addresses; without
them they send no router or neighbour solicitations into the network), STP off and no
forwarding delay (set at creation), and a fixed random locally administered MAC, so the
bridge's address does not follow its lowest port as containers come and go. Every port named
``vethwepl*`` belongs to the bridge and is up: after the bridge was deleted and re-created,
the surviving container veths are plugged back in, so attached containers keep working.
IPv6 router advertisements are ignored (``accept_ra`` 0) on the bridge and on every port,
set before the bridge comes up and before a port is plugged back in (see ``links.accept_ra_off``).

``plan_bridge``/``plan_ports`` are pure: (spec, what the kernel has) → steps. ``ensure`` reads
the kernel, plans and applies, and returns one line per repair (empty when all was well), which
is what the keeper logs. Running it again right after does nothing. A device called ``weave``
that is not a bridge is not ours to replace: that is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from weave_cli.names import BRIDGE, VETH_HOST_PREFIX
from weave_cli.net import links
from weave_cli.net.errors import DatapathError
from weave_cli.net.links import IPRoute, Link

DEFAULT_MTU = 1376  # the original's datapath MTU; fastdp will compute it from the underlay
MIN_MTU, MAX_MTU = 576, 65535
Step = Literal["create", "mtu", "addrgen", "up"]


@dataclass(frozen=True)
class BridgeSpec:
    name: str = BRIDGE
    mtu: int = DEFAULT_MTU

    def __post_init__(self) -> None:
        if not MIN_MTU <= self.mtu <= MAX_MTU:
            raise ValueError(f"MTU {self.mtu} outside {MIN_MTU}..{MAX_MTU}")


def plan_bridge(spec: BridgeSpec, seen: Link | None) -> list[Step]:
    """The steps that turn ``seen`` (None: absent) into the desired bridge."""
    if seen is None:
        return ["create", "addrgen", "up"]
    if seen.kind != "bridge":
        raise DatapathError(
            f"device {spec.name} exists but is a {seen.kind or 'device of unknown kind'}, "
            "not a bridge",
            f"weave did not create it; remove it (ip link del {spec.name}) and weave will",
        )
    steps: list[Step] = []
    if seen.mtu != spec.mtu:
        steps.append("mtu")
    if seen.addrgenmode not in (None, links.ADDR_GEN_MODE_NONE):
        steps.append("addrgen")
    if not seen.up:
        steps.append("up")
    return steps


def plan_ports(bridge: Link, devices: list[Link]) -> list[tuple[Link, list[str]]]:
    """Our container veths that are not plugged into the bridge or are down, and what to fix."""
    fixes = []
    for dev in devices:
        if not dev.name.startswith(VETH_HOST_PREFIX) or dev.kind != "veth":
            continue
        todo = []
        if dev.master != bridge.index:
            todo.append("master")
        if not dev.up:
            todo.append("up")
        if todo:
            fixes.append((dev, todo))
    return fixes


def random_mac() -> str:
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in raw)


def ensure(ipr: IPRoute, spec: BridgeSpec, router_ns: str | None = None) -> list[str]:
    """Make the bridge and its ports as desired; one line per repair made. ``router_ns`` is
    the namespace ``ipr`` is bound to (None: ours), for the ``accept_ra`` files."""
    seen = links.get_link(ipr, spec.name)
    repairs = []
    steps = plan_bridge(spec, seen)
    if "create" in steps:
        seen = links.create_bridge(ipr, spec.name, spec.mtu, random_mac())
        repairs.append(f"created bridge {spec.name} (mtu {spec.mtu})")
    assert seen is not None
    if "mtu" in steps:
        links.set_mtu(ipr, seen, spec.mtu)
        repairs.append(f"bridge {spec.name}: mtu {seen.mtu} -> {spec.mtu}")
    if "addrgen" in steps:
        links.no_ipv6_autoconf(ipr, seen)
    if links.accept_ra_off_early(router_ns, seen) and "create" not in steps:
        repairs += links.ra_repair([seen.name])
    if "up" in steps:
        links.set_up(ipr, seen)
        if "create" not in steps:
            repairs.append(f"bridge {spec.name} was down: brought up")
    for dev, todo in plan_ports(seen, links.all_links(ipr)):
        if links.accept_ra_off_early(router_ns, dev):
            repairs += links.ra_repair([dev.name])
        if "master" in todo:
            links.set_master(ipr, dev, seen)
        if "up" in todo:
            links.set_up(ipr, dev)
        repairs.append(f"port {dev.name}: {' and '.join(todo)} restored")
    return repairs


def require(ipr: IPRoute, name: str = BRIDGE) -> Link:
    """The bridge, or the original's error when it is missing."""
    from weave_cli.errors import NotRunningError

    link = links.get_link(ipr, name)
    if link is None or link.kind != "bridge":
        raise NotRunningError(
            f'bridge "{name}" not present; did you launch weave?',
            "the router creates it at start and keeps it",
        )
    return link
