"""The bridge and the whole-host ensure/remove_all on a real kernel, in namespaces made here.

The "router" is a namespace of the test; ``datapath.ensure`` and ``remove_all`` get its path.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from netutil import MemoryBook, echo, echo_server, in_ns, ns_path

from weave_cli.net import attach, datapath, netns, target
from weave_cli.net.errors import DatapathError

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]


def link_detail(ns: str, dev: str) -> str:
    return in_ns(ns, "ip", "-d", "link", "show", dev).stdout


def test_ensure_creates_the_bridge_and_is_idempotent(make_ns: MakeNs) -> None:
    r = make_ns("r")
    repairs = datapath.ensure(ns_path(r), mtu=1400)
    assert repairs == ["created bridge weave (mtu 1400)", "nft table inet weave created"]
    detail = link_detail(r, "weave")
    assert "mtu 1400" in detail and ",UP" in detail
    assert "bridge forward_delay 0" in detail and "stp_state 0" in detail
    assert "addrgenmode none" in detail
    mac = detail.split("link/ether ")[1].split()[0]
    assert datapath.ensure(ns_path(r), mtu=1400) == []
    assert link_detail(r, "weave").split("link/ether ")[1].split()[0] == mac
    assert "inet6" not in in_ns(r, "ip", "addr", "show", "weave").stdout


def test_drift_is_repaired(make_ns: MakeNs) -> None:
    r = make_ns("r")
    datapath.ensure(ns_path(r))
    in_ns(r, "ip", "link", "set", "weave", "down", "mtu", "1500")
    repairs = datapath.ensure(ns_path(r))
    assert repairs == ["bridge weave: mtu 1500 -> 1376", "bridge weave was down: brought up"]
    assert "mtu 1376" in link_detail(r, "weave") and ",UP" in link_detail(r, "weave")


def test_deleted_bridge_comes_back_with_its_ports(make_ns: MakeNs, procs: list[object]) -> None:
    r, a, b = make_ns("r"), make_ns("a"), make_ns("b")
    datapath.ensure(ns_path(r))
    book = MemoryBook()
    for name in (a, b):
        attach.attach(book, netns_ref(name, r), [], ns_path(r))
    procs.append(echo_server(a))
    assert echo(b, "10.32.0.1")
    in_ns(r, "ip", "link", "del", "weave")
    assert not echo(b, "10.32.0.1", seconds=0.6)
    repairs = datapath.ensure(ns_path(r))
    assert repairs[0] == "created bridge weave (mtu 1376)"
    assert sum("restored" in line for line in repairs) == 2
    assert echo(b, "10.32.0.1")
    ports = in_ns(r, "ip", "link", "show", "master", "weave").stdout
    assert ports.count("vethwepl") == 2


def netns_ref(name: str, router: str) -> target.NetnsRef:
    return netns.resolve(target.parse_target(f"ns:{name}"), ns_path(router))


def test_a_device_named_weave_that_is_not_a_bridge_is_left_alone(make_ns: MakeNs) -> None:
    r = make_ns("r")
    in_ns(r, "ip", "link", "add", "weave", "type", "veth", "peer", "name", "weavepeer")
    with pytest.raises(DatapathError, match="is a veth, not a bridge"):
        datapath.ensure(ns_path(r))
    assert "veth" in link_detail(r, "weave")


def test_remove_all_removes_exactly_ours(make_ns: MakeNs) -> None:
    r, a = make_ns("r"), make_ns("a")
    datapath.ensure(ns_path(r))
    attach.attach(MemoryBook(), netns_ref(a, r), [], ns_path(r))
    in_ns(r, "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
    in_ns(r, "ip", "link", "add", "vethwepx", "type", "veth", "peer", "name", "vethfoo")
    in_ns(r, "nft", "add", "table", "inet", "mine")
    removed = datapath.remove_all(ns_path(r))
    assert "nft table inet weave" in removed
    assert any(x.startswith("vethwepl") for x in removed) and "weave" in removed
    names = in_ns(r, "ip", "-o", "link").stdout
    assert "weave" not in names.replace("vethwepx", "")
    assert "other0" in names and "vethfoo" in names and "vethwepx" in names
    assert "ethwe" not in in_ns(a, "ip", "-o", "link").stdout
    assert in_ns(r, "nft", "list", "tables").stdout.split() == ["table", "inet", "mine"]
    assert datapath.remove_all(ns_path(r)) == []


def test_remove_all_in_a_clean_namespace_is_a_no_op(make_ns: MakeNs) -> None:
    r = make_ns("r")
    assert datapath.remove_all(ns_path(r)) == []
