"""Hand-made packets against the router's namespace: route_localnet, VXLAN injection, rogue RAs.

The same namespaces as test_surfaces.py (router ``r``, neighbour ``n`` on the underlay,
containers ``a`` and ``b``, the host exposed). Each attack is first shown to work against the
table without its input rules (or with ``accept_ra`` put back to 1), then to fail with them:

* S18 / weave#3805: with ``route_localnet=1`` in ``r`` (as kube-proxy sets it) a SYN from the
  neighbour to 127.0.0.1:6782 and :6784, sent from a packet socket, gets a SYN-ACK; with the
  ``localnet`` rule it gets nothing, and the host still reaches its own loopback listeners;
* weave#1632: a VXLAN datagram a container sends to the host's port 6784 would put any frame
  on the bridge (here: a datagram to ``b``, whose echo comes back); the bridge guard drops it;
* a frame in the heartbeat VNI from the underlay lands in ``r``'s own stack on ``weave-vxhb``
  (here: a datagram to an echo server in ``r``); the heartbeat-device rule drops it;
* S22 / CVE-2020-11091: a router advertisement from a container adds a default route and a
  prefix route in ``r`` while the bridge has ``accept_ra=1``; with ``accept_ra=0`` (kept by
  the keeper, set by attach on every veth) it changes nothing, also on a veth that was
  knocked out of the bridge.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from netutil import in_ns, ns_path, run
from test_surfaces import (
    A_IP,
    B_IP,
    EXPOSED_IP,
    HOST_IP,
    NEIGHBOUR_IP,
    build,
    counter,
    flush_guard,
    restore,
)
from test_surfaces_probes import scan, send_ra, serve, syn, vxlan

from weave_cli.names import VXLAN_HB_VNI, VXLAN_VNI
from weave_cli.net import datapath, netns, target
from weave_cli.net.overlay import OverlaySpec

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]
Procs = list[subprocess.Popen[str]]
LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")


def mac(ns: str, dev: str) -> str:
    return str(json.loads(in_ns(ns, "ip", "-j", "link", "show", dev).stdout)[0]["address"])


def test_route_localnet_does_not_open_the_loopback_listeners(make_ns: MakeNs, procs: Procs) -> None:
    machine = LOCALNET.read_text()
    h = build(make_ns)
    in_ns(h.r, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
    procs.append(serve(h.r, [("127.0.0.1", 6782), ("127.0.0.1", 6784)], []))
    r_mac = mac(h.r, "eth0")
    # The SYN-ACK leaves from 127.0.0.1, and the neighbour ignores an ARP request from that
    # address: give r the neighbour entry ordinary traffic would have left.
    in_ns(h.r, "ip", "neigh", "replace", NEIGHBOUR_IP, "lladdr", mac(h.n, "eth0"), "dev", "eth0",
          "nud", "permanent")

    flush_guard(h)  # the control: the neighbour really reaches 127.0.0.1 through eth0
    for port in (6782, 6784):
        assert syn(h.n, "eth0", r_mac, NEIGHBOUR_IP, "127.0.0.1", port) == "answered syn-ack"
    restore(h)
    for port in (6782, 6784):
        assert syn(h.n, "eth0", r_mac, NEIGHBOUR_IP, "127.0.0.1", port).startswith("no answer")
    assert counter(h.r, "weave:guard localnet tcp 6782,6783,6784") >= 2
    assert set(scan(h.r, [("tcp", "127.0.0.1", 6782), ("tcp", "127.0.0.1", 6784)]).values()) \
        == {"open"}  # the host itself (the CLI) still gets in
    assert LOCALNET.read_text() == machine  # only the test's namespace was changed


def test_vxlan_from_a_container_puts_no_frame_on_the_bridge(make_ns: MakeNs, procs: Procs) -> None:
    h = build(make_ns)
    procs.append(serve(h.b, [], [("0.0.0.0", 7777)]))
    b_mac = mac(h.b, "ethwe")

    def inject(host: str) -> str:
        return vxlan(h.a, host, VXLAN_VNI, b_mac, A_IP, B_IP, 7777, seconds=1.5)

    flush_guard(h)
    assert inject(EXPOSED_IP).startswith("answered")  # decapsulated, bridged to b, echoed
    restore(h)
    assert inject(EXPOSED_IP).startswith("no answer")
    assert inject(HOST_IP).startswith("no answer")


def test_the_heartbeat_device_delivers_no_ip_packet(make_ns: MakeNs, procs: Procs) -> None:
    h = build(make_ns)
    procs.append(serve(h.r, [], [(HOST_IP, 7777)]))
    hb_mac = mac(h.r, "weave-vxhb")

    def inject() -> str:
        return vxlan(h.n, HOST_IP, VXLAN_HB_VNI, hb_mac, NEIGHBOUR_IP, HOST_IP, 7777, 1.5)

    flush_guard(h)
    in_ns(h.r, "nft", "flush", "chain", "inet", "weave", "forward")
    assert inject().startswith("answered")  # an IP packet of anyone's making, on weave-vxhb
    restore(h)
    assert inject().startswith("no answer")
    assert counter(h.r, "weave:guard heartbeat device in") >= 1


def routes(ns: str) -> str:
    """The namespace's IPv6 routes and addresses, without lifetimes."""
    text = in_ns(ns, "ip", "-6", "route").stdout + in_ns(ns, "ip", "-6", "-br", "addr").stdout
    return re.sub(r" expires \S+", "", text)


