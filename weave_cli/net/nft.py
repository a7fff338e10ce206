"""The nftables table ``inet weave`` as data: render it for ``nft -f``, compare with a listing.

The whole table is a pure function of the bridge name, the host's exposed addresses (the IPv4
addresses on the bridge) and the router's ports (``LocalPorts``), so the CLI (expose, hide) and
the router's keeper compute the same table and never fight::

    table inet weave {
      chain input        filter hook input, priority 0, policy accept      (LocalPorts)
        iifname "weave" tcp dport { 6782, 6783, 6784 } counter drop    containers -> router
        iifname "weave" udp dport { 6783, 6784 } counter drop          (any host address)
        ip daddr 127.0.0.0/8 iifname != "lo" tcp dport { 6782, 6783, 6784 } counter drop
                                                     route_localnet: neighbours -> loopback
        iifname "weave-vxhb" counter drop            heartbeat device: no packet is for us
      chain forward      filter hook forward, priority 0, policy accept
        iifname "weave-vxhb" counter drop            ... nor to be routed on
        iifname "weave" accept                       traffic leaving the bridge
        oifname "weave" accept                       traffic entering the bridge
      chain postrouting  nat hook postrouting, priority 100 (srcnat), policy accept
        per exposed subnet C:
        ip saddr C ip daddr 224.0.0.0/4 return                     multicast stays as is
        ip saddr C oifname != "weave" masquerade                   containers to the outside
        ip daddr C ip saddr != C oifname "weave" iifname != "weave" masquerade
                                                                   the outside to containers
    }

Weave-to-weave traffic (bridged, or routed from the bridge back into it) is never masqueraded.
The input chain keeps the router's own ports away from containers (a packet from the bridge to
any address of the host: the bridge's, the underlay's, docker0's) and keeps the loopback
listeners (status 6782 or ``--status-addr``'s port, ``--http-addr``'s port, 6784) away from
neighbours when ``route_localnet=1`` lets the kernel accept packets for 127.0.0.0/8 from outside
(weave#3805, CVE-2020-8558's class); everything else a container sends to the host, and
everything the host sends to containers, is untouched (docs/security.md). ``weave-vxhb`` is
on no bridge: whatever frame anyone who reaches UDP 6784 wraps in the heartbeat VNI lands in
the host's IP stack there, so IP from it is dropped (the heartbeats themselves are read with a
packet socket, before netfilter).
The forward accepts cannot override a drop in *another* table (every base chain on a hook
sees the packet), which is why ``iptables_plan`` also places ACCEPT rules in Docker's chains.

Every rule carries a comment starting ``weave:`` that names it uniquely; ``canonical`` reduces
a table (desired, or listed with ``nft -j``) to its chain headers and rule comments, so a
deleted table, chain or rule is noticed. The input rules name their ports in their comments,
so a router with another ``--port``, ``--status-addr`` or ``--http-addr`` rewrites them, and
``ports_of`` reads them back: the CLI's expose and hide keep the ports the router chose.
``script`` replaces the table in one transaction (``add`` + ``delete`` + the new table in one
``nft -f``), so no packet ever sees half a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any

from weave_cli.names import (
    BRIDGE,
    CONTROL_PORT,
    FASTDP_PORT_OFFSET,
    FIREWALL_COMMENT_PREFIX,
    MESH_PORT,
    NFT_FAMILY,
    NFT_TABLE,
    STATUS_PORT,
    VXLAN_HB_IFNAME,
)

MULTICAST = "224.0.0.0/4"
LOOPBACK = "127.0.0.0/8"
_GUARD = f"{FIREWALL_COMMENT_PREFIX}guard "
Canonical = frozenset[tuple[str, ...]]  # chain headers and rule comments, see ``canonical``
_GUARD_RE = re.compile(r"\A(bridge|localnet) (tcp|udp) ([0-9]{1,5}(?:,[0-9]{1,5}){0,15})\Z")


@dataclass(frozen=True)
class LocalPorts:
    """The router's ports that the input chain guards; sorted, without duplicates.

    TCP: the mesh (``--port``, 6783), the router's HTTP listeners (the status listener,
    ``--status-addr``, 6782 by default, and ``--http-addr`` when given) and the original's
    control port 6784 whatever ``--http-addr`` says (guarding a port nothing listens on costs
    nothing); UDP: the sleeve (``--port``) and fastdp's VXLAN (port + 1). At most 16 of each:
    the comments that name them must fit nft's 128 bytes.
    """

    tcp: tuple[int, ...] = (STATUS_PORT, MESH_PORT, CONTROL_PORT)
    udp: tuple[int, ...] = (MESH_PORT, MESH_PORT + FASTDP_PORT_OFFSET)
    # With a password and --trusted-subnets, plaintext fastdp is allowed between trusted
    # subnets only: VXLAN (udp[1]) from any other source is dropped. Empty: no such rule.
    vxlan_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for ports in (self.tcp, self.udp):
            if not 1 <= len(ports) <= 16 or list(ports) != sorted(set(ports)) \
                    or not all(0 < p < 65536 for p in ports):
                raise ValueError(f"ports must be 1 to 16 distinct ports, sorted: {ports}")

    @classmethod
    def for_mesh_port(cls, port: int = MESH_PORT, vxlan_from: tuple[str, ...] = (),
                      listeners: tuple[int, ...] = (STATUS_PORT,)) -> LocalPorts:
        """The ports of a router launched with ``--port PORT`` whose HTTP listeners are on
        the TCP ports ``listeners`` (``LaunchConfig.listener_ports``)."""
        return cls(tuple(sorted({CONTROL_PORT, port, *listeners})),
                   (port, port + FASTDP_PORT_OFFSET), tuple(sorted(vxlan_from)))


def _ports_text(ports: tuple[int, ...]) -> tuple[str, str]:
    """(the nft set ``{ 1, 2 }``, the comment form ``1,2``)."""
    return "{ " + ", ".join(map(str, ports)) + " }", ",".join(map(str, ports))


def _input_rules(ports: LocalPorts, b: str) -> tuple[tuple[str, str], ...]:
    tcp, tcp_c = _ports_text(ports.tcp)
    udp, udp_c = _ports_text(ports.udp)
    return (
        (f"iifname {b} tcp dport {tcp} counter drop", f"{_GUARD}bridge tcp {tcp_c}"),
        (f"iifname {b} udp dport {udp} counter drop", f"{_GUARD}bridge udp {udp_c}"),
        (f'ip daddr {LOOPBACK} iifname != "lo" tcp dport {tcp} counter drop',
         f"{_GUARD}localnet tcp {tcp_c}"),
        (f'iifname "{VXLAN_HB_IFNAME}" counter drop', f"{_GUARD}heartbeat device in"),
    ) + _vxlan_rules(ports)


def _vxlan_rules(ports: LocalPorts) -> tuple[tuple[str, str], ...]:
    if not ports.vxlan_from:
        return ()
    nets = ", ".join(ports.vxlan_from)
    return ((f"udp dport {ports.udp[-1]} ip saddr != {{ {nets} }} counter drop",
             f"{_GUARD}vxlan-from {','.join(ports.vxlan_from)}"),)


def ports_of(have: Canonical | None) -> LocalPorts | None:
    """The ports a table made by ``desired`` guards (read from its comments), or None."""
    found: dict[str, tuple[int, ...]] = {}
    vxlan_from: tuple[str, ...] = ()
    for item in have or ():
        if item[0] != "rule" or not item[2].startswith(_GUARD):
            continue
        if item[2].startswith(f"{_GUARD}vxlan-from "):
            vxlan_from = tuple(item[2][len(f"{_GUARD}vxlan-from "):].split(","))
            continue
        match = _GUARD_RE.match(item[2][len(_GUARD):])
        if match and match.group(1) == "bridge":
            found[match.group(2)] = tuple(int(p) for p in match.group(3).split(","))
    try:
        return LocalPorts(found["tcp"], found["udp"], vxlan_from)
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class Chain:
    name: str
    type: str
    hook: str
    prio: int
    policy: str
    rules: tuple[tuple[str, str], ...]  # (statement, comment)


def desired(exposed: list[IPv4Interface], bridge: str = BRIDGE,
            ports: LocalPorts = LocalPorts()) -> list[Chain]:
    """The chains of the table for these exposed addresses (order of first appearance)."""
    b = f'"{bridge}"'
    c = FIREWALL_COMMENT_PREFIX
    forward = (
        (f'iifname "{VXLAN_HB_IFNAME}" counter drop', f"{_GUARD}heartbeat device forward"),
        (f"iifname {b} accept", f"{c}from-bridge"),
        (f"oifname {b} accept", f"{c}to-bridge"),
    )
    nat: list[tuple[str, str]] = []
    seen: list[str] = []
    for addr in exposed:
        net = str(addr.network)
        if net in seen:
            continue
        seen.append(net)
        nat += [
            (f"ip saddr {net} ip daddr {MULTICAST} return", f"{c}expose {net} multicast"),
            (f"ip saddr {net} oifname != {b} masquerade", f"{c}expose {net} out"),
            (
                f"ip daddr {net} ip saddr != {net} oifname {b} iifname != {b} masquerade",
                f"{c}expose {net} in",
            ),
        ]
    return [
        Chain("input", "filter", "input", 0, "accept", _input_rules(ports, b)),
        Chain("forward", "filter", "forward", 0, "accept", forward),
        Chain("postrouting", "nat", "postrouting", 100, "accept", tuple(nat)),
    ]


def script(chains: list[Chain]) -> str:
    """An ``nft -f`` script that atomically replaces (or creates) the table."""
    t = f"{NFT_FAMILY} {NFT_TABLE}"
    lines = [f"table {t} {{}}", f"delete table {t}", f"table {t} {{"]
    lines.append('  comment "owned by weave: rebuilt by the router, removed by weave reset"')
    for ch in chains:
        lines.append(f"  chain {ch.name} {{")
        lines.append(
            f"    type {ch.type} hook {ch.hook} priority {ch.prio}; policy {ch.policy};"
        )
        lines += [f'    {stmt} comment "{comment}"' for stmt, comment in ch.rules]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def delete_script() -> str:
    """Removes the table if it exists (``add`` first, so a missing table is no error)."""
    t = f"{NFT_FAMILY} {NFT_TABLE}"
    return f"table {t} {{}}\ndelete table {t}\n"



def canonical(chains: list[Chain]) -> Canonical:
    items: set[tuple[str, ...]] = set()
    for ch in chains:
        items.add(("chain", ch.name, ch.type, ch.hook, str(ch.prio), ch.policy))
        items |= {("rule", ch.name, comment) for _, comment in ch.rules}
    return frozenset(items)


def canonical_listing(doc: Any) -> Canonical:
    """The same reduction of ``nft -j list table inet weave`` output (a parsed JSON document)."""
    items: set[tuple[str, ...]] = set()
    for entry in doc.get("nftables", []) if isinstance(doc, dict) else []:
        if not isinstance(entry, dict):
            continue
        if "chain" in entry:
            ch = entry["chain"]
            items.add((
                "chain", str(ch.get("name")), str(ch.get("type")), str(ch.get("hook")),
                str(ch.get("prio")), str(ch.get("policy")),
            ))
        elif "rule" in entry:
            rule = entry["rule"]
            items.add(("rule", str(rule.get("chain")), str(rule.get("comment"))))
    return frozenset(items)
