"""The API objects the policy compiler reads: v1 Pod, v1 Namespace, networking.k8s.io/v1
NetworkPolicy, parsed from the decoded JSON the API server sends into frozen dataclasses.

Input is hostile: ``parse_pod``, ``parse_namespace`` and ``parse_policy`` accept any value and
either return the object or raise ``ModelError`` naming the object and the field; lists are
bounded (``MAX_*`` here and in ``selector``). Skipping a pod that does not parse is closed (its
address is unknown, so its node drops its traffic); a policy the API server would reject never
reaches us from a real one, so its checks follow the API's validation.

What the parse decides, so the compiler does not have to:

* ``Pod.ip`` is the first IPv4 address of ``status.podIPs`` (else ``status.podIP``); None for a
  pod with ``spec.hostNetwork`` (it is not on the pod network), for a pod in phase Succeeded or
  Failed (its address may already belong to another pod) and for a pod with no address yet.
  ``Pod.ports`` are the named ``spec.containers[].ports[]`` (protocol defaults to TCP); unnamed
  ones cannot be referred to by a policy and are dropped.
* ``Namespace.labels`` always hold ``kubernetes.io/metadata.name=<name>``, as the API server
  sets it.
* ``Policy.types`` is defaulted as the API server does: when ``policyTypes`` is absent or empty,
  Ingress, plus Egress when ``spec.egress`` has at least one rule. ``ingress``/``egress`` are
  None when the field is absent. An empty ``PolicyRule.peers`` means every peer, an empty
  ``PolicyRule.ports`` every port (absent and empty are the same in the API).
* ``PodPeer`` leaves a selector None when it was not given: no namespace selector means the
  policy's namespace, no pod selector means every pod of the selected namespaces.
  ``IPBlockPeer`` keeps IPv6 blocks (``ipv4()`` is None for them: they never match an IPv4
  address, and the compiler skips them rather than dropping the policy).
* ``PortSpec.port`` is a number, a port name (resolved later, on the destination pod; a name no
  pod serves matches nothing and is not an error) or None (every port of the protocol);
  ``end_port`` only comes with a number and is not below it. Protocols are ``ir.Protocol``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address, ip_network
from typing import Literal, cast

from weave_cli.npc import ir
from weave_cli.npc.selector import (
    EVERYTHING,
    Labels,
    ModelError,
    Selector,
    as_int,
    as_list,
    as_object,
    as_str,
    dns_label,
    dns_subdomain,
    parse_labels,
    parse_selector,
    show,
)

__all__ = ["EVERYTHING", "IPBlockPeer", "Labels", "ModelError", "NamedPort", "Namespace",
           "Peer", "Pod", "PodPeer", "Policy", "PolicyRule", "PolicyType", "PortSpec",
           "Selector", "parse_namespace", "parse_pod", "parse_policy"]

# As selector.py's: above what any object the API server stores can hold.
MAX_CONTAINERS = 65536
MAX_POD_PORTS = 65536  # over all containers of a pod
MAX_POD_IPS = 16  # the API admits two (one per family)
MAX_RULES = 65536  # per direction of a policy
MAX_PEERS = 65536  # per rule
MAX_PORTS = 65536  # per rule
MAX_EXCEPTS = 65536

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PolicyType = Literal["Ingress", "Egress"]
_PROTOCOLS: dict[str, ir.Protocol] = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")  # IANA_SVC_NAME, see _port_name


@dataclass(frozen=True)
class NamedPort:
    """A container port with a name: what a policy's named port resolves to."""

    name: str
    protocol: ir.Protocol
    port: int


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    labels: Labels
    ip: IPv4Address | None
    node: str
    ports: tuple[NamedPort, ...] = ()


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Labels


@dataclass(frozen=True)
class PodPeer:
    """Pods by selector; None: not given (see the module docstring)."""

    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None


@dataclass(frozen=True)
class IPBlockPeer:
    """``cidr`` minus ``excepts`` (all of the same family as ``cidr``)."""

    cidr: IPv4Network | IPv6Network
    excepts: tuple[IPv4Network | IPv6Network, ...] = ()

    def ipv4(self) -> ir.PeerBlock | None:
        """The block as the compiled form holds it; None for an IPv6 block."""
        if not isinstance(self.cidr, IPv4Network):
            return None
        return ir.PeerBlock(self.cidr, tuple(e for e in self.excepts
                                             if isinstance(e, IPv4Network)))


Peer = PodPeer | IPBlockPeer


