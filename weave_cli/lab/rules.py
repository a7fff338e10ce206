"""Underlay faults as nftables rules in the switch namespace, rendered and parsed without I/O.

All fault rules live in one table that only the lab uses, inside the lab's switch namespace
(``wl-LAB-sw``), never in the machine's own namespace::

    table bridge weavelab {
        chain forward {
            type filter hook forward priority 0; policy accept;
            ip saddr 198.18.0.1 ip daddr 198.18.0.2 [MATCH] counter drop comment "wl:h1-h2:SPEC"
            ip saddr 198.18.0.2 ip daddr 198.18.0.1 [MATCH] counter drop comment "wl:h1-h2:SPEC"
        }
    }

A fault between two hosts (a *partition*, whole or partial) is a ``Fault``: which packets of
the pair are dropped, both ways. Its text form ``SPEC`` is ``PROTO[/PORT][>SIZE]``:

====================  ==============================================================
``all``               every IPv4 packet (ARP is never dropped: a black hole, not a
                      missing host)
``tcp``, ``udp``      only that protocol (``meta l4proto tcp``)
``udp/6784``          only UDP from or to port 6784 (``udp dport 6784``, and a second
                      rule ``udp sport 6784``): blocks fastdp and nothing else
``udp>700``           only UDP packets whose IP total length is above 700 bytes
                      (``ip length > 700``): an underlay that loses big datagrams
``udp/6783>700``      both conditions at once
``all>1400``          every IPv4 packet above 1400 bytes
====================  ==============================================================

A port needs ``tcp`` or ``udp``. A size limit applies to each packet on the wire, so a big
datagram that the sender fragmented loses every fragment that is too big (and with it the
datagram). The comment ``wl:hA-hB:SPEC`` (A < B) is the key: one fault per pair; partitioning
a pair again replaces its rules (the spec may change), healing a pair deletes them, healing
everything deletes the table. Each change is one ``nft -f`` transaction, so it is atomic and
idempotent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from weave_cli.errors import LabError
from weave_cli.lab.topology import Host
from weave_cli.names import LAB_NFT_TABLE

TABLE = LAB_NFT_TABLE
FAMILY = "bridge"
CHAIN = "forward"
COMMENT_PREFIX = "wl:"
MODES = ("all", "tcp", "udp")  # the protocols a fault can select
MIN_SIZE = 68  # the smallest MTU IPv4 allows; a smaller limit would drop everything
MAX_SIZE = 65535
_SPEC_RE = re.compile(r"(all|tcp|udp)(?:/([0-9]{1,5}))?(?:>([0-9]{1,5}))?")

_DECLARE = (
    f"table {FAMILY} {TABLE} {{\n"
    f"  chain {CHAIN} {{\n"
    "    type filter hook forward priority 0; policy accept;\n"
    "  }\n"
    "}\n"
)


@dataclass(frozen=True)
class Fault:
    """Which packets between two hosts the switch drops (both directions)."""

    proto: str = "all"  # "all", "tcp" or "udp"
    port: int | None = None  # only packets from or to this port (tcp/udp only)
    max_size: int | None = None  # only packets whose IP total length is above this

    @property
    def spec(self) -> str:
        """The text form used in rule comments and ``weave lab status``: ``udp/6784>700``."""
        port = "" if self.port is None else f"/{self.port}"
        size = "" if self.max_size is None else f">{self.max_size}"
        return f"{self.proto}{port}{size}"

    def matches(self) -> list[str]:
        """The nft match of each rule per direction (one, or two when a port is given)."""
        size = "" if self.max_size is None else f"ip length > {self.max_size} "
        if self.port is not None:
            return [f"{self.proto} {side} {self.port} {size}" for side in ("dport", "sport")]
        proto = "" if self.proto == "all" else f"meta l4proto {self.proto} "
        return [f"{proto}{size}"]


def fault(proto: str = "all", port: int | None = None, max_size: int | None = None) -> Fault:
    """A checked Fault, or a LabError that says what is wrong and how to say it right."""
    if proto not in MODES:
        raise LabError(f"unknown partition mode {proto!r}", "use --mode all, tcp or udp")
    if port is not None:
        if proto == "all":
            raise LabError("--port needs --mode tcp or --mode udp",
                           "e.g. weave lab partition h1 h2 --mode udp --port 6784")
        if not 1 <= port <= 65535:
            raise LabError(f"--port must be between 1 and 65535, not {port}", "e.g. --port 6784")
    if max_size is not None and not MIN_SIZE <= max_size <= MAX_SIZE:
        raise LabError(f"--max-size must be between {MIN_SIZE} and {MAX_SIZE} bytes, not "
                       f"{max_size}", "e.g. --mode udp --max-size 700")
    return Fault(proto, port, max_size)


def parse_spec(text: str) -> Fault | None:
    """``udp/6784>700`` -> Fault("udp", 6784, 700); anything that is not a valid spec -> None."""
    match = _SPEC_RE.fullmatch(text)
    if match is None:
        return None
    proto, port, size = match.groups()
    try:
        found = fault(proto, None if port is None else int(port),
                      None if size is None else int(size))
    except LabError:
        return None
    return found if found.spec == text else None  # one spelling per fault ("/06784" is not)


@dataclass(frozen=True)
class RuleRef:
    """An existing rule of our chain: its handle, the pair it belongs to and its fault spec."""

    handle: int
    pair: tuple[str, str]
    mode: str  # the spec: "all", "tcp", "udp/6784", "udp>700" ...

    @property
    def fault(self) -> Fault:
        parsed = parse_spec(self.mode)
        if parsed is None:  # parse_listing keeps only rules whose spec parses
            raise LabError(f"invalid partition spec {self.mode!r}", "heal it: weave lab heal")
        return parsed


def ordered(a: Host, b: Host) -> tuple[Host, Host]:
    return (a, b) if a.index < b.index else (b, a)


def comment(a: Host, b: Host, mode: str | Fault) -> str:
    low, high = ordered(a, b)
    spec = mode.spec if isinstance(mode, Fault) else mode
    return f"{COMMENT_PREFIX}{low.name}-{high.name}:{spec}"


def parse_comment(text: str) -> tuple[tuple[str, str], str] | None:
    """``wl:h1-h2:udp/6784`` -> (("h1", "h2"), "udp/6784"); anything else -> None."""
    if not text.startswith(COMMENT_PREFIX):
        return None
    try:
        pair, spec = text[len(COMMENT_PREFIX):].split(":")
        low, high = pair.split("-")
    except ValueError:
        return None
    return ((low, high), spec) if parse_spec(spec) is not None else None


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


def partition_script(a: Host, b: Host, mode: str | Fault, existing: list[RuleRef]) -> str:
    """One transaction: declare table/chain, drop this pair's old rules, add the new ones.

    ``mode`` is a Fault or its spec (``"tcp"``, ``"udp/6784"``); a bad spec is a LabError.
    """
    the_fault = mode if isinstance(mode, Fault) else parse_spec(mode)
    if the_fault is None:
        raise LabError(f"invalid partition spec {mode!r}", "e.g. all, tcp, udp/6784, udp>700")
    low, high = ordered(a, b)
    key = comment(a, b, the_fault)
    lines = [_DECLARE]
    lines += [_delete(ref) for ref in existing if ref.pair == (low.name, high.name)]
    for src, dst in ((low, high), (high, low)):
        for match in the_fault.matches():
            lines.append(
                f"add rule {FAMILY} {TABLE} {CHAIN} ip saddr {src.address} ip daddr "
                f'{dst.address} {match}counter drop comment "{key}"\n'
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
