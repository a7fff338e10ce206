"""The policy controller on real routers, against the fake API server (lab ``np1``, 2 hosts).

h1 runs the fake API server (tests/k8s/fakeapi.py, on its 127.0.0.1, objects kept in a state
file so a restarted server still has them) and ``weave-npc``; h1 also does what kube-proxy
does (``table ip kptest``: ClusterIP 10.96.0.10:80 and NodePort <h1>:30080 DNAT to pod a and
are masqueraded). Pods are lab containers: a (prod, app=web) and b (dev) on h1, x (dev) on h2,
all attached by the real router and reached over fastdp.

* S24: with prod default-deny, a is closed to b directly and through the ClusterIP, to x across
  hosts, to itself through its Service (hairpin) and to h2 through the NodePort, while h1 (the
  node) still reaches it; an allow-from-dev policy opens b and x only.
* S25: kill -9 of the controller leaves the tables as they were; a controller restarted while
  the API server is down keeps them; a pod attached meanwhile is closed, and stays closed once
  the API server is back and reports it in the isolated namespace (a hammer from b never
  connects); SIGTERM leaves the tables; a controller on a node with no tables and no API
  server closes every pod port there; ``weave reset`` removes the tables.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dputil import FAST, PY, Checks, both_ways, lab_run, ns_out, until
from k8s.probes import CLIENT, HAMMER, SERVER
from labutil import Lab, weave_cmd

pytestmark = pytest.mark.lab
TESTS = Path(__file__).resolve().parents[1]
API_PORT = 18080
API = f"http://127.0.0.1:{API_PORT}"
CLUSTER_IP = "10.96.0.10"
PORT = 8080

# urllib in a namespace: METHOD PATH [JSON BODY] -> prints the status and body.
API_CALL = r"""
import sys, urllib.request, urllib.error
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(sys.argv[1] + sys.argv[2].split(" ", 1)[1], data=data,
                             method=sys.argv[2].split(" ", 1)[0],
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        print(resp.status, resp.read().decode())
except urllib.error.HTTPError as err:
    print(err.code, err.read().decode()); sys.exit(1)
"""


def npc_exe() -> str:
    exe = Path(sys.executable).with_name("weave-npc")
    return str(exe) if exe.exists() else ""


def in_netns(netns: str, *argv: str, log: Path | None = None,
             env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``argv`` in a lab namespace, in the background (nsenter execs: the pid is argv's)."""
    if log is None:
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={**os.environ, **(env or {})}, cwd="/")
    with open(log, "a") as out:  # the child keeps its own descriptor
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
                                stdout=out, stderr=out, text=True,
                                env={**os.environ, **(env or {})}, cwd="/")