@dataclass(frozen=True)
class PortSpec:
    protocol: ir.Protocol = "tcp"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class PolicyRule:
    """One ingress or egress rule; empty ``peers``/``ports``: every peer/port."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PortSpec, ...] = ()


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: tuple[PolicyRule, ...] | None
    egress: tuple[PolicyRule, ...] | None
    types: frozenset[PolicyType]


# -- shared pieces ---------------------------------------------------------------------------


def _metadata(obj: object, kind: str, namespaced: bool
              ) -> tuple[Mapping[object, object], Mapping[object, object], str, str]:
    """The raw object, its metadata, namespace ("" if not namespaced) and name, checked."""
    raw = as_object(obj, kind)
    meta = as_object(raw.get("metadata"), f"{kind}: metadata")
    if not namespaced:
        return raw, meta, "", dns_label(meta.get("name"), f"{kind} ?: metadata.name")
    namespace = dns_label(meta.get("namespace"), f"{kind} ?: metadata.namespace")
    return raw, meta, namespace, dns_subdomain(meta.get("name"),
                                               f"{kind} {namespace}/?: metadata.name")


def _protocol(value: object, where: str) -> ir.Protocol:
    text = as_str(value, where, 8, default="TCP")
    if text not in _PROTOCOLS:
        raise ModelError(f"{where}: unknown protocol {show(text)}")
    return _PROTOCOLS[text]


def _port_name(value: object, where: str) -> str:
    """An IANA service name: at most 15 of ``[a-z0-9-]``, a letter, no ``--``, no edge ``-``."""
    text = as_str(value, where, 15)
    if not _PORT_NAME.fullmatch(text) or "--" in text or not any(c.isalpha() for c in text):
        raise ModelError(f"{where}: {show(text)} is not a port name")
    return text


# -- pods and namespaces ---------------------------------------------------------------------


def _named_ports(containers: object, where: str) -> tuple[NamedPort, ...]:
    found: list[NamedPort] = []
    count = 0
    for i, container in enumerate(as_list(containers, f"{where}: spec.containers",
                                          MAX_CONTAINERS)):
        at = f"{where}: spec.containers[{i}]"
        ports = as_list(as_object(container, at).get("ports"), f"{at}.ports", MAX_POD_PORTS)
        count += len(ports)
        if count > MAX_POD_PORTS:
            raise ModelError(f"{where}: more than {MAX_POD_PORTS} container ports")
        for j, entry in enumerate(ports):
            raw = as_object(entry, f"{at}.ports[{j}]")
            port = as_int(raw.get("containerPort"), f"{at}.ports[{j}].containerPort", 1, 65535)
            protocol = _protocol(raw.get("protocol"), f"{at}.ports[{j}].protocol")
            if raw.get("name") is not None:
                found.append(NamedPort(_port_name(raw["name"], f"{at}.ports[{j}].name"),
                                       protocol, port))
    return tuple(found)


def _pod_ip(raw: Mapping[object, object], where: str) -> IPv4Address | None:
    texts = [as_str(as_object(e, f"{where}: status.podIPs[{i}]").get("ip"),
                    f"{where}: status.podIPs[{i}].ip", 64)
             for i, e in enumerate(as_list(raw.get("podIPs"), f"{where}: status.podIPs",
                                           MAX_POD_IPS))]
    if raw.get("podIP") is not None:
        texts.append(as_str(raw.get("podIP"), f"{where}: status.podIP", 64))
    addresses = []
    for text in texts:
        try:
            addresses.append(ip_address(text))
        except ValueError:
            raise ModelError(f"{where}: status: {show(text)} is not an IP address") from None
    return next((a for a in addresses if isinstance(a, IPv4Address)), None)


def parse_pod(obj: object) -> Pod:
    raw, meta, namespace, name = _metadata(obj, "Pod", namespaced=True)
    where = f"Pod {namespace}/{name}"
    uid = as_str(meta.get("uid"), f"{where}: metadata.uid", 128, default="")
    labels = parse_labels(meta.get("labels"), f"{where}: metadata.labels")
    spec = as_object(raw.get("spec"), f"{where}: spec")
    host_network = spec.get("hostNetwork")
    if host_network is not None and not isinstance(host_network, bool):
        raise ModelError(f"{where}: spec.hostNetwork: expected a boolean")
    node = as_str(spec.get("nodeName"), f"{where}: spec.nodeName", 253, default="")
    ports = _named_ports(spec.get("containers"), where)
    status = as_object(raw.get("status"), f"{where}: status")
    phase = as_str(status.get("phase"), f"{where}: status.phase", 32, default="")
    ip = _pod_ip(status, where)
    if host_network or phase in ("Succeeded", "Failed"):
        ip = None
    return Pod(namespace, name, uid, labels, ip, node, ports)


def parse_namespace(obj: object) -> Namespace:
    _, meta, _, name = _metadata(obj, "Namespace", namespaced=False)
    labels = parse_labels(meta.get("labels"), f"Namespace {name}: metadata.labels")
    return Namespace(name, Labels({**labels, NAMESPACE_NAME_LABEL: name}))


# -- policies --------------------------------------------------------------------------------


def _network(value: object, where: str) -> IPv4Network | IPv6Network:
    text = as_str(value, where, 64)
    if "/" not in text:
        raise ModelError(f"{where}: {show(text)} is not a CIDR")
    try:
        return ip_network(text, strict=False)
    except ValueError:
        raise ModelError(f"{where}: {show(text)} is not a CIDR") from None


def _peer(value: object, where: str) -> Peer:
    raw = as_object(value, where)
    pods, namespaces, block = (raw.get(k) for k in ("podSelector", "namespaceSelector",
                                                   "ipBlock"))
    if block is not None:
        if pods is not None or namespaces is not None:
            raise ModelError(f"{where}: ipBlock cannot be combined with selectors")
        block_raw = as_object(block, f"{where}.ipBlock")
        cidr = _network(block_raw.get("cidr"), f"{where}.ipBlock.cidr")
        excepts = tuple(_network(e, f"{where}.ipBlock.except[{i}]") for i, e in
                        enumerate(as_list(block_raw.get("except"), f"{where}.ipBlock.except",
                                          MAX_EXCEPTS)))
        if any(e.version != cidr.version for e in excepts):
            raise ModelError(f"{where}.ipBlock.except: not of the family of {cidr}")
        return IPBlockPeer(cidr, excepts)
    if pods is None and namespaces is None:
        raise ModelError(f"{where}: needs podSelector, namespaceSelector or ipBlock")
    return PodPeer(None if pods is None else parse_selector(pods, f"{where}.podSelector"),
                   None if namespaces is None
                   else parse_selector(namespaces, f"{where}.namespaceSelector"))


def _port_spec(value: object, where: str) -> PortSpec:
    raw = as_object(value, where)
    protocol = _protocol(raw.get("protocol"), f"{where}.protocol")
    port_raw, end_raw = raw.get("port"), raw.get("endPort")
    port: int | str | None = None
    if isinstance(port_raw, str):
        port = _port_name(port_raw, f"{where}.port")
    elif port_raw is not None:
        port = as_int(port_raw, f"{where}.port", 1, 65535)
    if end_raw is None:
        return PortSpec(protocol, port)
    if not isinstance(port, int):
        raise ModelError(f"{where}.endPort: only allowed with a numeric port")
    return PortSpec(protocol, port, as_int(end_raw, f"{where}.endPort", port, 65535))


def _rules(value: object, where: str, peer_field: str) -> tuple[PolicyRule, ...] | None:
    if value is None:
        return None
    rules = []
    for i, entry in enumerate(as_list(value, where, MAX_RULES)):
        at = f"{where}[{i}]"
        raw = as_object(entry, at)
        peers = as_list(raw.get(peer_field), f"{at}.{peer_field}", MAX_PEERS)
        ports = as_list(raw.get("ports"), f"{at}.ports", MAX_PORTS)
        rules.append(PolicyRule(
            tuple(_peer(p, f"{at}.{peer_field}[{j}]") for j, p in enumerate(peers)),
            tuple(_port_spec(p, f"{at}.ports[{j}]") for j, p in enumerate(ports))))
    return tuple(rules)


def parse_policy(obj: object) -> Policy:
    raw, _, namespace, name = _metadata(obj, "NetworkPolicy", namespaced=True)
    where = f"NetworkPolicy {namespace}/{name}: spec"
    spec = as_object(raw.get("spec"), where)
    selector = parse_selector(spec.get("podSelector"), f"{where}.podSelector")
    ingress = _rules(spec.get("ingress"), f"{where}.ingress", "from")
    egress = _rules(spec.get("egress"), f"{where}.egress", "to")
    types: set[PolicyType] = set()
    for i, entry in enumerate(as_list(spec.get("policyTypes"), f"{where}.policyTypes", 8)):
        text = as_str(entry, f"{where}.policyTypes[{i}]", 16)
        if text not in ("Ingress", "Egress"):
            raise ModelError(f"{where}.policyTypes[{i}]: unknown type {show(text)}")
        types.add(cast(PolicyType, text))
    if not types:
        types = {"Ingress", "Egress"} if egress else {"Ingress"}
    return Policy(namespace, name, selector, ingress, egress, frozenset(types))
