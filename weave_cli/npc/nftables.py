"""A ``Ruleset`` as the two nftables tables of the policy controller (pure).

::

    table inet weave-npc                                    the policy
      sets known, ingress-isolated, egress-isolated, ip-*   IPv4 addresses
      sets ep-*                                             address . port (named ports)
      maps ingress-dispatch, egress-dispatch                isolated pod -> its chain
      chain forward   filter hook forward priority 10, policy accept
        FROM_POD mark, source not known         -> drop      a pod we have not heard of is
        TO_POD mark, unicast dest not known     -> drop      closed, never open (S25), even
        ct state established,related accept                 to replies: these come first
        ip saddr vmap @egress-dispatch   pod -> its chain    each rule: return when allowed
        ip daddr vmap @ingress-dispatch  pod -> its chain    each rule: accept when allowed
      chain egress-<hash>   the rules of the pods that share them ; counter drop
      chain ingress-<hash>  ...
    table bridge weave-npc                                  which frames touch our pods
      set known
      chain prerouting  priority -300: iifname "vethwepl*": not IPv4/ARP -> drop;
                                       else mark |= FROM_POD
      chain forward     priority -300: oifname "vethwepl*": not IPv4/ARP -> drop; IPv4 to
                                       ff:ff:ff:ff:ff:ff -> drop; else mark |= TO_POD
      chain output      oifname "vethwepl*": not IPv4/ARP -> drop; unicast, dest not known
                                       -> drop

Why the forward hook sees everything that matters: frames bridged between pods (on this node
or through the overlay ports) reach it through br_netfilter (``bridge-nf-call-iptables``, which
the controller keeps at 1); packets routed into the bridge (a Service's ClusterIP or NodePort
after kube-proxy's DNAT, hairpin to one's own Service) reach it after the DNAT and *before* any
masquerade, so the rules see the real client and the real endpoint (weave#3285, #3452: S24).
Only what the node itself sends skips it, and the API allows that ("traffic from the pod's
node"). The bridge table marks frames by the pod port they use, since the inet hooks see only
the bridge device; its output chain closes pods the controller does not know to what the node
routes or sends to them.

A pod port carries IPv4 and ARP only: IPv6 (every pod has a link-local address) and VLAN-tagged
frames (which br_netfilter does not hand to the inet hooks) would get around the policy.
Broadcast IPv4 between pods is dropped (as in the original). Multicast is the one exception to
ingress policy: its destination is a group, not a pod, so it reaches every pod port whose pod
joined the group, isolated or not (as in the original, which accepted 224.0.0.0/4); egress
rules do apply to it (an egress-isolated pod needs an ipBlock such as 224.0.0.0/4 to send
any). A pod that answers a multicast datagram opens, by conntrack, a reply path for that one
5-tuple, as any connection it makes does.

``script`` replaces both tables in one ``nft -f`` transaction: no packet ever sees half a
ruleset or an empty one. The first rule of the inet forward chain and the marking rule of the
bridge prerouting chain carry ``ruleset <digest>``, a hash of the rest of the script, so the
controller can tell that tables are its own; ``canonical_listing`` reduces a listing to its
chains, rule comments and set sizes, so it can tell that nothing in them was changed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address

from weave_cli.names import NPC_MARK_FROM_POD, NPC_MARK_TO_POD, NPC_TABLE, POD_PORT_GLOB
from weave_cli.npc.ir import EGRESS_ISOLATED, INGRESS_ISOLATED, KNOWN, Rule, Ruleset

INET_TABLE = f"inet {NPC_TABLE}"
BRIDGE_TABLE = f"bridge {NPC_TABLE}"
FORWARD_PRIORITY = 10  # after `table inet weave` (0); both must accept, order is cosmetic
MARK_PRIORITY = -300  # before br_netfilter hands the frame to the inet hooks (priority 0)
DIGEST_TAG = "ruleset "
_C = "weave-npc:"
_UNICAST = "ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00"
# A pod port carries IPv4 and ARP only: IPv6 (every pod has a link-local address) and VLAN-
# tagged frames (br_netfilter passes them by) would go around the policy.
_NOT_IPV4 = "ether type != { ip, arp }"
MULTICAST = "224.0.0.0/4"


def _mark_test(bit: int) -> str:
    return f"meta mark & {bit:#010x} == {bit:#010x}"


def _elements(addrs: frozenset[IPv4Address]) -> str:
    return ", ".join(str(a) for a in sorted(addrs))


def _address_set(name: str, addrs: frozenset[IPv4Address]) -> str:
    elements = f" elements = {{ {_elements(addrs)} }};" if addrs else ""
    return f"  set {name} {{ type ipv4_addr;{elements} }}"


def _sets(rs: Ruleset) -> list[str]:
    lines = [_address_set(name, rs.sets[name]) for name in sorted(rs.sets)]
    for name in sorted(rs.endpoint_sets):
        pairs = sorted(rs.endpoint_sets[name])
        body = "type ipv4_addr . inet_service;"
        if pairs:
            body += " elements = { " + ", ".join(f"{a} . {p}" for a, p in pairs) + " };"
        lines.append(f"  set {name} {{ {body} }}")
    return lines


def _rule(rule: Rule, ingress: bool) -> str:
    """The statement of one rule in a pod's chain (the dispatch map already matched the
    target: the destination for ingress, the source for egress)."""
    peer = "saddr" if ingress else "daddr"
    parts: list[str] = []
    if rule.peer_set is not None:
        parts.append(f"ip {peer} @{rule.peer_set}")
    if rule.peer_block is not None:
        parts.append(f"ip {peer} {rule.peer_block.cidr}")
        if rule.peer_block.excepts:
            nets = ", ".join(str(n) for n in rule.peer_block.excepts)
            parts.append(f"ip {peer} != {{ {nets} }}")
    if rule.protocol is not None:
        parts.append(f"meta l4proto {rule.protocol}")
        if rule.named_set is not None:
            parts.append(f"ip daddr . th dport @{rule.named_set}")
        elif rule.port is not None:
            span = str(rule.port) if rule.end_port in (None, rule.port) \
                else f"{rule.port}-{rule.end_port}"
            parts.append(f"th dport {span}")
    parts.append("counter")
    parts.append("accept" if ingress else "return")
    return " ".join(parts) + f' comment "{rule.comment}"'


def _dispatch(rs: Ruleset, ingress: bool) -> tuple[str, list[str]]:
    """One direction as a verdict map from each isolated pod to the chain of the rules that
    target it (pods with the same rules share one chain), and those chains. A new connection
    walks only its pod's rules, however many policies the cluster has."""
    word = "ingress" if ingress else "egress"
    rules = rs.ingress if ingress else rs.egress
    per_pod: dict[IPv4Address, list[int]] = {
        ip: [] for ip in rs.sets[INGRESS_ISOLATED if ingress else EGRESS_ISOLATED]}
    for index, rule in enumerate(rules):
        for ip in rs.sets[rule.targets]:
            if ip in per_pod:
                per_pod[ip].append(index)
    groups: dict[tuple[int, ...], list[IPv4Address]] = {}
    for ip, targeting in per_pod.items():
        groups.setdefault(tuple(targeting), []).append(ip)
    chains: list[str] = []
    elements: list[str] = []
    for indices in sorted(groups):
        tag = hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:12]
        name = f"{word}-{tag}"
        chains += [f"  chain {name} {{",
                   *(f"    {_rule(rules[i], ingress)}" for i in indices),
                   f'    counter drop comment "{_C}{word} denied"', "  }"]
        elements += [f"{ip} : jump {name}" for ip in sorted(groups[indices])]
    body = f" elements = {{ {', '.join(elements)} }};" if elements else ""
    return f"  map {word}-dispatch {{ type ipv4_addr : verdict;{body} }}", chains


