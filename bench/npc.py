"""What network policy costs: the data path with the policy tables against none, and the time
to compile and apply a large cluster (docs/performance.md, "Network policy").

    sudo .venv/bin/python bench/npc.py [--rounds R] [--seconds S] [--policies N]

A node namespace ``wbp-node`` with the ``weave`` bridge and two pod namespaces (``vethwepl*``
ports, as the data path makes them), all removed at the end. Pod b connects to pod a, which
is ingress-isolated and admitted by dev's policy; N more policies admit other namespaces on
other ports. Measured in the same run, alternately, medians of the rounds:

* none: no policy tables, the reference: a weave host, with br_netfilter on and weave's own
  ``table inet weave`` (whose forward chain bridged frames pass, and whose NAT turns
  conntrack on, as kube-proxy's rules would anyway);
* spread: the controller's tables when each of the N policies selects a pod of its own (a
  cluster's usual shape: a new connection meets only its destination's rules);
* stacked: when all N select a too, ahead of dev's (the worst case: a connection to a walks
  N rules before its match). Reported, no goal.

Figures: TCP connections a second (a Python client, one connection at a time: it makes the
kernel's share, and so the ratio, look better than a C client would), iperf3 TCP -P1, and the
time ``compile_policies`` + ``nft -f`` take for 5000 pods and 500 policies. Goals: with N=500,
spread new connections >= 0.8x the reference and TCP throughput >= 0.95x (an established
flow meets one rule); compile + apply of 5000 pods / 500 policies < 5 s. Exit 0 only when every goal
passes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from ipaddress import IPv4Address

import _netlab as nl

from weave_cli.net import firewall
from weave_cli.npc import compile as npc_compile
from weave_cli.npc import kernel, model, nftables

NODE, POD_A, POD_B = "wbp-node", "wbp-a", "wbp-b"
A_IP, B_IP = "10.32.0.2", "10.32.0.3"
# The client closes with an RST (SO_LINGER 0), so neither side keeps TIME_WAIT: tens of
# thousands of connections a run would otherwise collide with their own earlier tuples.
CONNECT_RATE = r"""
import socket, struct, sys, time
end = time.monotonic() + float(sys.argv[2]); n = 0
abort = struct.pack("ii", 1, 0)
while time.monotonic() < end:
    c = socket.create_connection((sys.argv[1], 5201), timeout=2)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, abort); c.close(); n += 1
print(n / float(sys.argv[2]))
"""
LISTEN = r"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201)); s.listen(1024); print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


def _build(cleanup: nl.Cleanup) -> None:
    for ns in (NODE, POD_A, POD_B):
        nl.run(["ip", "netns", "add", ns])
        cleanup.push(f"delete {ns}", lambda ns=ns: nl.run(["ip", "netns", "del", ns]))
        nl.run(["ip", "-n", ns, "link", "set", "lo", "up"])
    nl.run(["ip", "-n", NODE, "link", "add", "weave", "type", "bridge"])
    nl.run(["ip", "-n", NODE, "link", "set", "weave", "up"])
    for ns, ip, port in ((POD_A, A_IP, "vethwepla"), (POD_B, B_IP, "vethweplb")):
        nl.run(["ip", "-n", NODE, "link", "add", port, "type", "veth", "peer", "name", "ethwe",
                "netns", ns])
        nl.run(["ip", "-n", NODE, "link", "set", port, "master", "weave", "up"])
        nl.run(["ip", "-n", ns, "addr", "add", f"{ip}/12", "dev", "ethwe"])
        nl.run(["ip", "-n", ns, "link", "set", "ethwe", "up"])
    sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    nl.run(nl.ns_argv(NODE, "sh", "-c", f"echo 1 > {sysctl}"))
    # The reference is a weave host: its own ``table inet weave`` (forward accepts, NAT, so
    # bridged frames already pass an inet forward chain and conntrack is on, as kube-proxy's
    # rules would make it anyway). The ratio is then the policy's own cost.
    firewall.ensure_table(str(nl.NETNS / NODE), [])


def _pod(ns: str, name: str, ip: str) -> model.Pod:
    return model.parse_pod({"metadata": {"namespace": ns, "name": name, "uid": name,
                                         "labels": {"app": name}},
                            "spec": {"containers": [{"name": "c"}]},
                            "status": {"phase": "Running", "podIP": ip}})


def _policy(name: str, app: str, from_ns: str, port: int) -> model.Policy:
    return model.parse_policy({"metadata": {"namespace": "prod", "name": name}, "spec": {
        "podSelector": {"matchLabels": {"app": app}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": from_ns}}}], "ports": [{"port": port}]}]}})


def cluster(others: int, stacked: bool,
            ) -> tuple[list[model.Pod], list[model.Namespace], list[model.Policy]]:
    """a in prod, b in dev, ``others`` more pods in prod, and ``others`` policies that admit
    other namespaces on other ports, then dev's policy for a. Spread: each other policy
    selects its own pod; stacked: every one selects a, ahead of dev's."""
    pods = [_pod("prod", "a", A_IP), _pod("dev", "b", B_IP)]
    spaces = [model.parse_namespace({"metadata": {"name": n}})
              for n in ("prod", "dev", *(f"o{i}" for i in range(others)))]
    pods += [_pod("prod", f"p{i}", str(IPv4Address("10.33.0.0") + i + 1))
             for i in range(others)]
    policies = [_policy(f"p{i:04d}", "a" if stacked else f"p{i}", f"o{i}", 1000 + i)
                for i in range(others)]
    return pods, spaces, [*policies, _policy("zzzz-dev", "a", "dev", 5201)]


