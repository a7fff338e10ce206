"""The nftables table ``inet weave`` as data: render it for ``nft -f``, compare with a listing.

The whole table is a pure function of the bridge name and the host's exposed addresses (the
IPv4 addresses on the bridge), so the CLI (expose, hide) and the router's keeper compute the
same table and never fight::

    table inet weave {
      chain forward      filter hook forward, priority 0, policy accept
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
The forward accepts cannot override a drop in *another* table (every base chain on a hook
sees the packet), which is why ``iptables_plan`` also places ACCEPT rules in Docker's chains.

Every rule carries a comment starting ``weave:`` that names it uniquely; ``canonical`` reduces
a table (desired, or listed with ``nft -j``) to its chain headers and rule comments, so a
deleted table, chain or rule is noticed. ``script`` replaces the table in one transaction
(``add`` + ``delete`` + the new table in one ``nft -f``), so no packet ever sees half a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any

from weave_cli.names import BRIDGE, FIREWALL_COMMENT_PREFIX, NFT_FAMILY, NFT_TABLE

MULTICAST = "224.0.0.0/4"


@dataclass(frozen=True)
class Chain:
    name: str
    type: str
    hook: str
    prio: int
    policy: str
    rules: tuple[tuple[str, str], ...]  # (statement, comment)


def desired(exposed: list[IPv4Interface], bridge: str = BRIDGE) -> list[Chain]:
    """The chains of the table for these exposed addresses (order of first appearance)."""
    b = f'"{bridge}"'
    c = FIREWALL_COMMENT_PREFIX
    forward = (
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


Canonical = frozenset[tuple[str, ...]]


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
