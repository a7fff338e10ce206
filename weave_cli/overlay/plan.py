"""From link modes and the MAC table to forwarding state: kernel FDB and sleeve config. Pure.

The host's bridge ``weave`` has two overlay ports, the VXLAN device (fastdp) and the sleeve's
TAP; neither learns (learning off), both are isolated from each other. What crosses hosts is
therefore decided here, from three inputs: the link mode of every neighbour with its underlay
address, the MAC table (remote MAC -> owning peer) and the peers reachable through the mesh.

* A peer is reached by **fastdp** when it is a neighbour whose link is in fastdp mode; every
  other reachable peer (sleeve links, and peers with no direct link, whose traffic is relayed)
  is reached by the **sleeve**.
* VXLAN device FDB (``self`` entries): one all-zero entry per fastdp peer address (the kernel
  floods broadcast and unknown-unicast frames to each), and ``mac -> address`` for every MAC
  of a fastdp peer.
* Bridge FDB (``master`` static entries): every remote MAC pinned to the overlay port that
  reaches its owner, so the bridge never floods a known MAC and never needs to learn one.
  Unknown MACs are flooded by the bridge to both ports; each overlay sends them only to the
  peers it reaches, so every peer gets one copy.
* Sleeve config: the same split, plus next hops for relaying.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from weave_cli.overlay.links import Mode
from weave_cli.router.peer import PeerName

FLOOD_MAC = "00:00:00:00:00:00"
Port = str  # "vxlan" or "sleeve"


@dataclass(frozen=True)
class Forwarding:
    """The desired state; also used for what the kernel holds now (``read`` in net/fdb.py)."""

    vxlan: Mapping[str, frozenset[str]] = field(default_factory=dict)  # mac -> addresses
    bridge: Mapping[str, Port] = field(default_factory=dict)  # mac -> overlay port


@dataclass(frozen=True)
class FdbChanges:
    vxlan_add: list[tuple[str, str]]
    vxlan_del: list[tuple[str, str]]
    bridge_set: list[tuple[str, Port]]
    bridge_del: list[tuple[str, Port]]

    def __bool__(self) -> bool:
        return bool(self.vxlan_add or self.vxlan_del or self.bridge_set or self.bridge_del)


def fastdp_peers(links: Mapping[PeerName, tuple[Mode, str]]) -> dict[PeerName, str]:
    return {peer: addr for peer, (mode, addr) in links.items() if mode == "fastdp"}


def forwarding(links: Mapping[PeerName, tuple[Mode, str]], owner_of: Mapping[str, PeerName],
               reachable: set[PeerName]) -> Forwarding:
    fast = fastdp_peers(links)
    vxlan: dict[str, set[str]] = {FLOOD_MAC: set(fast.values())} if fast else {}
    bridge: dict[str, Port] = {}
    for mac, owner in owner_of.items():
        if owner in fast:
            vxlan.setdefault(mac, set()).add(fast[owner])
            bridge[mac] = "vxlan"
        elif owner in reachable:
            bridge[mac] = "sleeve"
    return Forwarding({m: frozenset(a) for m, a in vxlan.items()}, bridge)


def diff(current: Forwarding, wanted: Forwarding) -> FdbChanges:
    add, drop = [], []
    for mac, addrs in wanted.vxlan.items():
        add += [(mac, a) for a in sorted(addrs - current.vxlan.get(mac, frozenset()))]
    for mac, addrs in current.vxlan.items():
        drop += [(mac, a) for a in sorted(addrs - wanted.vxlan.get(mac, frozenset()))]
    bset = [(m, p) for m, p in sorted(wanted.bridge.items()) if current.bridge.get(m) != p]
    bdel = [(m, p) for m, p in sorted(current.bridge.items()) if m not in wanted.bridge]
    return FdbChanges(add, drop, bset, bdel)


def sleeve_config(local: PeerName, links: Mapping[PeerName, tuple[Mode, str]],
                  routes: Mapping[PeerName, PeerName], owner_of: Mapping[str, PeerName],
                  port: int) -> dict[str, object]:
    """The forwarder's ``config`` message (docs/sleeve.md): who it reaches, how, and MACs."""
    fast = fastdp_peers(links)
    return {
        "op": "config",
        "local": str(local),
        "neighbours": {str(p): [addr, port] for p, (_m, addr) in sorted(links.items())},
        "routes": {str(dst): str(hop) for dst, hop in sorted(routes.items()) if dst != local},
        "sleeve_peers": sorted(str(p) for p in routes if p != local and p not in fast),
        "macs": {mac: str(owner) for mac, owner in sorted(owner_of.items()) if owner in routes},
    }