def accept_ra(ns: str, dev: str) -> str:
    return in_ns(ns, "cat", f"/proc/sys/net/ipv6/conf/{dev}/accept_ra").stdout.strip()


def wait_for(what: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.1)
    return what()


def test_router_advertisements_from_a_container_change_no_route(make_ns: MakeNs) -> None:
    h = build(make_ns)
    run("ip", "-n", h.a, "-6", "addr", "add", "fe80::a:1/64", "dev", "ethwe", "nodad")
    veths = [d["ifname"] for d in json.loads(in_ns(h.r, "ip", "-j", "link").stdout)
             if d["ifname"].startswith("vethwepl")]
    assert len(veths) == 2
    for dev in ("weave", "weave-vxlan", "weave-vxhb", *veths):
        assert accept_ra(h.r, dev) == "0", dev
    assert "proto ra" not in routes(h.r)

    in_ns(h.r, "sysctl", "-qw", "net.ipv6.conf.weave.accept_ra=1")  # the control: CVE-2020-11091
    send_ra(h.a, "ethwe", "fe80::a:1", "2001:db8:5f::")
    assert wait_for(lambda: "2001:db8:5f::/64" in routes(h.r)), routes(h.r)
    assert "default via fe80::a:1 dev weave" in routes(h.r)
    assert "2001:db8:5f:" in in_ns(h.r, "ip", "-6", "-br", "addr", "show", "weave").stdout

    assert datapath.ensure(ns_path(h.r), overlay_spec=OverlaySpec(1376)) == [
        "IPv6 router advertisements ignored on weave"]
    in_ns(h.r, "ip", "-6", "route", "flush", "proto", "ra")
    in_ns(h.r, "ip", "-6", "route", "del", "2001:db8:5f::/64", check=False)
    in_ns(h.r, "ip", "-6", "addr", "flush", "dev", "weave", "scope", "global")
    before = routes(h.r)
    send_ra(h.a, "ethwe", "fe80::a:1", "2001:db8:60::")
    time.sleep(0.8)
    assert "2001:db8:60" not in routes(h.r) and "default" not in routes(h.r), routes(h.r)
    assert routes(h.r) == before

    # Out of the bridge (deleted, or a port knocked out) a veth gets the frames itself.
    a_veth, b_veth = (netns.resolve(target.parse_target(f"ns:{x}"), ns_path(h.r)).host_veth
                      for x in (h.a, h.b))
    in_ns(h.r, "ip", "link", "set", a_veth, "nomaster")
    send_ra(h.a, "ethwe", "fe80::a:1", "2001:db8:61::")
    time.sleep(0.8)
    assert "2001:db8:61" not in routes(h.r) and "default" not in routes(h.r), routes(h.r)
    in_ns(h.r, "sysctl", "-qw", f"net.ipv6.conf.{b_veth}.accept_ra=1")
    repairs = datapath.ensure(ns_path(h.r), overlay_spec=OverlaySpec(1376))
    assert sorted(repairs) == [f"IPv6 router advertisements ignored on {b_veth}",
                               f"port {a_veth}: master restored"], repairs
    assert accept_ra(h.r, b_veth) == "0"
