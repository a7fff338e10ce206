"""The policy compiler against the API's semantics.

Conformance cases are modelled on the upstream e2e names (``K:test/e2e/network/netpol``, NPxx
of docs reliability-scenarios §2.1) over the upstream matrix: namespaces x, y, z labelled
``ns=<n>``, pods a, b, c labelled ``pod=<p>``, each serving ports 80 and 81 over TCP, UDP and
SCTP as ``serve-<port>-<proto>``, plus one external address. Every case checks the compiled
ruleset (through ``ir.allows``) against the independent evaluator in ``npc_reference`` on every
(source, destination, port, protocol) tuple, and against the outcome the case expects. A
property test does the same on random small clusters and policies from the cyclonus families.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from npc_reference import reference_allows

from weave_cli.npc import ir
from weave_cli.npc.compile import compile_policies
from weave_cli.npc.model import Namespace, Pod, Policy, parse_namespace, parse_pod, parse_policy

NAMESPACES, PODS, PORTS = "xyz", "abc", (80, 81)
EXTERNAL = IPv4Address("192.168.9.9")
Endpoint = tuple[str, IPv4Address]  # ("x/a" or "ext", address)
Tuple = tuple[str, str, int, ir.Protocol]


def pod_ip(ns: str, pod: str) -> IPv4Address:
    return IPv4Address(f"10.0.{'wxyz'.index(ns)}.{PODS.index(pod) + 1}")


def make_pod(ns: str, name: str, labels: dict[str, str] | None = None,
             ports: Iterable[tuple[str, str, int]] | None = None,
             ip: IPv4Address | None | Literal["matrix"] = "matrix", **spec: Any) -> Pod:
    """A pod serving ``ports`` (default: 80 and 81 over every protocol, named as upstream)
    at ``ip`` (default: its place in the matrix)."""
    if ports is None:
        ports = [(f"serve-{p}-{proto.lower()}", proto, p) for p in PORTS
                 for proto in ("TCP", "UDP", "SCTP")]
    return parse_pod({
        "metadata": {"namespace": ns, "name": name, "uid": f"uid-{ns}-{name}",
                     "labels": {"pod": name} if labels is None else labels},
        "spec": {"nodeName": "n1", **spec, "containers": [{"name": "c", "ports": [
            {"name": n, "protocol": proto, "containerPort": p} for n, proto, p in ports]}]},
        "status": {"phase": "Running", "podIP": None if ip is None else
                   str(pod_ip(ns, name) if ip == "matrix" else ip)}})


def make_namespace(name: str, **labels: str) -> Namespace:
    return parse_namespace({"metadata": {"name": name, "labels": {"ns": name, **labels}}})


def make_policy(ns: str, name: str, **spec: Any) -> Policy:
    return parse_policy({"metadata": {"namespace": ns, "name": name}, "spec": spec})


MATRIX_PODS = [make_pod(ns, p) for ns in NAMESPACES for p in PODS]
MATRIX_NAMESPACES = [make_namespace(ns) for ns in NAMESPACES]


def endpoints(pods: Iterable[Pod]) -> list[Endpoint]:
    found = [(f"{p.namespace}/{p.name}", p.ip) for p in pods if p.ip is not None]
    return [*found, ("ext", EXTERNAL), ("stray", IPv4Address("10.0.1.99"))]


def table(policies: list[Policy], pods: list[Pod] | None = None,
          namespaces: list[Namespace] | None = None) -> dict[Tuple, bool]:
    """Compile, check the invariants, and return the compiled verdict on every tuple after
    checking that the reference evaluator agrees on each."""
    pods = MATRIX_PODS if pods is None else pods
    namespaces = MATRIX_NAMESPACES if namespaces is None else namespaces
    rs = compile_policies(pods, namespaces, policies)
    rs.check()
    verdicts: dict[Tuple, bool] = {}
    for src, src_ip in endpoints(pods):
        for dst, dst_ip in endpoints(pods):
            for port in PORTS:
                for proto in ir.PROTOCOLS:
                    got = ir.allows(rs, src_ip, dst_ip, proto, port)
                    want = reference_allows(pods, namespaces, policies, src_ip, dst_ip, proto,
                                            port)
                    assert got == want, (src, dst, port, proto, got, want)
                    verdicts[src, dst, port, proto] = got
    return verdicts


def expect(verdicts: dict[Tuple, bool],
           allowed: Callable[[str, str, int, str], bool]) -> None:
    wrong = sorted(k for k, v in verdicts.items() if allowed(*k) != v)
    assert not wrong, f"{len(wrong)} unexpected verdicts, e.g. {wrong[:5]}"


def ns_of(endpoint: str) -> str:
    return endpoint.split("/")[0]


ALL: dict[str, Any] = {}  # podSelector: {}
A: dict[str, Any] = {"matchLabels": {"pod": "a"}}


# -- conformance cases -----------------------------------------------------------------------


def test_no_policies_allow_everything() -> None:
    expect(table([]), lambda s, d, port, proto: True)


def test_default_deny_ingress_np01() -> None:
    v = table([make_policy("x", "deny", podSelector=ALL, policyTypes=["Ingress"])])
    expect(v, lambda s, d, port, proto: ns_of(d) != "x")


def test_default_deny_all_np02() -> None:
    v = table([make_policy("x", "deny", podSelector=ALL, policyTypes=["Ingress", "Egress"])])
    expect(v, lambda s, d, port, proto: "x" not in (ns_of(s), ns_of(d)))


def test_allow_from_pods_by_label_in_same_namespace_np03() -> None:
    v = table([make_policy("x", "p", podSelector=A,
                           ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or s == "x/b")


def test_allow_from_namespace_by_label_np06() -> None:
    by_label = [make_policy("x", "p", podSelector=A, ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}])]
    by_default_label = [make_policy("x", "p", podSelector=A, ingress=[{"from": [
        {"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["y"]}]}}]}])]
    for policies in (by_label, by_default_label):
        expect(table(policies), lambda s, d, port, proto: d != "x/a" or ns_of(s) == "y")


def test_allow_from_all_namespaces_np05_but_not_outside() -> None:
    v = table([make_policy("x", "p", podSelector=A,
                           ingress=[{"from": [{"namespaceSelector": {}}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or s not in ("ext", "stray"))


def test_deny_from_other_namespaces_np19() -> None:
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"from": [{"podSelector": {}}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or ns_of(s) == "x")


def test_two_peers_are_ored_np07_one_peer_is_anded_np08() -> None:
    pod_b = {"podSelector": {"matchLabels": {"pod": "b"}}}
    ns_y = {"namespaceSelector": {"matchLabels": {"ns": "y"}}}
    v = table([make_policy("x", "or", podSelector=A, ingress=[{"from": [pod_b, ns_y]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or s == "x/b" or ns_of(s) == "y")
    v = table([make_policy("x", "and", podSelector=A, ingress=[{"from": [{**pod_b, **ns_y}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or s == "y/b")


def test_named_port_np13() -> None:
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"ports": [
        {"port": "serve-81-tcp"}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or (port, proto) == (81, "tcp"))


def test_named_port_with_the_wrong_protocol_matches_nothing() -> None:
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"ports": [
        {"port": "serve-81-tcp", "protocol": "UDP"}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a")


def test_named_port_no_pod_serves_is_not_fatal_weave3790() -> None:
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"ports": [
        {"port": "nosuch"}, {"port": 80}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or (port, proto) == (80, "tcp"))


def test_egress_named_port_np15_resolves_on_the_peer() -> None:
    v = table([make_policy("x", "p", podSelector=A, policyTypes=["Egress"], egress=[
        {"ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}])])
    pods_only = ("ext", "stray")
    expect(v, lambda s, d, port, proto: s != "x/a" or (
        d not in pods_only and (port, proto) == (80, "udp")))


def test_port_range_end_port() -> None:
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"ports": [
        {"port": 81, "endPort": 90, "protocol": "UDP"}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or (port, proto) == (81, "udp"))


def test_sctp_is_not_tcp_np31_and_any_port_of_a_protocol_np26() -> None:
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"ports": [
        {"port": 80, "protocol": "SCTP"}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or (port, proto) == (80, "sctp"))
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"ports": [{"protocol": "UDP"}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or proto == "udp")


def test_ipblock_with_except_np29_np30() -> None:
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"from": [{"ipBlock": {
        "cidr": "10.0.0.0/16", "except": ["10.0.2.0/24"]}}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or (s != "ext" and ns_of(s) != "y"))
    v = table([make_policy("x", "p", podSelector=A, policyTypes=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": f"{pod_ip('y', 'b')}/32"}}]}])])
    expect(v, lambda s, d, port, proto: s != "x/a" or d == "y/b")


def test_ipv6_ipblock_matches_nothing_but_keeps_the_rest_of_the_policy() -> None:
    v = table([make_policy("x", "p", podSelector=A, ingress=[{"from": [
        {"ipBlock": {"cidr": "::/0"}}, {"podSelector": {"matchLabels": {"pod": "c"}}}]}])])
    expect(v, lambda s, d, port, proto: d != "x/a" or s == "x/c")


def test_egress_ipblock_peer_matches_a_named_port_its_pods_serve() -> None:
    v = table([make_policy("x", "p", podSelector=A, policyTypes=["Egress"], egress=[{
        "to": [{"ipBlock": {"cidr": "10.0.2.0/24"}},
               {"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
        "ports": [{"port": "serve-80-tcp"}, {"port": 81}]}])])
    expect(v, lambda s, d, port, proto: s != "x/a" or (proto == "tcp" and (
        (ns_of(d) == "y" and port in (80, 81)) or ns_of(d) == "z")))


def test_egress_not_in_by_default_namespace_label_np33() -> None:
    v = table([make_policy("x", "p", podSelector=A, policyTypes=["Egress"], egress=[{"to": [
        {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                                     "operator": "NotIn", "values": ["y"]}]}}]}])])
    expect(v, lambda s, d, port, proto: s != "x/a" or ns_of(d) in ("x", "z"))


def test_ingress_and_egress_together_np23_pod_expressions() -> None:
    v = table([make_policy("x", "p", podSelector={"matchExpressions": [
        {"key": "pod", "operator": "NotIn", "values": ["b", "c"]}]},
        ingress=[{"from": [{"podSelector": {"matchExpressions": [
            {"key": "pod", "operator": "In", "values": ["b"]}]}}]}],
        egress=[{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                         "podSelector": {"matchExpressions": [
                             {"key": "tier", "operator": "DoesNotExist"}]}}]}])])
    expect(v, lambda s, d, port, proto: (d != "x/a" or s == "x/b")
           and (s != "x/a" or ns_of(d) == "y"))


def test_egress_deny_all_np22() -> None:
    v = table([make_policy("x", "p", podSelector=ALL, policyTypes=["Egress"])])
    expect(v, lambda s, d, port, proto: ns_of(s) != "x")


def test_egress_to_a_port_only() -> None:
    v = table([make_policy("x", "p", podSelector=A, egress=[
        {"ports": [{"port": 80, "protocol": "UDP"}]}])])  # types default to Ingress, Egress
    expect(v, lambda s, d, port, proto: d != "x/a" and (s != "x/a" or (port, proto) == (80, "udp")))


def test_deny_all_plus_allow_all_np27() -> None:
    v = table([make_policy("x", "deny", podSelector=ALL, policyTypes=["Ingress", "Egress"]),
               make_policy("x", "allow", podSelector=ALL, ingress=[{}], egress=[{}])])
    expect(v, lambda s, d, port, proto: True)


def test_egress_only_types_do_not_isolate_ingress() -> None:
    v = table([make_policy("x", "p", podSelector=ALL, policyTypes=["Egress"],
                           ingress=[], egress=[{"to": [{"podSelector": {}}]}])])
    expect(v, lambda s, d, port, proto: ns_of(s) != "x" or ns_of(d) == "x")


def test_multiple_policies_union_np11() -> None:
    v = table([
        make_policy("x", "from-y-81", podSelector=A, ingress=[{
            "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
            "ports": [{"port": 81}]}]),
        make_policy("x", "from-z-80", podSelector=A, ingress=[{
            "from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}],
            "ports": [{"port": 80}]}]),
    ])
    expect(v, lambda s, d, port, proto: d != "x/a" or (proto == "tcp" and (
        (ns_of(s), port) in (("y", 81), ("z", 80)))))


def test_egress_denied_on_client_even_if_server_allows_np24() -> None:
    v = table([make_policy("x", "deny-out", podSelector=A, policyTypes=["Egress"]),
               make_policy("y", "allow-in", podSelector=ALL, ingress=[{}])])
    expect(v, lambda s, d, port, proto: s != "x/a")


def test_unknown_namespace_only_matches_an_empty_namespace_selector() -> None:
    pods = [*MATRIX_PODS, make_pod("w", "a")]
    for selector, w_allowed in (({}, True), ({"matchLabels": {"ns": "w"}}, False), (
            {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["y"]}]}, False)):
        v = table([make_policy("x", "p", podSelector=A,
                               ingress=[{"from": [{"namespaceSelector": selector}]}])], pods)
        assert v["w/a", "x/a", 80, "tcp"] is w_allowed
    # Policies in an unknown namespace still isolate its pods.
    v = table([make_policy("w", "deny", podSelector=ALL)], pods)
    expect(v, lambda s, d, port, proto: d != "w/a")


def test_pods_without_address_take_no_part() -> None:
    pods = [*MATRIX_PODS, make_pod("x", "d", {"pod": "b"}, ip=None),
            make_pod("x", "e", {"pod": "b"}, ip=IPv4Address("10.9.0.1"), hostNetwork=True)]
    rs = compile_policies(pods, MATRIX_NAMESPACES, [make_policy("x", "p", podSelector=ALL)])
    assert rs.sets[ir.KNOWN] == {p.ip for p in MATRIX_PODS}
    assert rs.sets[ir.INGRESS_ISOLATED] == {p.ip for p in MATRIX_PODS if p.namespace == "x"}


# -- shape of the compiled rules -------------------------------------------------------------


def test_rule_shape_and_set_sharing() -> None:
    peer_b = {"podSelector": {"matchLabels": {"pod": "b"}}}
    rs = compile_policies(MATRIX_PODS, MATRIX_NAMESPACES, [
        make_policy("x", "one", podSelector=A, ingress=[{
            "from": [peer_b, {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                     {"ipBlock": {"cidr": "192.168.0.0/16"}}],
            "ports": [{"port": 80}, {"port": "serve-81-tcp"}]}]),
        make_policy("x", "two", podSelector={"matchExpressions": [
            {"key": "pod", "operator": "In", "values": ["a"]}]}, ingress=[{"from": [peer_b]}]),
    ])
    rs.check()
    assert [r.comment for r in rs.ingress] == [
        "x/one ingress 0 pods port 0", "x/one ingress 0 pods port 1",
        "x/one ingress 0 peer 2 port 0", "x/one ingress 0 peer 2 port 1",
        "x/two ingress 0 pods any port"]
    assert len({r.targets for r in rs.ingress}) == 1  # equal selections share one set
    assert rs.sets[rs.ingress[0].targets] == {pod_ip("x", "a")}
    assert rs.sets[rs.ingress[4].peer_set or ""] == {pod_ip("x", "b")}
    assert rs.endpoint_sets[rs.ingress[1].named_set or ""] == {
        (p.ip, 81) for p in MATRIX_PODS}
    assert set(rs.sets) == {ir.KNOWN, ir.INGRESS_ISOLATED, ir.EGRESS_ISOLATED,
                            *(r.targets for r in rs.ingress),
                            *(r.peer_set for r in rs.ingress if r.peer_set)}


def test_egress_ipblock_with_a_named_port_is_one_rule_on_both() -> None:
    rs = compile_policies(MATRIX_PODS, MATRIX_NAMESPACES, [make_policy(
        "x", "p", podSelector=A, policyTypes=["Egress"], egress=[{
            "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            "ports": [{"port": "serve-80-tcp"}, {"port": 81}]}])])
    assert [r.comment for r in rs.egress] == ["x/p egress 0 peer 0 port 0",
                                              "x/p egress 0 peer 0 port 1"]
    named = rs.egress[0]
    assert named.peer_block is not None and named.named_set in rs.endpoint_sets


def test_long_names_make_valid_distinct_comments() -> None:
    long = "n" * 250
    policies = [make_policy("x" * 63, f"{long}{i}", podSelector=ALL, ingress=[{}])
                for i in range(2)]
    pods = [make_pod("x" * 63, "a", ip=IPv4Address("10.0.0.1"))]
    rs = compile_policies(pods, [], policies)
    rs.check()
    assert len({r.comment for r in rs.ingress}) == 2
    assert all(len(r.comment) <= 100 for r in rs.ingress)


def test_compile_scales() -> None:
    """~5000 pods in 50 namespaces and 500 policies of mixed kinds compile in seconds."""
    pods = [make_pod(f"ns{n}", f"p{i}", {"app": f"app{i % 20}", "tier": f"t{i % 3}"},
                     ports=[("http", "TCP", 8080)], ip=IPv4Address(0x0A000000 + 100 * n + i))
            for n in range(50) for i in range(100)]
    namespaces = [make_namespace(f"ns{n}", team=f"t{n % 5}") for n in range(50)]
    policies = [make_policy(f"ns{k % 50}", f"pol{k}",
                            podSelector={"matchLabels": {"app": f"app{k % 20}"}},
                            ingress=[{"from": [
                                {"namespaceSelector": {"matchLabels": {"team": f"t{k % 5}"}},
                                 "podSelector": {"matchLabels": {"tier": f"t{k % 3}"}}},
                                {"podSelector": {}}], "ports": [{"port": "http"}]}],
                            egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}])
                for k in range(500)]
    start = time.perf_counter()
    rs = compile_policies(pods, namespaces, policies)
    elapsed = time.perf_counter() - start
    rs.check()
    assert len(rs.ingress) == 500 and len(rs.egress) == 500
    assert elapsed < 10, elapsed


# -- random clusters against the reference ---------------------------------------------------

POD_LABELS = (["pod", "tier"], ["a", "b", "c", "web"])
NAMESPACE_LABELS = (["ns", "tier", "kubernetes.io/metadata.name"], ["x", "y", "z", "w", "web"])


def selectors(labels: tuple[list[str], list[str]]) -> st.SearchStrategy[dict[str, Any]]:
    keys, values = st.sampled_from(labels[0]), st.sampled_from(labels[1])
    expression = st.one_of(
        st.fixed_dictionaries({"key": keys, "operator": st.sampled_from(["In", "NotIn"]),
                               "values": st.lists(values, min_size=1, max_size=2)}),
        st.fixed_dictionaries({"key": keys,
                               "operator": st.sampled_from(["Exists", "DoesNotExist"])}))
    return st.fixed_dictionaries({}, optional={
        "matchLabels": st.dictionaries(keys, values, max_size=1),
        "matchExpressions": st.lists(expression, max_size=2)})


CIDRS = ["10.0.0.0/16", "10.0.1.0/24", "10.0.2.2/32", "0.0.0.0/0", "192.168.0.0/16",
         "fd00::/8"]
peers = st.one_of(
    st.fixed_dictionaries({"podSelector": selectors(POD_LABELS)}),
    st.fixed_dictionaries({"namespaceSelector": selectors(NAMESPACE_LABELS)}),
    st.fixed_dictionaries({"podSelector": selectors(POD_LABELS),
                           "namespaceSelector": selectors(NAMESPACE_LABELS)}),
    st.fixed_dictionaries({"ipBlock": st.fixed_dictionaries(
        {"cidr": st.sampled_from(CIDRS[:5])},
        optional={"except": st.lists(st.sampled_from(["10.0.1.0/24", "10.0.2.0/24",
                                                      "10.0.1.2/32"]), max_size=2)})}),
    st.just({"ipBlock": {"cidr": "fd00::/8"}}))
protocols = st.sampled_from(["TCP", "UDP", "SCTP"])
ports = st.one_of(
    st.fixed_dictionaries({}, optional={"protocol": protocols}),
    st.fixed_dictionaries({"port": st.sampled_from([80, 81])}, optional={"protocol": protocols}),
    st.fixed_dictionaries({"port": st.just(80), "endPort": st.sampled_from([80, 81, 90])},
                          optional={"protocol": protocols}),
    st.sampled_from([{"port": "serve-80-tcp"}, {"port": "serve-81-udp", "protocol": "UDP"},
                     {"port": "http"}, {"port": "http", "protocol": "UDP"},
                     {"port": "http", "protocol": "SCTP"}, {"port": "serve-81-udp"}]))
# Named ports pods serve: mostly as named, sometimes not (the name is only a name).
SERVED = [("serve-80-tcp", "TCP", 80), ("serve-81-udp", "UDP", 81), ("http", "TCP", 80),
          ("http", "UDP", 81), ("http", "SCTP", 80), ("serve-80-tcp", "UDP", 81)]


@st.composite
def rules(draw: st.DrawFn, peer_field: str) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if draw(st.sampled_from([True, True, True, False])):  # mostly not "every peer"
        rule[peer_field] = draw(st.lists(peers, min_size=1, max_size=3))
    if draw(st.booleans()):
        rule["ports"] = draw(st.lists(ports, min_size=1, max_size=2))
    return rule


@st.composite
def policy_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": draw(st.one_of(
        st.just({}), st.builds(lambda p: {"matchLabels": {"pod": p}}, st.sampled_from(PODS)),
        selectors(POD_LABELS)))}
    types = draw(st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    if types is not None:
        spec["policyTypes"] = types
    for field, peer_field in (("ingress", "from"), ("egress", "to")):
        if draw(st.sampled_from([True, True, True, False])):
            spec[field] = draw(st.lists(rules(peer_field), min_size=1, max_size=3))
    return spec


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[Pod], list[Namespace], list[Policy]]:
    namespaces = [make_namespace(n, **draw(st.dictionaries(st.just("tier"), st.just("web"))))
                  for n in sorted(draw(st.sets(st.sampled_from(NAMESPACES))))]
    pods = []
    for ns in NAMESPACES:
        for name in [p for p in PODS if draw(st.sampled_from([True, True, True, False]))]:
            labels = {"pod": name, **draw(st.dictionaries(st.just("tier"),
                                                          st.sampled_from(["web", "a"])))}
            served = draw(st.lists(st.sampled_from(SERVED), max_size=3,
                                   unique_by=lambda t: t[0]))
            pods.append(make_pod(ns, name, labels, served,
                                 ip=draw(st.sampled_from(["matrix"] * 9 + [None]))))
    policies = [make_policy(draw(st.sampled_from(NAMESPACES)), f"p{i}", **spec)
                for i, spec in enumerate(draw(st.lists(policy_specs(), min_size=1, max_size=5)))]
    return pods, namespaces, policies


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_compiled_rules_agree_with_the_reference(
        cluster: tuple[list[Pod], list[Namespace], list[Policy]]) -> None:
    pods, namespaces, policies = cluster
    table(policies, pods, namespaces)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), st.randoms(use_true_random=False))
def test_compile_is_deterministic_under_permutation(
        cluster: tuple[list[Pod], list[Namespace], list[Policy]], rnd: Any) -> None:
    pods, namespaces, policies = cluster
    first = compile_policies(pods, namespaces, policies)
    for items in (pods, namespaces, policies):
        rnd.shuffle(items)
    again = compile_policies(iter(pods), iter(namespaces), iter(policies))
    assert again == first
    assert list(again.sets) == list(first.sets)
    first.check()


@pytest.mark.parametrize("count", [0, 1, 3])
def test_duplicate_policies_are_harmless(count: int) -> None:
    policy = make_policy("x", "p", podSelector=A, ingress=[{"from": [{"podSelector": {}}]}])
    expect(table([policy] * count), lambda s, d, port, proto: count == 0 or d != "x/a"
           or ns_of(s) == "x")