def big_cluster(pods: int = 5000, policies: int = 500) -> tuple[float, float]:
    """(compile seconds, apply seconds) for ``pods`` pods in 50 namespaces, ``policies``."""
    spaces = [model.parse_namespace({"metadata": {"name": f"n{i}", "labels": {"tier": str(i % 5)}}})
              for i in range(50)]
    all_pods = [model.parse_pod({
        "metadata": {"namespace": f"n{i % 50}", "name": f"p{i}", "uid": str(i),
                     "labels": {"app": f"a{i % 20}", "tier": str(i % 5)}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
        "status": {"phase": "Running", "podIP": str(IPv4Address("10.40.0.0") + i + 1)}})
        for i in range(pods)]
    pols = [model.parse_policy({"metadata": {"namespace": f"n{i % 50}", "name": f"q{i}"}, "spec": {
        "podSelector": {"matchLabels": {"app": f"a{i % 20}"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": str(i % 5)}},
                               "namespaceSelector": {}}], "ports": [{"port": "http"}]}]}})
        for i in range(policies)]
    start = time.perf_counter()
    rs = npc_compile.compile_policies(all_pods, spaces, pols)
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    kernel.apply(nftables.render(rs), str(nl.NETNS / NODE))
    return compiled, time.perf_counter() - start


def _rate(seconds: float) -> float:
    out = nl.run(nl.ns_argv(POD_B, sys.executable, "-c", CONNECT_RATE, A_IP, str(seconds)),
                 timeout=seconds + 30)
    return float(out.strip())


def body(args: argparse.Namespace) -> bool:
    nl.need_tools()
    cleanup = nl.Cleanup()
    nl.interrupt_on_sigterm()
    try:
        _build(cleanup)
        node = str(nl.NETNS / NODE)
        variants = {"none": None,
                    "spread": npc_compile.compile_policies(*cluster(args.policies, False)),
                    "stacked": npc_compile.compile_policies(*cluster(args.policies, True))}
        results: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
        for _ in range(args.rounds):
            for name, rs in variants.items():
                if rs is None:
                    kernel.remove(node)
                else:
                    kernel.apply(nftables.render(rs), node)
                server = cleanup.popen(nl.ns_argv(POD_A, sys.executable, "-c", LISTEN))
                assert server.stdout is not None and server.stdout.readline().strip() == "ready"
                got = results[name]
                got.setdefault("conn", []).append(_rate(args.seconds))
                cleanup.reap(server)
                if name != "stacked":
                    got.setdefault("tcp", []).append(
                        nl.tcp_bps(cleanup, POD_A, POD_B, A_IP, 1, args.seconds))
        compiled, applied = big_cluster()
        kernel.remove(node)
    finally:
        cleanup.close()
    med = {name: {k: nl.median(v) for k, v in got.items()} for name, got in results.items()}
    ref, spread, stacked = med["none"], med["spread"], med["stacked"]
    conn_ratio, tcp_ratio = spread["conn"] / ref["conn"], spread["tcp"] / ref["tcp"]
    goals = [("new connections, spread policies / none >= 0.8", conn_ratio >= 0.8),
             ("TCP -P1, policy / none >= 0.95", tcp_ratio >= 0.95),
             ("compile + apply 5000 pods, 500 policies < 5 s", compiled + applied < 5.0)]
    print(json.dumps({"rounds": args.rounds, "seconds": args.seconds,
                      "policies": args.policies + 1}))
    print(f"{'':24} {'none':>10} {'spread':>10} {'ratio':>6} {'stacked':>10} {'ratio':>6}")
    print(f"{'connections/s':24} {ref['conn']:10.0f} {spread['conn']:10.0f} {conn_ratio:6.2f}"
          f" {stacked['conn']:10.0f} {stacked['conn'] / ref['conn']:6.2f}")
    print(f"{'TCP -P1 Gbit/s':24} {ref['tcp'] / 1e9:10.2f} {spread['tcp'] / 1e9:10.2f}"
          f" {tcp_ratio:6.2f}")
    print(f"5000 pods / 500 policies: compile {compiled:.2f} s, apply {applied:.2f} s")
    for text, ok in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for _, ok in goals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--policies", type=int, default=500)
    args = parser.parse_args()
    nl.exit_with(lambda: body(args))


if __name__ == "__main__":
    main()
