"""The local surfaces of real routers (lab ``sf1``: two hosts, containers from ``weave lab run``).

Scenario ids of reliability-scenarios.md section 4.4; the probes are the programs of
tests/net/test_surfaces_probes.py, run in the lab's namespaces:

* S19: from container c1 on h1, TCP 6782/6783/6784 on h1's bridge address (after ``weave
  expose``) and on h1's underlay address (c1 routes the underlay through h1) time out, and
  UDP 6783/6784 there are counted by the guard rules; c1 still reaches c2 on h2 (fastdp),
  another service of h1, and h1 reaches c2;
* S18: the router listens on 127.0.0.1:6782 (status) and the mesh port only; the status
  listener refuses what changes state; with route_localnet=1 in h1, a SYN from h2 to
  127.0.0.1:6782 gets no answer;
* S22: a router advertisement from c1 changes no route or address of h1; accept_ra is 0 on
  the bridge, the overlay devices and every veth;
* S21: the state and run files of h1's router are 0600, its state directory 0700.

Lab ``sf2``: the guard follows listeners moved with ``--status-addr 127.0.0.1:7782 --http-addr
127.0.0.1:7784``: from a container, 7782 and 7784 time out while 6782 (no longer ours, nothing
listens) is refused; with route_localnet=1 a neighbour's SYN to 127.0.0.1:7782 gets no answer
while one to 127.0.0.1:6782 gets the kernel's RST; ``weave expose`` keeps the ports and the
keeper has nothing to rewrite after it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from dputil import FAST, Checks, both_ways, lab_run, ns_out, serving, udp, until
from labutil import Lab

pytestmark = pytest.mark.lab
Names = Callable[[str], str]


def _probes() -> ModuleType:
    net_dir = Path(__file__).resolve().parents[1] / "net"
    sys.path.insert(0, str(net_dir))  # the probes import netutil from there
    spec = importlib.util.spec_from_file_location("surfaces_probes",
                                                  net_dir / "test_surfaces_probes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


P = _probes()


def counter(netns: str, prefix: str) -> int:
    doc = json.loads(ns_out(netns, "nft", "-j", "list", "table", "inet", "weave"))
    for entry in doc["nftables"]:
        rule = entry.get("rule")
        if rule and str(rule.get("comment", "")).startswith(prefix):
            return next(int(e["counter"]["packets"]) for e in rule["expr"] if "counter" in e)
    raise AssertionError(f"no rule {prefix!r} in {netns}")


def listeners(netns: str) -> set[str]:
    """``addr:port`` of every listening TCP socket in the namespace (from /proc/net/tcp*)."""
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in ns_out(netns, "cat", f"/proc/net/{table}").splitlines()[1:]:
            local, st = line.split()[1], line.split()[3]
            if st != "0A":
                continue
            addr, port = local.split(":")
            text = ("0.0.0.0" if addr == "0" * width else "127.0.0.1" if addr == "0100007F"
                    else "::" if addr == "0" * 32 else addr)
            found.add(f"{text}:{int(port, 16)}")
    return found


STATUS_POST = r"""
import http.client, sys
out = []
for method, path in (("POST", "/connect"), ("POST", "/forget"), ("DELETE", "/peer/h2"),
                     ("POST", "/ip/x"), ("GET", "/status")):
    c = http.client.HTTPConnection("127.0.0.1", 6782, timeout=5)
    c.request(method, path, body=b"peer=10.1.1.1" if method == "POST" else None,
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    out.append(f"{method} {path} {c.getresponse().status}")
print(";".join(out))
"""


def localnet_neighbour(net: Lab, under: dict[str, str]) -> tuple[str, str]:
    """route_localnet=1 in h1 (as kube-proxy sets it) and h2 as a permanent neighbour on the
    underlay, so a hand-made SYN from h2 to 127.0.0.1 gets its answer (if any) back to h2.
    Returns (h2's namespace, h1's underlay MAC)."""
    h1, h2 = f"wl-{net.name}-h1", f"wl-{net.name}-h2"
    ns_out(h1, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
    h2_mac = json.loads(ns_out(h2, "ip", "-j", "link", "show", "eth0"))[0]["address"]
    h1_mac = json.loads(ns_out(h1, "ip", "-j", "link", "show", "eth0"))[0]["address"]
    ns_out(h1, "ip", "neigh", "replace", under["h2"], "lladdr", h2_mac, "dev", "eth0",
           "nud", "permanent")
    return h2, h1_mac


def test_surfaces_of_real_routers(lab_names: Names) -> None:
    net = Lab(lab_names("sf1"))
    net.up(2, *FAST)
    h1, c1ns, checks = f"wl-{net.name}-h1", f"wl-{net.name}-c-c1", Checks("surfaces (sf1)")
    under = {e["name"]: e["address"] for e in net.status()["hosts"]}
    with checks.must("h1-h2 on fastdp, c1 on h1 and c2 on h2, h1 exposed"):
        until("h1-h2 on fastdp", both_ways(net, "h1", "h2", "fastdp"))
        lab_run(net, "h1", "c1")
        c2 = lab_run(net, "h2", "c2")
        exposed = net.weave("h1", "expose").stdout.strip().split("/")[0]
        net.exec("c1", "ip", "route", "add", f"{under['h1']}/32", "via", exposed)
    with serving(net, "c2", "h1"):
        with checks("S19 c1 reaches c2 across hosts, another service of h1; h1 reaches c2"):
            assert until("c1 -> c2", lambda: udp(net, "c1", c2))[0]
            assert udp(net, "c1", exposed) and udp(net, "h1", c2)
        with checks("S19 c1 cannot reach the router's ports on h1's addresses"):
            before = counter(h1, "weave:guard bridge udp")
            got = P.scan(c1ns, [(proto, addr, port) for addr in (exposed, under["h1"])
                                for proto, port in (("tcp", 6782), ("tcp", 6783),
                                                    ("tcp", 6784), ("udp", 6783),
                                                    ("udp", 6784), ("tcp", 7778))])
            want = {k: "open-other" if k.endswith(":7778") else
                    "filtered" if k.startswith("tcp") else "silent" for k in got}
            assert got == want, got
            assert counter(h1, "weave:guard bridge udp") >= before + 4
    with checks("S18 listeners: status on 127.0.0.1 only, the mesh port, nothing else"):
        assert listeners(h1) == {"127.0.0.1:6782", "0.0.0.0:6783"}, listeners(h1)
    with checks("S18 the status listener refuses every route that changes state"):
        out = net.exec("h1", sys.executable, "-c", STATUS_POST).stdout.strip().split(";")
        codes = [x.rsplit(" ", 1)[1] for x in out]
        assert codes == ["404", "404", "404", "404", "200"], out
    with checks("S18 route_localnet=1 in h1: a SYN from h2 to 127.0.0.1:6782 is not answered"):
        h2, h1_mac = localnet_neighbour(net, under)
        before = counter(h1, "weave:guard localnet")
        assert P.syn(h2, "eth0", h1_mac, under["h2"], "127.0.0.1", 6782).startswith("no answer")
        assert counter(h1, "weave:guard localnet") > before
    with checks("S22 an RA from c1 changes no route or address of h1; accept_ra 0 everywhere"):
        devices = [d["ifname"] for d in json.loads(ns_out(h1, "ip", "-j", "link"))
                   if d["ifname"].startswith(("weave", "vethwepl"))]
        ra = {d: ns_out(h1, "cat", f"/proc/sys/net/ipv6/conf/{d}/accept_ra").strip()
              for d in devices}
        assert {"weave", "weave-vxlan", "weave-vxhb"} <= set(ra) and set(ra.values()) == {"0"}, ra

        def v6() -> str:
            text = ns_out(h1, "ip", "-6", "route") + ns_out(h1, "ip", "-6", "-br", "addr")
            return re.sub(r" expires \S+", "", text)

        before_routes = v6()
        net.exec("c1", "ip", "-6", "addr", "add", "fe80::c1/64", "dev", "ethwe", "nodad")
        P.send_ra(c1ns, "ethwe", "fe80::c1", "2001:db8:77::")
        time.sleep(1.0)
        assert v6() == before_routes and "2001:db8:77" not in v6(), v6()
    with checks("S21 h1's state and run files are private"):
        state_dir, run_dir = net.host_dirs("h1")
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        private = [state_dir / n for n in ("peer.json", "targets.json", "ipam.db",
                                           "ipam.db-wal", "ipam.db-shm")]
        private += [run_dir / "weave.sock", run_dir / "launch.json"]
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in private if p.exists()}
        assert {"peer.json", "ipam.db", "weave.sock", "launch.json"} <= set(modes), modes
        assert set(modes.values()) == {"0o600"}, modes
        for path in (state_dir, run_dir, *run_dir.iterdir()):
            assert not path.stat().st_mode & stat.S_IWOTH, path
    checks.done()


STATUS_GET = r"""
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/status")
print(c.getresponse().status)
"""


def test_the_guard_follows_moved_status_and_http_listeners(lab_names: Names) -> None:
    net = Lab(lab_names("sf2"))
    net.up(2, "--bare")
    net.weave("h1", "launch", "--status-addr", "127.0.0.1:7782", "--http-addr",
              "127.0.0.1:7784", *FAST)
    h1, c1ns, checks = f"wl-{net.name}-h1", f"wl-{net.name}-c-c1", Checks("moved listeners (sf2)")
    under = {e["name"]: e["address"] for e in net.status()["hosts"]}
    guard = "weave:guard bridge tcp 6783,6784,7782,7784"
    with checks.must("h1 listens on 7782 and 7784 and guards them; c1 on h1, h1 exposed"):
        assert listeners(h1) == {"127.0.0.1:7782", "127.0.0.1:7784", "0.0.0.0:6783"}, \
            listeners(h1)
        assert net.exec("h1", sys.executable, "-c", STATUS_GET, "7782").stdout.strip() == "200"
        lab_run(net, "h1", "c1")
        exposed = net.weave("h1", "expose").stdout.strip().split("/")[0]
        net.exec("c1", "ip", "route", "add", f"{under['h1']}/32", "via", exposed)
        listing = ns_out(h1, "nft", "list", "chain", "inet", "weave", "input")
        assert 'iifname "weave" tcp dport { 6783, 6784, 7782, 7784 }' in listing, listing
        assert 'ip daddr 127.0.0.0/8 iifname != "lo" tcp dport { 6783, 6784, 7782, 7784 }' \
            in listing, listing
    with checks("S19 c1 cannot reach 7782 or 7784 on h1's addresses; 6782 is refused"):
        before = counter(h1, guard)
        got = P.scan(c1ns, [("tcp", addr, port) for addr in (exposed, under["h1"])
                            for port in (6782, 6783, 7782, 7784)])
        want = {k: "refused" if k.endswith(":6782") else "filtered" for k in got}
        assert got == want, got
        assert counter(h1, guard) >= before + 6
    with checks("S18 route_localnet=1: a SYN from h2 to 127.0.0.1:7782 is not answered"):
        h2, h1_mac = localnet_neighbour(net, under)
        before = counter(h1, "weave:guard localnet")
        for port in (7782, 7784):
            got = P.syn(h2, "eth0", h1_mac, under["h2"], "127.0.0.1", port)
            assert got.startswith("no answer"), (port, got)
        assert counter(h1, "weave:guard localnet") >= before + 2
        # the control: the same SYN to a port that is not the router's reaches h1's stack
        got = P.syn(h2, "eth0", h1_mac, under["h2"], "127.0.0.1", 6782)
        assert got.startswith("answered"), got
    with checks("expose kept the ports: the keeper's next pass rewrites nothing"):
        def handles() -> list[int]:
            doc = json.loads(ns_out(h1, "nft", "-j", "list", "chain", "inet", "weave", "input"))
            return [e["rule"]["handle"] for e in doc["nftables"] if "rule" in e]

        first = handles()
        time.sleep(6.0)  # one keeper interval (5 s) and its pass
        assert handles() == first
        _, run_dir = net.host_dirs("h1")
        log = (run_dir / "weave.log").read_text(errors="replace")
        assert log.count("nft table inet weave rewritten") == 0, log[-2000:]
    checks.done()