class Cluster:
    """The fake API server in h1 and what the test asks of it."""

    def __init__(self, netns: str, state: Path, log: Path) -> None:
        self.netns, self.state, self.log = netns, state, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = in_netns(self.netns, PY, "-m", "k8s.fakeapi", "--listen",
                             f"127.0.0.1:{API_PORT}", "--state", str(self.state),
                             log=self.log, env={"PYTHONPATH": str(TESTS)})
        until("the fake API server answers", lambda: self.call("GET /api/v1/namespaces",
                                                                 check=False) is not None, 20)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def call(self, what: str, body: Any = None, check: bool = True) -> Any:
        argv = [PY, "-c", API_CALL, API, what] + ([json.dumps(body)] if body is not None else [])
        proc = subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv],
                              capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            if check:
                raise AssertionError(f"{what}: {proc.stdout} {proc.stderr[-300:]}")
            return None
        return json.loads(proc.stdout.split(" ", 1)[1])

    def namespace(self, name: str) -> None:
        self.call("POST /api/v1/namespaces", {"metadata": {"name": name,
                                                           "labels": {"team": name}}})

    def pod(self, ns: str, name: str, ip: str, node: str, app: str) -> None:
        self.call(f"POST /api/v1/namespaces/{ns}/pods", {
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": PORT}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})

    def policy(self, ns: str, name: str, spec: dict[str, Any]) -> None:
        self.call(f"POST /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                  {"metadata": {"name": name, "namespace": ns}, "spec": spec})

    def delete_policy(self, ns: str, name: str) -> None:
        self.call(f"DELETE /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}")


def tables(netns: str) -> dict[str, Any]:
    """What the controller's tables hold now: digest tags and set elements."""
    out = ns_out(netns, "nft", "-j", "list", "table", "inet", "weave-npc", check=False)
    if not out:
        return {}
    found: dict[str, Any] = {"sets": {}, "digests": set()}
    for entry in json.loads(out)["nftables"]:
        if "set" in entry:
            elems = entry["set"].get("elem", [])
            found["sets"][entry["set"]["name"]] = {e for e in elems if isinstance(e, str)}
        rule = entry.get("rule")
        if rule and "ruleset " in str(rule.get("comment", "")):
            found["digests"].add(rule["comment"].rsplit(" ", 1)[1])
    return found


def probe(net: Lab, node: str, *targets: str) -> dict[str, str]:
    out: dict[str, str] = json.loads(net.exec(node, PY, "-c", CLIENT, *targets).stdout)
    return out


def test_policy_on_real_routers(lab_names: Any, tmp_path: Path) -> None:
    if not npc_exe():
        pytest.skip("weave-npc is not installed beside this python (./run test installs it)")
    net = Lab(lab_names("np1"))
    net.up(2, *FAST)
    h1, h2 = f"wl-{net.name}-h1", f"wl-{net.name}-h2"
    under = {e["name"]: e["address"] for e in net.status()["hosts"]}
    checks = Checks("network policy (np1)")
    cluster = Cluster(h1, tmp_path / "api.json", tmp_path / "api.log")
    npc_log = tmp_path / "npc.log"
    procs: list[subprocess.Popen[str]] = []

    def npc(netns: str = h1) -> subprocess.Popen[str]:
        proc = in_netns(netns, npc_exe(), "--api-server", API, "--reconcile-interval", "1",
                        log=npc_log)
        procs.append(proc)
        return proc

    def settled(want: str, ip: str) -> Any:
        return lambda: ip in tables(h1).get("sets", {}).get(want, set())

    try:
        with checks.must("pods on both hosts, services like kube-proxy's, API and controller"):
            until("h1-h2 on fastdp", both_ways(net, "h1", "h2", "fastdp"))
            ips = {name: lab_run(net, host, name) for name, host in
                   (("a", "h1"), ("b", "h1"), ("x", "h2"))}
            gateway = net.weave("h1", "expose").stdout.strip().split("/")[0]
            for pod in ("a", "b"):
                net.exec(pod, "ip", "route", "add", "10.96.0.0/12", "via", gateway)
            for port in json.loads(ns_out(h1, "ip", "-j", "link", "show", "type", "veth")):
                if port["ifname"].startswith("vethwepl"):  # as the CNI plugin's hairpinMode
                    ns_out(h1, "ip", "link", "set", port["ifname"], "type", "bridge_slave",
                           "hairpin", "on")
            a = ips["a"]
            ns_out(h1, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            subprocess.run(["nsenter", f"--net=/run/netns/{h1}", "--", "nft", "-f", "-"],
                           check=True, text=True, input=f"""table ip kptest {{
  chain pre {{ type nat hook prerouting priority -100;
    ip daddr {CLUSTER_IP} tcp dport 80 meta mark set mark | 0x4000 dnat to {a}:{PORT};
    ip daddr {under['h1']} tcp dport 30080 meta mark set mark | 0x4000 dnat to {a}:{PORT}; }}
  chain post {{ type nat hook postrouting priority 100;
    meta mark & 0x4000 == 0x4000 masquerade; }}
}}
""")
            for pod in ("a", "b", "x"):
                proc = in_netns(f"wl-{net.name}-c-{pod}", PY, "-c", SERVER, str(PORT))
                procs.append(proc)
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            cluster.start()
            for ns in ("prod", "dev"):
                cluster.namespace(ns)
            for name, ns, host, app in (("a", "prod", "h1", "web"), ("b", "dev", "h1", "client"),
                                        ("x", "dev", "h2", "client")):
                cluster.pod(ns, name, ips[name], host, app)
            first = npc()
            until("the controller knows every pod", settled("known", ips["x"]))

        svc, direct, node_port = f"{CLUSTER_IP}:80", f"{a}:{PORT}", f"{under['h1']}:30080"
        with checks("S24 open before any policy: every path reaches a"):
            assert probe(net, "b", direct, svc) == {direct: f"ok {ips['b']}",
                                                     svc: f"ok {gateway}"}
            assert probe(net, "a", svc)[svc].startswith("ok"), "hairpin"
            assert probe(net, "x", direct) == {direct: f"ok {ips['x']}"}
            assert probe(net, "h2", node_port)[node_port].startswith("ok")

        cluster.policy("prod", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
        until("a isolated", settled("ingress-isolated", a))
        deny_only = tables(h1)["digests"]
        with checks("S24 default-deny: a closed behind ClusterIP, NodePort, hairpin"):
            assert probe(net, "b", direct, svc) == {direct: "blocked", svc: "blocked"}
            assert probe(net, "a", svc) == {svc: "blocked"}
            assert probe(net, "x", direct) == {direct: "blocked"}
            assert probe(net, "h2", node_port) == {node_port: "blocked"}
            assert probe(net, "h1", direct) == {direct: f"ok {gateway}"}, "the node may"

        cluster.policy("prod", "from-dev", {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "dev"}}}],
                         "ports": [{"port": "http"}]}]})
        until("from-dev applied", lambda: tables(h1)["digests"] != deny_only)
        with checks("S24 allow from dev: b and x only"):
            until("b reaches a", lambda: probe(net, "b", direct)[direct].startswith("ok"), 10)
            assert probe(net, "b", svc)[svc].startswith("ok")
            assert probe(net, "x", direct)[direct].startswith("ok")
            assert probe(net, "a", svc) == {svc: "blocked"}
            assert probe(net, "h2", node_port) == {node_port: "blocked"}

        before = tables(h1)
        with checks("S25 kill -9 of the controller: the rules stay"):
            first.send_signal(signal.SIGKILL)
            first.wait()
            time.sleep(1.5)
            assert tables(h1) == before
            assert probe(net, "b", direct)[direct].startswith("ok")
            assert probe(net, "a", svc) == {svc: "blocked"}

        with checks("S25 restarted while the API server is down: the rules stay"):
            cluster.stop()
            restarted = npc()
            time.sleep(3)
            assert tables(h1) == before
            assert "keeping the policy tables" in npc_log.read_text()

        with checks("S25 a pod attached meanwhile is closed, and stays closed once reported"):
            ips["n"] = lab_run(net, "h1", "n")
            server = in_netns(f"wl-{net.name}-c-n", PY, "-c", SERVER, str(PORT))
            procs.append(server)
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            hammer = subprocess.Popen(
                [*_lab_exec(net, "b"), PY, "-c", HAMMER, f"{ips['n']}:{PORT}", "12"],
                stdout=subprocess.PIPE, text=True)
            assert probe(net, "h1", f"{ips['n']}:{PORT}") == {f"{ips['n']}:{PORT}": "blocked"}
            cluster.start()
            cluster.pod("prod", "n", ips["n"], "h1", "db")
            until("n known and isolated", settled("ingress-isolated", ips["n"]), 20)
            out, _ = hammer.communicate(timeout=60)
            seen = json.loads(out)
            assert seen["tries"] > 20 and seen["connected"] == 0, seen
            assert probe(net, "b", f"{ips['n']}:{PORT}") == {f"{ips['n']}:{PORT}": "blocked"}
            assert probe(net, "h1", f"{ips['n']}:{PORT}")[f"{ips['n']}:{PORT}"].startswith("ok")

        with checks("S25 SIGTERM: the controller stops, the rules stay"):
            now = tables(h1)
            restarted.send_signal(signal.SIGTERM)
            assert restarted.wait(timeout=20) == 0
            assert tables(h1) == now

        with checks("S25 a node without tables and without API server closes its pods"):
            assert probe(net, "x", direct)[direct].startswith("ok")
            on_h2 = npc(h2)
            until("h2 closed", lambda: tables(h2).get("digests"), 20)
            assert probe(net, "x", direct) == {direct: "blocked"}
            on_h2.send_signal(signal.SIGTERM)
            assert on_h2.wait(timeout=20) == 0
            assert tables(h2).get("digests")
            net.weave("h2", "reset")
            assert tables(h2) == {}, "weave reset removes the policy tables"
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
        cluster.stop()
        sys.stderr.write(npc_log.read_text()[-4000:] if npc_log.exists() else "")
    checks.done()


def _lab_exec(net: Lab, node: str) -> list[str]:
    return [*weave_cmd(), "lab", "exec", "--name", net.name, node, "--"]
