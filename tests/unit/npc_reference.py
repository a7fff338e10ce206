"""An independent NetworkPolicy evaluator: one connection at a time, straight from the API text.

It shares only the parsed objects (``weave_cli.npc.model``) with the compiler; label selectors
are evaluated here from their fields, and nothing is precomputed, indexed or cached. The API
text it follows (networking.k8s.io/v1 NetworkPolicySpec):

  "Traffic is allowed to a pod if there are no NetworkPolicies selecting the pod ... OR if the
  traffic matches at least one ingress rule across all of the NetworkPolicy objects whose
  podSelector matches the pod" (likewise egress), where only policies whose policyTypes name
  the direction select a pod for it; a rule matches when the peer matches one of ``from``/
  ``to`` (every peer when empty) and the port one of ``ports`` (every port when empty).

The same documented choices as ``weave_cli.npc.compile``: pods without an address do not take
part; a pod whose Namespace is unknown is matched only by an empty namespaceSelector; IPv6
ipBlocks match nothing; named ports resolve on the destination pod by name and protocol, also
behind an egress ipBlock peer (a pod inside the block that serves the name). Addresses are
assumed unique among pods (the node-local exception and loopback are the controller's
business, not modelled here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network

from weave_cli.npc.model import IPBlockPeer, Namespace, Pod, PodPeer, Policy, PortSpec, Selector


def _selector_matches(selector: Selector, labels: Mapping[str, str]) -> bool:
    for key, value in selector.match_labels.items():
        if key not in labels or labels[key] != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def _namespace_selected(selector: Selector, namespace: str,
                        namespaces: list[Namespace]) -> bool:
    for ns in namespaces:
        if ns.name == namespace:
            return _selector_matches(selector, ns.labels)
    return not selector.match_labels and not selector.match_expressions


def _peer_matches(policy: Policy, peer: PodPeer | IPBlockPeer, ip: IPv4Address,
                  pod: Pod | None, namespaces: list[Namespace]) -> bool:
    if isinstance(peer, IPBlockPeer):
        if not isinstance(peer.cidr, IPv4Network) or ip not in peer.cidr:
            return False
        return not any(isinstance(e, IPv4Network) and ip in e for e in peer.excepts)
    if pod is None:
        return False
    if peer.namespace_selector is None:
        if pod.namespace != policy.namespace:
            return False
    elif not _namespace_selected(peer.namespace_selector, pod.namespace, namespaces):
        return False
    return peer.pod_selector is None or _selector_matches(peer.pod_selector, pod.labels)


def _port_matches(spec: PortSpec, protocol: str, port: int, dest: Pod | None) -> bool:
    if spec.protocol != protocol:
        return False
    if spec.port is None:
        return True
    if isinstance(spec.port, str):
        return dest is not None and any(
            p.name == spec.port and p.protocol == protocol and p.port == port
            for p in dest.ports)
    last = spec.end_port if spec.end_port is not None else spec.port
    return spec.port <= port <= last


def _direction_allows(namespaces: list[Namespace], policies: list[Policy], egress: bool,
                      subject: Pod, other_ip: IPv4Address, other: Pod | None,
                      dest: Pod | None, protocol: str, port: int) -> bool:
    kind = "Egress" if egress else "Ingress"
    selecting = [p for p in policies if p.namespace == subject.namespace and kind in p.types
                 and _selector_matches(p.pod_selector, subject.labels)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in (policy.egress if egress else policy.ingress) or ():
            for peer in rule.peers or (None,):
                if peer is not None and not _peer_matches(policy, peer, other_ip, other,
                                                          namespaces):
                    continue
                for spec in rule.ports or (None,):
                    if spec is None:
                        return True
                    if _port_matches(spec, protocol, port, dest):
                        return True
    return False


def reference_allows(pods: Iterable[Pod], namespaces: Iterable[Namespace],
                     policies: Iterable[Policy], src_ip: IPv4Address, dst_ip: IPv4Address,
                     protocol: str, port: int) -> bool:
    """Whether a new connection ``src_ip`` -> ``dst_ip``:``port``/``protocol`` is allowed."""
    every_pod, every_ns, every_policy = list(pods), list(namespaces), list(policies)
    src = next((p for p in every_pod if p.ip is not None and p.ip == src_ip), None)
    dst = next((p for p in every_pod if p.ip is not None and p.ip == dst_ip), None)
    if src is not None and not _direction_allows(every_ns, every_policy, True, src, dst_ip,
                                                 dst, dst, protocol, port):
        return False
    if dst is not None and not _direction_allows(every_ns, every_policy, False, dst, src_ip,
                                                 src, dst, protocol, port):
        return False
    return True