def _body(rs: Ruleset) -> tuple[list[str], list[str]]:
    """The inet and bridge tables without their digest lines."""
    egress_map, egress_chains = _dispatch(rs, ingress=False)
    ingress_map, ingress_chains = _dispatch(rs, ingress=True)
    inet = [f"table {INET_TABLE} {{", *_sets(rs), egress_map, ingress_map]
    inet += [
        "  chain forward {",
        f"    type filter hook forward priority {FORWARD_PRIORITY}; policy accept;",
        "@DIGEST@",
        f"    {_mark_test(NPC_MARK_TO_POD)} ip daddr != {MULTICAST} ip daddr != @{KNOWN}"
        f' counter drop comment "{_C}unknown destination pod"',
        "    ct state established,related accept"
        f' comment "{_C}established"',
        f'    ip saddr vmap @egress-dispatch comment "{_C}egress isolated"',
        f'    ip daddr vmap @ingress-dispatch comment "{_C}ingress isolated"',
        "  }",
        *egress_chains,
        *ingress_chains,
        "}",
    ]
    ports = f'"{POD_PORT_GLOB}"'
    bridge = [
        f"table {BRIDGE_TABLE} {{",
        _address_set(KNOWN, rs.sets[KNOWN]),
        "  chain prerouting {",
        f"    type filter hook prerouting priority {MARK_PRIORITY}; policy accept;",
        f"    iifname {ports} {_NOT_IPV4} counter drop comment \"{_C}from pod port not ipv4\"",
        "@DIGEST@",
        "  }",
        "  chain forward {",
        f"    type filter hook forward priority {MARK_PRIORITY}; policy accept;",
        f"    oifname {ports} {_NOT_IPV4} counter drop comment \"{_C}to pod port not ipv4\"",
        f"    oifname {ports} ether type ip ether daddr ff:ff:ff:ff:ff:ff counter drop"
        f' comment "{_C}broadcast to pod port"',
        f"    oifname {ports} meta mark set meta mark | {NPC_MARK_TO_POD:#010x}"
        f' comment "{_C}to pod port"',
        "  }",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        f"    oifname {ports} {_NOT_IPV4} counter drop comment \"{_C}node to pod not ipv4\"",
        f"    oifname {ports} {_UNICAST} ip daddr != @{KNOWN} counter drop"
        f' comment "{_C}unknown destination pod"',
        "  }",
        "}",
    ]
    return inet, bridge


