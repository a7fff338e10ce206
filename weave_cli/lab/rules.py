"""Partitions as nftables rules in the switch namespace, rendered and parsed without I/O.

All partition rules live in one table that only the lab uses, inside the lab's switch
namespace (``wl-LAB-sw``), never in the machine's own namespace::

    table bridge weavelab {
        chain forward {
            type filter hook forward priority 0; policy accept;
            ip saddr 198.18.0.1 ip daddr 198.18.0.2 [meta l4proto tcp] counter drop \
                comment "wl:h1-h2:tcp"
            ip saddr 198.18.0.2 ip daddr 198.18.0.1 [meta l4proto tcp] counter drop \
                comment "wl:h1-h2:tcp"
        }
    }

A partition between two hosts is the pair of rules whose comment is ``wl:hA-hB:MODE`` with
A < B and MODE one of ``all``, ``tcp``, ``udp``. The comment is the key: partitioning a pair
again replaces its rules, healing a pair deletes them, healing everything deletes the table.
Each change is one ``nft -f`` transaction, so it is atomic and idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from weave_cli.lab.topology import Host
from weave_cli.names import LAB_NFT_TABLE

TABLE = LAB_NFT_TABLE
FAMILY = "bridge"
CHAIN = "forward"
COMMENT_PREFIX = "wl:"
MODES = ("all", "tcp", "udp")

_DECLARE = (
    f"table {FAMILY} {TABLE} {{\n"
    f"  chain {CHAIN} {{\n"
    "    type filter hook forward priority 0; policy accept;\n"
    "  }\n"
    "}\n"
)


@dataclass(frozen=True)
class RuleRef:
    """An existing rule of our chain: its handle and the partition it belongs to."""

    handle: int
    pair: tuple[str, str]
    mode: str


def ordered(a: Host, b: Host) -> tuple[Host, Host]:
    return (a, b) if a.index < b.index else (b, a)


def comment(a: Host, b: Host, mode: str) -> str:
    low, high = ordered(a, b)
    return f"{COMMENT_PREFIX}{low.name}-{high.name}:{mode}"


def parse_comment(text: str) -> tuple[tuple[str, str], str] | None:
    """``wl:h1-h2:tcp`` -> (("h1", "h2"), "tcp"); anything else -> None."""
    if not text.startswith(COMMENT_PREFIX):
        return None
    try:
        pair, mode = text[len(COMMENT_PREFIX):].split(":")
        low, high = pair.split("-")
    except ValueError:
        return None
    return ((low, high), mode) if mode in MODES else None


def parse_listing(listing: str) -> list[RuleRef]:
    """Our rules from ``nft -j list chain bridge weavelab forward`` output."""
    if not listing.strip():
        return []
    doc: Any = json.loads(listing)
    refs = []
    for item in doc.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule:
            continue
        parsed = parse_comment(str(rule.get("comment", "")))
        if parsed is not None:
            refs.append(RuleRef(int(rule["handle"]), parsed[0], parsed[1]))
    return refs


def partition_script(a: Host, b: Host, mode: str, existing: list[RuleRef]) -> str:
    """One transaction: declare table/chain, drop this pair's old rules, add the new pair."""
    low, high = ordered(a, b)
    key = comment(a, b, mode)
    match = "" if mode == "all" else f"meta l4proto {mode} "
    lines = [_DECLARE]
    lines += [_delete(ref) for ref in existing if ref.pair == (low.name, high.name)]
    for src, dst in ((low, high), (high, low)):
        lines.append(
            f"add rule {FAMILY} {TABLE} {CHAIN} ip saddr {src.address} ip daddr {dst.address} "
            f'{match}counter drop comment "{key}"\n'
        )
    return "".join(lines)


def heal_script(a: Host, b: Host, existing: list[RuleRef]) -> str:
    """Delete one pair's rules (empty string: nothing to do)."""
    low, high = ordered(a, b)
    return "".join(_delete(ref) for ref in existing if ref.pair == (low.name, high.name))


def heal_all_script() -> str:
    """Delete the whole table; declaring it first makes this succeed when it is absent."""
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"


def list_argv() -> list[str]:
    return ["nft", "-j", "list", "chain", FAMILY, TABLE, CHAIN]


def _delete(ref: RuleRef) -> str:
    return f"delete rule {FAMILY} {TABLE} {CHAIN} handle {ref.handle}\n"
