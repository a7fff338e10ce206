"""The policy tables in a real kernel, behind kube-proxy-style Services (S24, the S25 basics).

One node namespace holds the ``weave`` bridge with three pod ports (``vethwepl*``, hairpin on
as the CNI plugin sets it), pods ``a`` and ``c`` in namespace ``prod`` and ``b`` in ``dev``,
and an underlay veth to ``ext``, a host outside the cluster. A ``table ip kptest`` made by the
test does what kube-proxy's iptables mode does: a ClusterIP 10.96.0.10:80 and a NodePort
198.18.5.1:30080 DNAT to ``a``:8080 and are masqueraded (the harshest case: after the
masquerade the packet comes from the node, which policy must not mistake for the node's own
traffic, weave#3285). Policies go through the real parser, compiler and renderer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from k8s.probes import CLIENT, SERVER, UDP_ASK, UDP_ECHO
from netutil import in_ns, ns_path, run

from weave_cli.npc import compile as npc_compile
from weave_cli.npc import kernel, model, nftables

pytestmark = pytest.mark.lab
Make = Callable[[str], str]
PODS = {"a": ("10.32.0.2", "prod", "web"), "b": ("10.32.0.3", "dev", "client"),
        "c": ("10.32.0.4", "prod", "web")}
NODE_IP, EXT_IP, BRIDGE_IP = "198.18.5.1", "198.18.5.2", "10.32.0.1"
CLUSTER_IP = "10.96.0.10"

KUBE_PROXY = f"""table ip kptest {{
  chain pre {{ type nat hook prerouting priority -100;
    ip daddr {CLUSTER_IP} tcp dport 80 meta mark set mark | 0x4000 dnat to 10.32.0.2:8080;
    ip daddr {NODE_IP} tcp dport 30080 meta mark set mark | 0x4000 dnat to 10.32.0.2:8080; }}
  chain out {{ type nat hook output priority -100;
    ip daddr {CLUSTER_IP} tcp dport 80 dnat to 10.32.0.2:8080; }}
  chain post {{ type nat hook postrouting priority 100;
    meta mark & 0x4000 == 0x4000 masquerade; }}
}}
"""


def _node(make_ns: Make, procs: list[subprocess.Popen[str]]) -> dict[str, str]:
    names = {tag: make_ns(tag) for tag in ("node", "a", "b", "c", "ext")}
    node = names["node"]
    run("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
        "netns", names["ext"])
    for cmd in ("ip link add weave type bridge", f"ip addr add {BRIDGE_IP}/12 dev weave",
                "ip link set weave up", f"ip addr add {NODE_IP}/24 dev eth0",
                "ip link set eth0 up", "ip route add 10.96.0.0/12 dev eth0",
                "sysctl -qw net.ipv4.ip_forward=1"):
        in_ns(node, *cmd.split())
    in_ns(names["ext"], "ip", "addr", "add", f"{EXT_IP}/24", "dev", "eth0")
    in_ns(names["ext"], "ip", "link", "set", "eth0", "up")
    for pod, (ip, _, _) in PODS.items():
        port = f"vethwepl{pod}"
        run("ip", "-n", node, "link", "add", port, "type", "veth", "peer", "name", "ethwe",
            "netns", names[pod])
        in_ns(node, "ip", "link", "set", port, "master", "weave", "up")
        in_ns(node, "ip", "link", "set", port, "type", "bridge_slave", "hairpin", "on")
        in_ns(names[pod], "ip", "addr", "add", f"{ip}/12", "dev", "ethwe")
        in_ns(names[pod], "ip", "link", "set", "ethwe", "up")
        in_ns(names[pod], "ip", "route", "add", "default", "via", BRIDGE_IP)
        proc = subprocess.Popen(["nsenter", f"--net={ns_path(names[pod])}", "--",
                                 sys.executable, "-c", SERVER, "8080"],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    run("nsenter", f"--net={ns_path(node)}", "--", "nft", "-f", "-", input=KUBE_PROXY)
    return names


def probe(ns: str, *targets: str) -> dict[str, str]:
    out = in_ns(ns, sys.executable, "-c", CLIENT, *targets).stdout
    result: dict[str, str] = json.loads(out)
    return result


def _apply(names: dict[str, str], policies: list[dict[str, object]]) -> nftables.TableState:
    pods = [model.parse_pod({
        "metadata": {"namespace": ns, "name": pod, "uid": pod, "labels": {"app": app}},
        "spec": {"nodeName": "node", "containers": [
            {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip}}) for pod, (ip, ns, app) in PODS.items()]
    namespaces = [model.parse_namespace({"metadata": {"name": n, "labels": {"team": n}}})
                  for n in ("prod", "dev")]
    rs = npc_compile.compile_policies(pods, namespaces, [model.parse_policy(p)
                                                         for p in policies])
    return kernel.apply(nftables.render(rs), ns_path(names["node"]))


def _policy(name: str, spec: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"namespace": "prod", "name": name}, "spec": spec}


DENY_ALL = _policy("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
FROM_DEV = _policy("from-dev", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
    {"from": [{"namespaceSelector": {"matchLabels": {"team": "dev"}}}],
     "ports": [{"port": "http"}]}]})
SERVICE = (f"{CLUSTER_IP}:80",)


def test_isolated_pod_is_closed_behind_its_services(make_ns: Make,
                                                   procs: list[subprocess.Popen[str]]) -> None:
    names = _node(make_ns, procs)
    a = "10.32.0.2:8080"
    # Open: every path reaches a (proves the Service plumbing before any policy).
    _apply(names, [])
    assert probe(names["b"], a, *SERVICE) == {a: "ok 10.32.0.3", SERVICE[0]: f"ok {BRIDGE_IP}"}
    assert probe(names["a"], *SERVICE)[SERVICE[0]].startswith("ok")  # hairpin
    assert probe(names["ext"], f"{NODE_IP}:30080")[f"{NODE_IP}:30080"].startswith("ok")

    _apply(names, [DENY_ALL])
    assert probe(names["b"], a, *SERVICE) == {a: "blocked", SERVICE[0]: "blocked"}
    assert probe(names["a"], *SERVICE) == {SERVICE[0]: "blocked"}, "hairpin to itself"
    assert probe(names["c"], a, *SERVICE) == {a: "blocked", SERVICE[0]: "blocked"}
    assert probe(names["ext"], f"{NODE_IP}:30080") == {f"{NODE_IP}:30080": "blocked"}
    # The node itself may reach its pods (the API's rule), directly and through the Service.
    seen = probe(names["node"], a, *SERVICE)
    assert seen[a] == f"ok {BRIDGE_IP}" and seen[SERVICE[0]].startswith("ok"), seen

    _apply(names, [DENY_ALL, FROM_DEV])
    assert probe(names["b"], a, *SERVICE) == {a: "ok 10.32.0.3", SERVICE[0]: f"ok {BRIDGE_IP}"}
    assert probe(names["a"], *SERVICE) == {SERVICE[0]: "blocked"}, "prod is not dev"
    assert probe(names["c"], a) == {a: "blocked"}
    assert probe(names["ext"], f"{NODE_IP}:30080") == {f"{NODE_IP}:30080": "blocked"}
    # Replies of admitted flows are not ingress: b is isolated too, yet b's flows complete.
    deny_dev = {"metadata": {"namespace": "dev", "name": "deny"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    _apply(names, [DENY_ALL, FROM_DEV, deny_dev])
    assert probe(names["b"], a, *SERVICE) == {a: "ok 10.32.0.3", SERVICE[0]: f"ok {BRIDGE_IP}"}
    assert probe(names["a"], "10.32.0.3:8080") == {"10.32.0.3:8080": "blocked"}


def test_unknown_pods_are_closed_and_tables_only_replaced(
        make_ns: Make, procs: list[subprocess.Popen[str]]) -> None:
    """S25's kernel half: before the first view no pod is known and every pod port is closed,
    to pods, from pods and from the node; a ruleset replaces the tables in one transaction
    and leaves foreign tables alone."""
    names = _node(make_ns, procs)
    node = ns_path(names["node"])
    assert kernel.read(node) is None
    closed = kernel.apply(nftables.render(nftables.closed()), node)
    assert closed.digests == {nftables.digest(nftables.closed())}
    a, b = "10.32.0.2:8080", "10.32.0.3:8080"
    assert probe(names["b"], a, *SERVICE) == {a: "blocked", SERVICE[0]: "blocked"}
    assert probe(names["node"], a) == {a: "blocked"}
    assert probe(names["ext"], f"{NODE_IP}:30080") == {f"{NODE_IP}:30080": "blocked"}
    applied = _apply(names, [])
    assert kernel.read(node) == applied and applied != closed
    assert probe(names["b"], a) == {a: "ok 10.32.0.3"}
    assert probe(names["a"], b) == {b: "ok 10.32.0.2"}
    # A pod the controller has not heard of (d, on a new port) is closed in both directions.
    d = make_ns("d")
    run("ip", "-n", names["node"], "link", "add", "vethwepld", "type", "veth", "peer", "name",
        "ethwe", "netns", d)
    in_ns(names["node"], "ip", "link", "set", "vethwepld", "master", "weave", "up")
    in_ns(d, "ip", "addr", "add", "10.32.0.9/12", "dev", "ethwe")
    in_ns(d, "ip", "link", "set", "ethwe", "up")
    assert probe(d, a) == {a: "blocked"}
    # d serves nothing: open, the node would get an RST; closed, it gets nothing.
    assert probe(names["node"], "10.32.0.9:8080") == {"10.32.0.9:8080": "blocked"}
    assert probe(names["node"], "10.32.0.2:8081") == {"10.32.0.2:8081": "refused"}
    in_ns(names["node"], "nft", "list", "table", "ip", "kptest")  # foreign table untouched
    # A rule deleted or added by hand changes what the controller reads back.
    in_ns(names["node"], "nft", "insert", "rule", "inet", "weave-npc", "forward", "accept")
    assert kernel.read(node) != applied and (kernel.read(node) or applied).digests
    assert kernel.remove(node) is True
    assert kernel.read(node) is None
    in_ns(names["node"], "nft", "list", "table", "ip", "kptest")


def _link_local(ns: str) -> str:
    for _ in range(50):
        out = in_ns(ns, "ip", "-6", "-o", "addr", "show", "dev", "ethwe", "scope", "link").stdout
        if out and "tentative" not in out:
            return out.split()[3].split("/")[0] + "%ethwe"
        time.sleep(0.1)
    raise AssertionError(f"no link-local address in {ns}: {out}")


def test_no_way_around_the_policy_below_ipv4(make_ns: Make,
                                             procs: list[subprocess.Popen[str]]) -> None:
    """What br_netfilter does not hand to the inet hooks, or what no IPv4 rule matches: IPv6
    (every pod has a link-local address), 802.1Q frames with VLAN 0 (the pod's kernel takes
    them as untagged), IPv4 broadcast, and a unicast datagram for an unknown pod in a
    broadcast frame. Each reaches an isolated pod without the tables, none with them."""
    names = _node(make_ns, procs)
    for pod in ("a", "b"):
        proc = subprocess.Popen(["nsenter", f"--net={ns_path(names[pod])}", "--",
                                 sys.executable, "-c", UDP_ECHO], stdout=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    a_mac = json.loads(in_ns(names["a"], "ip", "-j", "link", "show", "ethwe").stdout)[0]["address"]
    _link_local(names["b"])  # the sender's own address must be past DAD too
    tries = {"ipv6": ("ip", _link_local(names["a"])), "vlan0": ("vlan0", "10.32.0.2", a_mac),
             "broadcast": ("ip", "10.47.255.255"), "limited": ("ip", "255.255.255.255"),
             "unknown in broadcast frame": ("bcastmac", "10.32.0.9")}

    def asked() -> dict[str, str]:
        return {what: in_ns(names["b"], sys.executable, "-c", UDP_ASK, *how).stdout.strip()
                for what, how in tries.items()}

    d = make_ns("d")  # an unknown pod serving UDP at 10.32.0.9
    run("ip", "-n", names["node"], "link", "add", "vethwepld", "type", "veth", "peer", "name",
        "ethwe", "netns", d)
    in_ns(names["node"], "ip", "link", "set", "vethwepld", "master", "weave", "up")
    in_ns(d, "ip", "addr", "add", "10.32.0.9/12", "dev", "ethwe")
    in_ns(d, "ip", "link", "set", "ethwe", "up")
    proc = subprocess.Popen(["nsenter", f"--net={ns_path(d)}", "--", sys.executable, "-c",
                             UDP_ECHO], stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert asked() == dict.fromkeys(tries, "echo"), "each way works without the tables"
    _apply(names, [DENY_ALL])
    assert asked() == dict.fromkeys(tries, "none")
    assert in_ns(names["b"], sys.executable, "-c", UDP_ASK, "ip", "10.32.0.3").stdout