@dataclass(frozen=True)
class Rendered:
    """A ruleset rendered once: its ``nft -f`` script and its digest (rendering thousands of
    pods takes tens of milliseconds, so a change renders once and passes this along)."""

    ruleset: Ruleset
    script: str
    digest: str


def render(rs: Ruleset) -> Rendered:
    """The ``nft -f`` script replacing (or creating) both tables in one transaction, and the
    digest, 16 hex digits that change whenever the tables would."""
    rs.check()
    inet, bridge = _body(rs)
    tag = hashlib.sha256("\n".join(inet + bridge).encode()).hexdigest()[:16]
    inet_digest = (f"    {_mark_test(NPC_MARK_FROM_POD)} ip saddr != @{KNOWN} counter drop"
                   f' comment "{_C}unknown source pod {DIGEST_TAG}{tag}"')
    bridge_digest = (f'    iifname "{POD_PORT_GLOB}" meta mark set meta mark |'
                     f' {NPC_MARK_FROM_POD:#010x} comment "{_C}from pod port {DIGEST_TAG}{tag}"')
    lines = [f"table {INET_TABLE} {{}}", f"delete table {INET_TABLE}"]
    lines += [inet_digest if line == "@DIGEST@" else line for line in inet]
    lines += [f"table {BRIDGE_TABLE} {{}}", f"delete table {BRIDGE_TABLE}"]
    lines += [bridge_digest if line == "@DIGEST@" else line for line in bridge]
    return Rendered(rs, "\n".join(lines) + "\n", tag)


def script(rs: Ruleset) -> str:
    return render(rs).script


def digest(rs: Ruleset) -> str:
    return render(rs).digest


def delete_script() -> str:
    """Removes both tables if they exist (``weave reset``)."""
    return "".join(f"table {t} {{}}\ndelete table {t}\n" for t in (INET_TABLE, BRIDGE_TABLE))


def closed() -> Ruleset:
    """What a node holds before the controller's first complete view of the cluster: no pod
    is known, so every pod port of this node is closed to forwarded traffic."""
    empty: frozenset[IPv4Address] = frozenset()
    return Ruleset({KNOWN: empty, INGRESS_ISOLATED: empty, EGRESS_ISOLATED: empty})


@dataclass(frozen=True)
class TableState:
    """What a listing of one of our tables shows: the digest tags its rules carry, and its
    shape (chain headers, each rule comment with how often it occurs, each set or map with
    its size), so a deleted, added or edited rule, chain or set is seen."""

    digests: frozenset[str]
    shape: frozenset[tuple[object, ...]]

    def __add__(self, other: TableState) -> TableState:
        """Both tables together: the digests they agree on, the union of their shapes."""
        return TableState(self.digests & other.digests, self.shape | other.shape)


def read_listing(doc: object) -> TableState:
    """The state of a parsed ``nft -j list table ...`` document (garbage reads as empty)."""
    digests: set[str] = set()
    counts: Counter[tuple[object, ...]] = Counter()
    entries = doc.get("nftables", []) if isinstance(doc, dict) else []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        if isinstance(chain := entry.get("chain"), dict):
            counts[("chain", chain.get("family"), chain.get("name"), chain.get("hook"),
                    chain.get("prio"), chain.get("policy"))] += 1
        for kind in ("set", "map"):
            if isinstance(found := entry.get(kind), dict):
                elems = found.get("elem")
                counts[(kind, found.get("family"), found.get("name"),
                        len(elems) if isinstance(elems, list) else 0)] += 1
        if isinstance(rule := entry.get("rule"), dict):
            comment = rule.get("comment")
            counts[("rule", rule.get("family"), rule.get("chain"), str(comment))] += 1
            if isinstance(comment, str) and DIGEST_TAG in comment:
                digests.add(comment.rsplit(DIGEST_TAG, 1)[1])
    return TableState(frozenset(digests),
                      frozenset((*key, n) for key, n in counts.items()))
