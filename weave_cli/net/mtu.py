"""The overlay MTU, computed from the underlay: what the route to the peers can carry. Kernel.

``underlay_mtu`` is the MTU of the device that routes to the first launch peer given as an IP
address, else of the device of the default route, else the largest MTU of the host's other up
devices that have an IPv4 address, else 1500. The overlay (container, bridge) MTU is that
minus ``FASTDP_OVERHEAD`` (50: outer IPv4, UDP, VXLAN, inner Ethernet), so fastdp never
fragments; the sleeve fragments by itself and works with any MTU. Operators override it with
``--mtu`` (or ``WEAVE_MTU``), as in the original.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from weave_cli.names import BRIDGE, FASTDP_OVERHEAD
from weave_cli.net import links
from weave_cli.net.links import IPRoute

FALLBACK = 1500
MIN_OVERLAY, MAX_OVERLAY = 576, 65535 - FASTDP_OVERHEAD


def _route_oif(ipr: IPRoute, dst: str) -> int | None:
    try:
        msgs: Any = ipr.route("get", dst=dst)
    except Exception:  # noqa: BLE001 - no route: try the next way
        return None
    return msgs[0].get_attr("RTA_OIF") if msgs else None


def underlay_mtu(ipr: IPRoute, peers: Iterable[str]) -> int:
    devs = {link.index: link for link in links.all_links(ipr)}
    for peer in peers:
        host = peer.rsplit(":", 1)[0].strip("[]") if peer.count(":") <= 1 else peer
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            continue
        oif = _route_oif(ipr, host)
        if oif in devs and devs[oif].name != "lo":
            return devs[oif].mtu
        break
    for msg in ipr.get_routes(family=socket.AF_INET, dst_len=0, table=254):
        oif = msg.get_attr("RTA_OIF")
        if oif in devs:
            return devs[oif].mtu
    candidates = [d.mtu for d in devs.values() if d.up and d.name not in ("lo", BRIDGE)
                  and not d.name.startswith(("weave", "veth")) and links.ipv4_addrs(ipr, d.index)]
    return max(candidates, default=FALLBACK)


def overlay_mtu(underlay: int) -> int:
    return max(MIN_OVERLAY, min(MAX_OVERLAY, underlay - FASTDP_OVERHEAD))
