"""Forwarding entries in the kernel: read and write what ``overlay/plan.py`` decides. Kernel.

Two tables, both reached through netlink neighbour messages of family AF_BRIDGE:

* the VXLAN device's own FDB (``NTF_SELF`` on ``weave-vxlan``): ``mac -> remote address``,
  permanent; the all-zero MAC is the flood list;
* the bridge's FDB (``NTF_MASTER`` on the overlay ports ``weave-vxlan`` and ``weave-sleeve``):
  static ``mac -> port`` entries. A port's own address is a *permanent* master entry there;
  those are the kernel's, never read or touched as ours.

``local_macs`` is what this host announces: the bridge's own MAC (the host, after ``expose``)
and every MAC the bridge learned on a container port (``vethwepl*``), excluding the ports' own
addresses. A container appears once it has sent a frame (its first ARP does).
"""

from __future__ import annotations

import socket
from typing import Any

from weave_cli.names import BRIDGE, SLEEVE_IFNAME, VETH_HOST_PREFIX, VXLAN_IFNAME
from weave_cli.net import links
from weave_cli.net.links import IPRoute, kernel
from weave_cli.overlay.plan import FdbChanges, Forwarding, Port

NTF_SELF, NTF_MASTER = 0x02, 0x04
NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
PORT_NAMES: dict[Port, str] = {"vxlan": VXLAN_IFNAME, "sleeve": SLEEVE_IFNAME}


def _index(ipr: IPRoute) -> dict[str, links.Link]:
    return {link.name: link for link in links.all_links(ipr)}


def _dump(ipr: IPRoute, what: str, **match: Any) -> list[Any]:
    with kernel(f"cannot read the forwarding table ({what})"):
        return list(ipr.fdb("dump", **match))


def read(ipr: IPRoute) -> Forwarding:
    devs = _index(ipr)
    vxlan: dict[str, set[str]] = {}
    bridge: dict[str, Port] = {}
    vx = devs.get(VXLAN_IFNAME)
    by_index = {dev.index: port for port, name in PORT_NAMES.items() if (dev := devs.get(name))}
    if vx is not None:
        for msg in _dump(ipr, VXLAN_IFNAME, ifindex=vx.index):
            dst = msg.get_attr("NDA_DST")
            if msg["flags"] & NTF_SELF and dst:
                vxlan.setdefault(msg.get_attr("NDA_LLADDR"), set()).add(dst)
    br = devs.get(BRIDGE)
    if br is not None and by_index:
        for msg in _dump(ipr, BRIDGE, master=br.index):
            port = by_index.get(msg["ifindex"])
            if port is not None and not msg["state"] & NUD_PERMANENT:
                bridge[msg.get_attr("NDA_LLADDR")] = port
    return Forwarding({m: frozenset(a) for m, a in vxlan.items()}, bridge)


def apply(ipr: IPRoute, changes: FdbChanges) -> None:
    """Carry out a diff; entries that vanished meanwhile are not an error."""
    devs = _index(ipr)
    vx = devs.get(VXLAN_IFNAME)
    if vx is not None:
        for mac, addr in changes.vxlan_del:
            _quiet(ipr, "del", ifindex=vx.index, lladdr=mac, dst=addr, flags=NTF_SELF)
        for mac, addr in changes.vxlan_add:
            with kernel(f"cannot add forwarding entry {mac} -> {addr}"):
                ipr.fdb("append", ifindex=vx.index, lladdr=mac, dst=addr, flags=NTF_SELF,
                        state=NUD_PERMANENT)
    br = devs.get(BRIDGE)
    for mac, port in changes.bridge_del:
        if (dev := devs.get(PORT_NAMES[port])) is not None and br is not None:
            _quiet(ipr, "del", ifindex=dev.index, lladdr=mac, master=br.index, flags=NTF_MASTER)
    for mac, port in changes.bridge_set:
        dev = devs.get(PORT_NAMES[port])
        if dev is None or br is None:
            continue  # the port is not there (yet): the keeper makes it, the next pass retries
        with kernel(f"cannot pin {mac} to {dev.name}"):
            ipr.fdb("replace", ifindex=dev.index, lladdr=mac, master=br.index, flags=NTF_MASTER,
                    state=NUD_NOARP)


def _quiet(ipr: IPRoute, op: str, **kw: Any) -> None:
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    try:
        ipr.fdb(op, **kw)
    except NetlinkError:
        pass  # already gone


def local_macs(ipr: IPRoute) -> list[str]:
    devs = _index(ipr)
    br = devs.get(BRIDGE)
    if br is None:
        return []
    ports = {d.index for d in devs.values() if d.name.startswith(VETH_HOST_PREFIX)}
    own = {d.mac for d in devs.values()}
    found = {br.mac}
    for msg in _dump(ipr, BRIDGE, master=br.index):
        mac = msg.get_attr("NDA_LLADDR")
        if msg["ifindex"] in ports and not msg["state"] & NUD_PERMANENT and mac not in own:
            if msg.get("family", socket.AF_BRIDGE) == socket.AF_BRIDGE and _unicast(mac):
                found.add(mac)
    return sorted(found)


def _unicast(mac: str | None) -> bool:
    return bool(mac) and not int(str(mac)[:2], 16) & 1
