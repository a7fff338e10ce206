"""The router's local attack surfaces on a real kernel: what a container and a neighbour reach.

One "router" namespace ``r`` with the bridge, the fastdp devices and the nft table made by
``datapath.ensure``, an underlay link to a neighbour namespace ``n`` (198.18.77.1 - .2), and
two containers ``a`` and ``b`` attached to the bridge; the host is exposed (10.32.0.3) and
``a`` routes the underlay through it, like a container with a default route via the host.
Servers (tests/net/test_surfaces_probes.py) listen in ``r`` on the router's ports, so a probe
that gets an answer has reached the port. Each "must not reach" check is paired with a
control run with the input chain flushed, which shows the same probe *does* get through
without our rules: the probes prove something. Scenarios S18, S19 and S22 of
reliability-scenarios.md section 4.4 (weave#1632, #1634, #3805, CVE-2020-11091).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Interface

import pytest
from netutil import MemoryBook, in_ns, ns_path, run
from test_surfaces_probes import scan, serve

from weave_cli.net import attach, datapath, expose, firewall, netns, nft, target
from weave_cli.net.overlay import OverlaySpec

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]
Procs = list[subprocess.Popen[str]]
HOST_IP, NEIGHBOUR_IP = "198.18.77.1", "198.18.77.2"
A_IP, B_IP, EXPOSED_IP = "10.32.0.1", "10.32.0.2", "10.32.0.3"
ROUTER_TCP, ROUTER_UDP = (6782, 6783, 6784), (6783,)  # UDP 6784 is the kernel's VXLAN socket
OTHER_TCP, OTHER_UDP = 7778, 7777  # some other service of the host


@dataclass(frozen=True)
class Host:
    r: str
    n: str
    a: str
    b: str
    book: MemoryBook


def build(make_ns: MakeNs) -> Host:
    r, n, a, b = make_ns("r"), make_ns("n"), make_ns("a"), make_ns("b")
    run("ip", "-n", r, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n)
    for ns, ip in ((r, HOST_IP), (n, NEIGHBOUR_IP)):
        run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
    datapath.ensure(ns_path(r), overlay_spec=OverlaySpec(1376))
    book = MemoryBook()
    for name in (a, b):
        attach.attach(book, netns.resolve(target.parse_target(f"ns:{name}"), ns_path(r)), [],
                      ns_path(r))
    assert [str(x) for x in expose.expose(book, [], ns_path(r))] == [f"{EXPOSED_IP}/12"]
    run("ip", "-n", a, "route", "add", "198.18.77.0/24", "via", EXPOSED_IP)
    return Host(r, n, a, b, book)


def flush_guard(h: Host) -> None:
    """The control: the table without its input rules (as before this work)."""
    in_ns(h.r, "nft", "flush", "chain", "inet", "weave", "input")


def restore(h: Host) -> None:
    assert firewall.ensure_table(ns_path(h.r), [IPv4Interface(f"{EXPOSED_IP}/12")]) == [
        "nft table inet weave rewritten"]


def counter(ns: str, comment: str) -> int:
    doc = json.loads(in_ns(ns, "nft", "-j", "list", "table", "inet", "weave").stdout)
    for entry in doc["nftables"]:
        rule = entry.get("rule")
        if rule and rule.get("comment") == comment:
            return next(int(e["counter"]["packets"]) for e in rule["expr"] if "counter" in e)
    raise AssertionError(f"no rule {comment!r}")


def router_targets(*addrs: str) -> list[tuple[str, str, int]]:
    out = []
    for addr in addrs:
        out += [("tcp", addr, p) for p in (*ROUTER_TCP, OTHER_TCP)]
        out += [("udp", addr, p) for p in (*ROUTER_UDP, OTHER_UDP)]
    return out


def verdicts(got: dict[str, str], addr: str) -> dict[str, str]:
    return {k.split()[0] + " " + k.split(":")[-1]: v for k, v in got.items()
            if k.split()[1].rsplit(":", 1)[0] == addr}


CLOSED = {**{f"tcp {p}": "filtered" for p in ROUTER_TCP}, **{f"udp {p}": "silent"
          for p in ROUTER_UDP}, f"tcp {OTHER_TCP}": "open", f"udp {OTHER_UDP}": "open"}
OPEN = {k: "open" for k in CLOSED}


def test_containers_cannot_reach_the_router_ports_on_any_host_address(
        make_ns: MakeNs, procs: Procs) -> None:
    h = build(make_ns)
    # UDP per address: a reply must come from the address that was asked.
    procs.append(serve(h.r, [("0.0.0.0", p) for p in (*ROUTER_TCP, OTHER_TCP)],
                       [(ip, p) for p in (*ROUTER_UDP, OTHER_UDP) for ip in (HOST_IP, EXPOSED_IP)]))
    # A container may run its own service on 6783: containers reach it, and so does the host.
    procs.append(serve(h.b, [("0.0.0.0", 6783)], [("0.0.0.0", OTHER_UDP)]))
    container = [("tcp", B_IP, 6783), ("udp", B_IP, OTHER_UDP)]

    got = scan(h.a, router_targets(EXPOSED_IP, HOST_IP) + container)
    assert verdicts(got, EXPOSED_IP) == CLOSED, got  # the bridge's address (after expose)
    assert verdicts(got, HOST_IP) == CLOSED, got  # the host's underlay address
    assert verdicts(got, B_IP) == {"tcp 6783": "open", "udp 7777": "open"}, got
    assert counter(h.r, "weave:guard bridge tcp 6782,6783,6784") >= 6
    assert counter(h.r, "weave:guard bridge udp 6783,6784") >= 2

    # Peers on the underlay reach the mesh and the sleeve; the host reaches the containers.
    got = scan(h.n, [("tcp", HOST_IP, 6783), ("udp", HOST_IP, 6783)])
    assert set(got.values()) == {"open"}, got
    assert set(scan(h.r, container).values()) == {"open"}

    flush_guard(h)
    got = scan(h.a, router_targets(EXPOSED_IP, HOST_IP))
    assert verdicts(got, EXPOSED_IP) == OPEN and verdicts(got, HOST_IP) == OPEN, got
    restore(h)
    assert verdicts(scan(h.a, router_targets(EXPOSED_IP)), EXPOSED_IP) == CLOSED
    # The keeper's pass agrees with the table expose/restore made: nothing to repair.
    assert datapath.ensure(ns_path(h.r), overlay_spec=OverlaySpec(1376)) == []


def test_the_keeper_repairs_the_guard_and_follows_the_mesh_port(make_ns: MakeNs) -> None:
    h = build(make_ns)
    listing = in_ns(h.r, "nft", "list", "chain", "inet", "weave", "input").stdout
    assert 'iifname "weave" tcp dport { 6782, 6783, 6784 } counter' in listing
    assert 'iifname "weave" udp dport { 6783, 6784 } counter' in listing
    assert 'ip daddr 127.0.0.0/8 iifname != "lo" tcp dport { 6782, 6783, 6784 }' in listing
    doc = json.loads(in_ns(h.r, "nft", "-j", "list", "chain", "inet", "weave", "input").stdout)
    handle = next(e["rule"]["handle"] for e in doc["nftables"]
                  if "rule" in e and e["rule"]["comment"].startswith("weave:guard localnet"))
    in_ns(h.r, "nft", "delete", "rule", "inet", "weave", "input", "handle", str(handle))
    assert datapath.ensure(ns_path(h.r), overlay_spec=OverlaySpec(1376)) == [
        "nft table inet weave rewritten"]

    spec = OverlaySpec(1376, port=7000)
    assert datapath.ensure(ns_path(h.r), overlay_spec=spec)[-1] == "nft table inet weave rewritten"
    listing = in_ns(h.r, "nft", "list", "chain", "inet", "weave", "input").stdout
    assert "tcp dport { 6782, 6784, 7000 }" in listing and "udp dport { 7000, 7001 }" in listing
    # expose and hide (the CLI: it does not know --port) keep the router's ports ...
    expose.hide(h.book, [], ns_path(h.r))
    assert nft.ports_of(firewall.current_table(ns_path(h.r))) == nft.LocalPorts(
        (6782, 6784, 7000), (7000, 7001))
    expose.expose(h.book, [], ns_path(h.r))
    # ... so the keeper has nothing to rewrite afterwards: the two never fight.
    assert datapath.ensure(ns_path(h.r), overlay_spec=spec) == []
