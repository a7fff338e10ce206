"""Our nftables table and iptables rules on a real kernel, inside test namespaces.

A new network namespace has bridge-nf-call-iptables on, so traffic between two containers on
the bridge really passes iptables FORWARD there: with Docker's FORWARD policy DROP it stops,
until ``datapath.ensure`` has put our ACCEPT rules in DOCKER-USER (or FORWARD).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable

import pytest
from netutil import MemoryBook, echo, echo_server, in_ns, ns_path

from weave_cli.net import attach, datapath, firewall, netns, nft, target

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]
Procs = list[subprocess.Popen[str]]
needs_iptables = pytest.mark.skipif(
    shutil.which("iptables") is None and shutil.which("iptables", path="/usr/sbin") is None,
    reason="needs iptables (apt-get install iptables)",
)


def rules(ns: str, chain: str) -> list[str]:
    return [line for line in in_ns(ns, "iptables", "-S", chain).stdout.splitlines()
            if line.startswith("-A")]


def two_containers(make_ns: MakeNs, procs: Procs) -> tuple[str, str]:
    r, a, b = make_ns("r"), make_ns("a"), make_ns("b")
    datapath.ensure(ns_path(r))
    book = MemoryBook()
    for name in (a, b):
        ref = netns.resolve(target.parse_target(f"ns:{name}"), ns_path(r))
        attach.attach(book, ref, [], ns_path(r))
    procs.append(echo_server(a))
    assert echo(b, "10.32.0.1")
    return r, b


def test_table_matches_the_rendering_and_a_deleted_rule_is_restored(make_ns: MakeNs) -> None:
    r = make_ns("r")
    datapath.ensure(ns_path(r))
    doc = json.loads(in_ns(r, "nft", "-j", "list", "table", "inet", "weave").stdout)
    assert nft.canonical_listing(doc) == nft.canonical(nft.desired([]))
    handle = next(e["rule"]["handle"] for e in doc["nftables"]
                  if "rule" in e and e["rule"]["comment"] == "weave:to-bridge")
    in_ns(r, "nft", "delete", "rule", "inet", "weave", "forward", "handle", str(handle))
    assert firewall.ensure_table(ns_path(r), []) == ["nft table inet weave rewritten"]
    assert 'oifname "weave" accept' in in_ns(r, "nft", "list", "table", "inet", "weave").stdout
    in_ns(r, "nft", "delete", "table", "inet", "weave")
    assert datapath.ensure(ns_path(r)) == ["nft table inet weave created"]


@needs_iptables
def test_docker_user_rules_open_a_drop_policy(make_ns: MakeNs, procs: Procs) -> None:
    r, b = two_containers(make_ns, procs)
    for args in (["-N", "DOCKER-USER"], ["-A", "DOCKER-USER", "-j", "RETURN"],
                 ["-I", "FORWARD", "-j", "DOCKER-USER"], ["-P", "FORWARD", "DROP"]):
        in_ns(r, "iptables", *args)
    assert not echo(b, "10.32.0.1", seconds=0.6)  # Docker's policy really drops bridged traffic
    repairs = datapath.ensure(ns_path(r))
    assert sorted(repairs) == ["iptables rule weave:from-bridge inserted into DOCKER-USER",
                               "iptables rule weave:to-bridge inserted into DOCKER-USER"]
    assert echo(b, "10.32.0.1")
    assert rules(r, "DOCKER-USER") == [
        '-A DOCKER-USER -i weave -m comment --comment "weave:from-bridge" -j ACCEPT',
        '-A DOCKER-USER -o weave -m comment --comment "weave:to-bridge" -j ACCEPT',
        "-A DOCKER-USER -j RETURN",
    ]
    assert rules(r, "FORWARD") == ["-A FORWARD -j DOCKER-USER"]
    assert datapath.ensure(ns_path(r)) == []
    datapath.remove_all(ns_path(r))
    assert rules(r, "DOCKER-USER") == ["-A DOCKER-USER -j RETURN"]
    assert rules(r, "FORWARD") == ["-A FORWARD -j DOCKER-USER"]


@needs_iptables
def test_forward_drop_without_docker_user_then_docker_arrives(make_ns: MakeNs,
                                                               procs: Procs) -> None:
    r, b = two_containers(make_ns, procs)
    in_ns(r, "iptables", "-P", "FORWARD", "DROP")
    assert not echo(b, "10.32.0.1", seconds=0.6)
    datapath.ensure(ns_path(r))
    assert echo(b, "10.32.0.1")
    assert len(rules(r, "FORWARD")) == 2
    in_ns(r, "iptables", "-N", "DOCKER-USER")
    in_ns(r, "iptables", "-I", "FORWARD", "-j", "DOCKER-USER")
    repairs = datapath.ensure(ns_path(r))
    assert sum("removed from FORWARD" in line for line in repairs) == 2
    assert rules(r, "FORWARD") == ["-A FORWARD -j DOCKER-USER"]
    assert len(rules(r, "DOCKER-USER")) == 2
    assert echo(b, "10.32.0.1")


@needs_iptables
def test_accepting_forward_gets_no_rules(make_ns: MakeNs) -> None:
    r = make_ns("r")
    datapath.ensure(ns_path(r))
    assert rules(r, "FORWARD") == []
    assert in_ns(r, "iptables", "-S", "DOCKER-USER", check=False).returncode != 0
