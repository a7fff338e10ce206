"""The compiled network policy: what the nftables tables hold, as plain data.

``compile.compile_policies`` turns the cluster's pods, namespaces and NetworkPolicies into one
``Ruleset``; ``nftables.render`` turns a ``Ruleset`` into an ``nft -f`` script. Nothing here
reads the cluster or the kernel, so the same value can be rendered, compared with what the
kernel holds, or pushed through ``allows`` (the rule simulator the property tests use).

Representation:

* ``sets`` maps a set name to a frozenset of IPv4 addresses; ``endpoint_sets`` maps a set name
  to a frozenset of (address, port) pairs for one protocol (the named ports, resolved on the
  pods that serve them). Set names are short ASCII words (``[a-z0-9-]``, at most 31 bytes) made
  by the compiler; ``KNOWN``, ``INGRESS_ISOLATED`` and ``EGRESS_ISOLATED`` are always present.
* ``KNOWN`` holds every pod address the cluster reports, on any node. A packet from or to one of
  this node's pod ports whose address is not in ``KNOWN`` is dropped: a pod the controller has
  not heard of yet is closed, never open (S25).
* A packet is checked in each direction. Egress: when its source is in ``EGRESS_ISOLATED`` it
  must match one ``egress`` rule whose ``targets`` holds the source, whose peer matches the
  destination and whose port matches; ingress likewise with source and destination swapped,
  against ``ingress`` and ``INGRESS_ISOLATED``. A packet passes when both directions pass.
* A rule's peer is ``peer_set`` (a set name), or ``peer_block`` (a CIDR and the CIDRs it
  excepts), or neither (any address); never both. Its ports are ``protocol`` None (every
  protocol and port), or a protocol with ``port`` None (every port of it), or a protocol with
  ``port`` ``port``..``end_port`` (inclusive; ``end_port`` None means ``port`` alone), or a
  protocol with ``named_set``: the pair (destination address, destination port) must be in that
  endpoint set. The destination is the target for ingress and the peer for egress.
* ``comment`` names the policy and rule the rule came from (``ns/name ingress 0 peer 1 port
  2``): at most 100 bytes of printable ASCII, so nft can carry it.

Invariants (checked by ``Ruleset.check``): every set a rule names exists; a rule with
``named_set`` has a protocol and no port; ``end_port`` is only given with ``port`` and is not
below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Literal

Protocol = Literal["tcp", "udp", "sctp"]
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp", "sctp")

KNOWN = "known"
INGRESS_ISOLATED = "ingress-isolated"
EGRESS_ISOLATED = "egress-isolated"


@dataclass(frozen=True)
class PeerBlock:
    """An ipBlock: ``cidr`` minus every network in ``excepts``."""

    cidr: IPv4Network
    excepts: tuple[IPv4Network, ...] = ()

    def contains(self, addr: IPv4Address) -> bool:
        return addr in self.cidr and not any(addr in e for e in self.excepts)


@dataclass(frozen=True)
class Rule:
    """One accept rule of the ingress or egress chain (see the module docstring)."""

    targets: str
    peer_set: str | None = None
    peer_block: PeerBlock | None = None
    protocol: Protocol | None = None
    port: int | None = None
    end_port: int | None = None
    named_set: str | None = None
    comment: str = ""


@dataclass(frozen=True)
class Ruleset:
    sets: dict[str, frozenset[IPv4Address]] = field(default_factory=dict)
    endpoint_sets: dict[str, frozenset[tuple[IPv4Address, int]]] = field(default_factory=dict)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    def check(self) -> None:
        """Raise ValueError when an invariant of the module docstring does not hold."""
        for name in (KNOWN, INGRESS_ISOLATED, EGRESS_ISOLATED):
            if name not in self.sets:
                raise ValueError(f"set {name} missing")
        for name in [*self.sets, *self.endpoint_sets]:
            if not 0 < len(name) <= 31 or not all(c.isascii() and (c.isalnum() or c == "-")
                                                  for c in name) or name != name.lower():
                raise ValueError(f"bad set name {name!r}")
        for rule in (*self.ingress, *self.egress):
            if rule.targets not in self.sets:
                raise ValueError(f"rule names unknown set {rule.targets}")
            if rule.peer_set is not None and rule.peer_set not in self.sets:
                raise ValueError(f"rule names unknown set {rule.peer_set}")
            if rule.peer_set is not None and rule.peer_block is not None:
                raise ValueError("a rule has one kind of peer")
            if rule.named_set is not None and (rule.named_set not in self.endpoint_sets
                                               or rule.protocol is None or rule.port is not None):
                raise ValueError(f"bad named-port rule {rule.comment}")
            if rule.port is None and rule.end_port is not None:
                raise ValueError("end_port without port")
            if rule.port is not None and (rule.protocol is None
                                          or not 0 < rule.port <= 65535
                                          or (rule.end_port is not None
                                              and not rule.port <= rule.end_port <= 65535)):
                raise ValueError(f"bad port in {rule.comment}")
            if len(rule.comment) > 100 or not rule.comment.isprintable() \
                    or not rule.comment.isascii() or '"' in rule.comment:
                raise ValueError(f"bad comment {rule.comment!r}")


def _rule_matches(rs: Ruleset, rule: Rule, target: IPv4Address, peer: IPv4Address,
                  dest: IPv4Address, protocol: Protocol, port: int) -> bool:
    if target not in rs.sets[rule.targets]:
        return False
    if rule.peer_set is not None and peer not in rs.sets[rule.peer_set]:
        return False
    if rule.peer_block is not None and not rule.peer_block.contains(peer):
        return False
    if rule.protocol is None:
        return True
    if rule.protocol != protocol:
        return False
    if rule.named_set is not None:
        return (dest, port) in rs.endpoint_sets[rule.named_set]
    if rule.port is None:
        return True
    return rule.port <= port <= (rule.end_port if rule.end_port is not None else rule.port)


def allows(rs: Ruleset, src: IPv4Address, dst: IPv4Address, protocol: Protocol,
           port: int) -> bool:
    """Whether the rules pass a new connection from ``src`` to ``dst``:``port``/``protocol``
    (the semantics the nftables rendering implements; pods not in ``KNOWN`` aside)."""
    if src in rs.sets[EGRESS_ISOLATED] and not any(
            _rule_matches(rs, r, src, dst, dst, protocol, port) for r in rs.egress):
        return False
    if dst in rs.sets[INGRESS_ISOLATED] and not any(
            _rule_matches(rs, r, dst, src, dst, protocol, port) for r in rs.ingress):
        return False
    return True
