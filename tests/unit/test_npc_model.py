"""Parsing API objects for the policy compiler: defaults, bounds, selectors, hostile input."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weave_cli.npc import model, selector
from weave_cli.npc.model import (
    IPBlockPeer,
    Labels,
    ModelError,
    NamedPort,
    PodPeer,
    PortSpec,
    Selector,
    parse_namespace,
    parse_pod,
    parse_policy,
)
from weave_cli.npc.selector import Requirement, parse_selector


def pod_json(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "x", "name": "a", "uid": "u-1", "labels": {"pod": "a"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 80},
            {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            {"containerPort": 9000}]}]},
        "status": {"phase": "Running", "podIP": "10.32.0.5",
                   "podIPs": [{"ip": "10.32.0.5"}]},
    }
    obj.update(over)
    return obj


def policy_json(spec: dict[str, Any], ns: str = "x", name: str = "p") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


# -- pods ------------------------------------------------------------------------------------


def test_pod_fields() -> None:
    pod = parse_pod(pod_json())
    assert (pod.namespace, pod.name, pod.uid, pod.node) == ("x", "a", "u-1", "node-1")
    assert pod.labels == {"pod": "a"} and hash(pod.labels) == hash(Labels({"pod": "a"}))
    assert pod.ip == IPv4Address("10.32.0.5")
    assert pod.ports == (NamedPort("http", "tcp", 80), NamedPort("dns", "udp", 53))


@pytest.mark.parametrize("status, ip", [
    ({"podIPs": [{"ip": "fd00::5"}, {"ip": "10.0.0.9"}]}, "10.0.0.9"),
    ({"podIP": "10.0.0.7"}, "10.0.0.7"),
    ({"podIPs": [{"ip": "fd00::5"}]}, None),
    ({}, None),
    ({"phase": "Succeeded", "podIP": "10.0.0.7"}, None),
    ({"phase": "Failed", "podIP": "10.0.0.7"}, None),
    ({"phase": "Pending", "podIP": "10.0.0.7"}, "10.0.0.7"),
])
def test_pod_address(status: dict[str, Any], ip: str | None) -> None:
    got = parse_pod(pod_json(status=status)).ip
    assert got == (None if ip is None else IPv4Address(ip))


def test_host_network_pods_have_no_pod_address() -> None:
    obj = pod_json()
    obj["spec"]["hostNetwork"] = True
    assert parse_pod(obj).ip is None


def test_minimal_pod() -> None:
    pod = parse_pod({"metadata": {"namespace": "x", "name": "a"}})
    assert (pod.uid, pod.node, pod.ip, pod.ports, len(pod.labels)) == ("", "", None, (), 0)


@pytest.mark.parametrize("path, value, field", [
    (("metadata", "namespace"), "X_bad", "metadata.namespace"),
    (("metadata", "name"), None, "metadata.name"),
    (("metadata", "labels"), ["pod"], "metadata.labels"),
    (("metadata", "labels"), {"pod": 1}, "metadata.labels"),
    (("metadata", "labels"), {"-bad": "a"}, "metadata.labels"),
    (("spec", "hostNetwork"), "yes", "spec.hostNetwork"),
    (("spec", "containers"), {"name": "c"}, "spec.containers"),
    (("status", "podIP"), "10.0.0.300", "status"),
    (("status", "podIPs"), [{"ip": 5}], "status.podIPs[0].ip"),
])
def test_pod_garbage_names_the_field(path: tuple[str, str], value: object, field: str) -> None:
    obj = pod_json()
    obj[path[0]][path[1]] = value
    with pytest.raises(ModelError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_pod(obj)


@pytest.mark.parametrize("port", [
    {"containerPort": 0}, {"containerPort": 65536}, {"containerPort": "80"},
    {"containerPort": True}, {"containerPort": 80.0}, {"containerPort": 80, "protocol": "ICMP"},
    {"containerPort": 80, "name": "HTTP"}, {"containerPort": 80, "name": "a--b"},
    {"containerPort": 80, "name": "8080"}, {"containerPort": 80, "name": "x" * 16},
])
def test_bad_container_ports(port: dict[str, Any]) -> None:
    obj = pod_json()
    obj["spec"]["containers"][0]["ports"] = [port]
    with pytest.raises(ModelError, match=r"Pod x/a: spec.containers\[0\].ports\[0\]"):
        parse_pod(obj)


def test_pod_bounds() -> None:
    ok = pod_json()
    ok["metadata"]["labels"] = {f"k{i}": "v" for i in range(300)}
    ok["spec"]["containers"] = [{"name": f"c{i}"} for i in range(300)]
    assert len(parse_pod(ok).labels) == 300, "more than any small fixed bound: valid is valid"
    half = model.MAX_POD_PORTS // 2 + 1
    for field, value in [
        ("labels", {f"k{i}": "v" for i in range(selector.MAX_LABELS + 1)}),
        ("containers", [{"name": "c"}] * (model.MAX_CONTAINERS + 1)),
        ("containers", [{"ports": [{"containerPort": 80}] * half}] * 2),
    ]:
        bad = pod_json()
        (bad["metadata"] if field == "labels" else bad["spec"])[field] = value
        with pytest.raises(ModelError, match="more than"):
            parse_pod(bad)


@pytest.mark.parametrize("key, ok", [
    ("app", True), ("a" * 63, True), ("a" * 64, False), ("example.com/app", True),
    ("a" * 253 + "/app", True), ("a" * 254 + "/app", False), ("/app", False),
    ("a/b/c", False), ("Ex.com/app", False), ("app.", False), ("a_b.c-d", True), ("", False),
])
def test_label_keys(key: str, ok: bool) -> None:
    obj = {"metadata": {"namespace": "x", "name": "a", "labels": {key: "v"}}}
    if ok:
        assert key in parse_pod(obj).labels
    else:
        with pytest.raises(ModelError):
            parse_pod(obj)


@pytest.mark.parametrize("value, ok", [
    ("", True), ("v" * 63, True), ("v" * 64, False), ("A.b_c-D", True), ("-v", False),
    ("v v", False), ("é", False),
])
def test_label_values(value: str, ok: bool) -> None:
    obj = {"metadata": {"namespace": "x", "name": "a", "labels": {"k": value}}}
    if ok:
        assert parse_pod(obj).labels["k"] == value
    else:
        with pytest.raises(ModelError):
            parse_pod(obj)


# -- namespaces ------------------------------------------------------------------------------


def test_namespace_always_has_its_name_label() -> None:
    ns = parse_namespace({"metadata": {"name": "y", "labels": {"ns": "y"}}})
    assert ns.labels == {"ns": "y", "kubernetes.io/metadata.name": "y"}
    forged = parse_namespace({"metadata": {"name": "y",
                                           "labels": {"kubernetes.io/metadata.name": "z"}}})
    assert forged.labels["kubernetes.io/metadata.name"] == "y"
    with pytest.raises(ModelError, match="Namespace"):
        parse_namespace({"metadata": {"name": "a.b"}})


# -- policies --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, types", [
    ({}, {"Ingress"}),
    ({"ingress": [{}]}, {"Ingress"}),
    ({"egress": [{}]}, {"Ingress", "Egress"}),
    ({"egress": []}, {"Ingress"}),  # the API server defaults on len(egress) > 0
    ({"egress": [{}], "policyTypes": []}, {"Ingress", "Egress"}),
    ({"egress": [{}], "policyTypes": ["Ingress"]}, {"Ingress"}),
    ({"policyTypes": ["Egress"]}, {"Egress"}),
])
def test_policy_types_default(spec: dict[str, Any], types: set[str]) -> None:
    assert parse_policy(policy_json(spec)).types == types


def test_policy_rules_and_peers() -> None:
    policy = parse_policy(policy_json({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [
            {},
            {"from": [{"podSelector": {}},
                      {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                      {"podSelector": {"matchLabels": {"pod": "b"}}, "namespaceSelector": {}},
                      {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                      {"ipBlock": {"cidr": "fd00::/8"}}],
             "ports": [{}, {"port": 80}, {"port": "http", "protocol": "UDP"},
                       {"port": 8000, "endPort": 8080, "protocol": "SCTP"}]}],
    }))
    assert policy.egress is None and policy.pod_selector.matches({"pod": "a"})
    assert policy.ingress is not None and policy.ingress[0].peers == () \
        and policy.ingress[0].ports == ()
    peers, ports = policy.ingress[1].peers, policy.ingress[1].ports
    assert peers[0] == PodPeer(Selector(), None)
    assert peers[1] == PodPeer(None, Selector(Labels({"ns": "y"})))
    assert peers[2] == PodPeer(Selector(Labels({"pod": "b"})), Selector())
    assert peers[3] == IPBlockPeer(IPv4Network("10.0.0.0/8"), (IPv4Network("10.1.0.0/16"),))
    assert isinstance(peers[4], IPBlockPeer) and peers[4].cidr == IPv6Network("fd00::/8")
    assert peers[4].ipv4() is None
    assert ports == (PortSpec("tcp"), PortSpec("tcp", 80), PortSpec("udp", "http"),
                     PortSpec("sctp", 8000, 8080))


def test_ipblock_host_bits_are_tolerated() -> None:
    policy = parse_policy(policy_json({"ingress": [{"from": [{"ipBlock":
                                                              {"cidr": "10.0.0.1/24"}}]}]}))
    assert policy.ingress is not None
    assert policy.ingress[0].peers[0] == IPBlockPeer(IPv4Network("10.0.0.0/24"))


@pytest.mark.parametrize("spec, field", [
    ({"podSelector": []}, "spec.podSelector"),
    ({"ingress": {}}, "spec.ingress"),
    ({"ingress": [{"from": [{}]}]}, r"spec.ingress\[0\].from\[0\]"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     r"from\[0\]"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0"}}]}]}, r"to\[0\].ipBlock.cidr"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}, "ipBlock.cidr"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}}]}]},
     "ipBlock.except"),
    ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "protocol"),
    ({"ingress": [{"ports": [{"port": 0}]}]}, "port"),
    ({"ingress": [{"ports": [{"port": "80"}]}]}, "port"),
    ({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}, "endPort"),
    ({"ingress": [{"ports": [{"endPort": 90}]}]}, "endPort"),
    ({"ingress": [{"ports": [{"port": 100, "endPort": 90}]}]}, "endPort"),
    ({"ingress": [{"ports": [{"port": 100, "endPort": 65536}]}]}, "endPort"),
    ({"policyTypes": ["ingress"]}, "policyTypes"),
    ({"ingress": [{}] * (model.MAX_RULES + 1)}, "spec.ingress"),
    ({"ingress": [{"from": [{"podSelector": {}}] * (model.MAX_PEERS + 1)}]}, "from"),
    ({"ingress": [{"ports": [{}] * (model.MAX_PORTS + 1)}]}, "ports"),
])
def test_policy_garbage_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ModelError, match=f"NetworkPolicy x/p: .*{field}"):
        parse_policy(policy_json(spec))


# -- selectors -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, labels, want", [
    ({}, {}, True),
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchLabels": {"a": ""}}, {}, False),
    ({"matchLabels": {"a": ""}}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
     {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
     {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": []}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
    ({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]},
     {"a": "1"}, False),
])
def test_selector_matches(raw: dict[str, Any], labels: dict[str, str], want: bool) -> None:
    assert parse_selector(raw, "test").matches(labels) is want


@pytest.mark.parametrize("expr", [
    {"key": "a", "operator": "In"}, {"key": "a", "operator": "NotIn", "values": []},
    {"key": "a", "operator": "Exists", "values": ["1"]},
    {"key": "a", "operator": "DoesNotExist", "values": ["1"]},
    {"key": "a", "operator": "Gt", "values": ["1"]}, {"operator": "Exists"},
    {"key": "a", "operator": "In", "values": ["bad value"]},
    {"key": "a", "operator": "In", "values": ["v"] * (selector.MAX_VALUES + 1)},
])
def test_bad_expressions(expr: dict[str, Any]) -> None:
    with pytest.raises(ModelError, match=r"sel.matchExpressions\[0\]"):
        parse_selector({"matchExpressions": [expr]}, "sel")


def test_equal_selectors_are_equal_values() -> None:
    one = parse_selector({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "k", "operator": "In", "values": ["y", "x", "x"]},
        {"key": "e", "operator": "Exists"}]}, "s")
    two = parse_selector({"matchLabels": {"a": "1", "b": "2"}, "matchExpressions": [
        {"key": "e", "operator": "Exists"},
        {"key": "k", "operator": "In", "values": ["x", "y"]}]}, "s")
    assert one == two and hash(one) == hash(two) and repr(one) == repr(two)
    assert one.match_expressions[1] == Requirement("k", "In", ("x", "y"))
    assert Selector().is_empty and not one.is_empty


# -- hostile input ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True)
    | st.text(max_size=20) | st.sampled_from(["TCP", "In", "Exists", "10.0.0.1", "10.0.0.0/8",
                                              "fd00::/8", "Ingress", "Egress", "x", "a"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["metadata", "spec", "status", "name", "namespace", "labels",
                         "podSelector", "namespaceSelector", "ipBlock", "cidr", "except",
                         "ingress", "egress", "from", "to", "ports", "port", "endPort",
                         "protocol", "policyTypes", "matchLabels", "matchExpressions", "key",
                         "operator", "values", "containers", "containerPort", "podIP",
                         "podIPs", "ip", "hostNetwork", "phase"]) | st.text(max_size=5),
        inner, max_size=5),
    max_leaves=30)

PARSERS = [parse_pod, parse_namespace, parse_policy]
VALID = [pod_json(), {"metadata": {"name": "x", "labels": {"ns": "x"}}}, policy_json({
    "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a"]}]},
    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                           "podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8",
                                                            "except": ["10.1.0.0/16"]}}],
                 "ports": [{"port": 80, "endPort": 90}, {"port": "http"}]}],
    "egress": [{"to": [{"podSelector": {}}]}], "policyTypes": ["Ingress", "Egress"]})]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from(range(3)))
def test_garbage_raises_only_model_error(value: object, which: int) -> None:
    try:
        PARSERS[which](value)
    except ModelError:
        pass


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(3)), st.data())
def test_mutated_objects_raise_only_model_error(which: int, data: st.DataObject) -> None:
    """Replace one node deep inside a valid object with garbage (reaches the inner parsers)."""
    obj = copy.deepcopy(VALID[which])
    path = data.draw(st.sampled_from(_paths(obj)[1:]))
    parent: Any = obj
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = data.draw(json_values)
    try:
        PARSERS[which](obj)
    except ModelError:
        pass


def test_a_valid_policy_with_many_values_is_not_refused() -> None:
    """A refused policy becomes a deny-all of its namespace: the bounds must sit above what
    the API admits, not at a guess (300 values, 300 excepts)."""
    spec = {"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": [f"v{i}" for i in range(300)]}]},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [
            f"10.{i // 256}.{i % 256}.0/24" for i in range(300)]}}]}]}
    assert parse_policy(policy_json(spec)).name == "p"
