"""attach, detach, expose, hide and ps on a real kernel, with an in-memory IPAM.

Each test builds a "router" namespace with the bridge (``datapath.ensure``) and container
namespaces, and checks both what is there afterwards and what is *not*: a failed attach leaves
no veth, no ethwe and no address taken from IPAM.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from ipaddress import IPv4Interface

import pytest
from netutil import MemoryBook, echo, echo_server, in_ns, ns_path

from weave_cli.errors import NotRunningError, RouterError, UsageError
from weave_cli.net import attach, datapath, expose, netns, ps, target
from weave_cli.net.addrspec import parse_addr
from weave_cli.net.errors import (
    AttachConflictError,
    DatapathError,
    NotAttachedError,
    TargetNotFoundError,
)

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]
Procs = list[subprocess.Popen[str]]


def ref(name: str, router: str) -> target.NetnsRef:
    return netns.resolve(target.parse_target(f"ns:{name}"), ns_path(router))


def links(ns: str) -> str:
    return in_ns(ns, "ip", "-o", "link").stdout


@pytest.fixture
def router(make_ns: MakeNs) -> str:
    r = make_ns("r")
    datapath.ensure(ns_path(r))
    return r


def test_two_containers_talk_over_the_bridge(router: str, make_ns: MakeNs, procs: Procs) -> None:
    a, b, book = make_ns("a"), make_ns("b"), MemoryBook()
    got = attach.attach(book, ref(a, router), [], ns_path(router))
    assert got.addrs == [IPv4Interface("10.32.0.1/12")] and got.created
    assert got.ident == f"ns:{a}" and book.owned == {f"ns:{a}": got.addrs}
    attach.attach(book, ref(b, router), [parse_addr("ip:10.32.0.9/12")], ns_path(router))
    procs.append(echo_server(a))
    assert echo(b, "10.32.0.1")
    eth = in_ns(a, "ip", "-d", "link", "show", "ethwe").stdout
    assert "mtu 1376" in eth and ",UP" in eth
    routes = in_ns(a, "ip", "route").stdout
    assert "10.32.0.0/12 dev ethwe" in routes and "224.0.0.0/4 dev ethwe" in routes
    host_end = ref(a, router).host_veth
    detail = in_ns(router, "ip", "-d", "link", "show", host_end).stdout
    assert "master weave" in detail and f"alias weave-attached ns:{a} /run/netns/{a}" in detail


def test_attaching_twice_is_idempotent(router: str, make_ns: MakeNs) -> None:
    a, book = make_ns("a"), MemoryBook()
    first = attach.attach(book, ref(a, router), [], ns_path(router))
    again = attach.attach(book, ref(a, router), [], ns_path(router))
    assert again.addrs == first.addrs and not again.created
    explicit = [parse_addr("10.32.0.1/12")]
    assert attach.attach(book, ref(a, router), explicit, ns_path(router)).addrs == first.addrs
    assert in_ns(a, "ip", "-4", "-o", "addr", "show", "ethwe").stdout.count("inet ") == 1
    # A second subnet is a second address, as in the original.
    more = attach.attach(book, ref(a, router), [parse_addr("net:10.40.0.0/24")], ns_path(router))
    assert more.addrs == [IPv4Interface("10.40.0.1/24")]
    assert in_ns(a, "ip", "-4", "-o", "addr", "show", "ethwe").stdout.count("inet ") == 2


def test_conflicting_address_is_refused_and_nothing_changes(router: str, make_ns: MakeNs) -> None:
    a, book = make_ns("a"), MemoryBook()
    attach.attach(book, ref(a, router), [], ns_path(router))
    before, owned = in_ns(a, "ip", "-4", "addr").stdout, dict(book.owned)
    for word in ("10.32.0.7/12", "10.32.0.1/24"):
        with pytest.raises(AttachConflictError, match="is already attached"):
            attach.attach(book, ref(a, router), [parse_addr(word)], ns_path(router))
    assert in_ns(a, "ip", "-4", "addr").stdout == before and book.owned == owned


def test_address_taken_by_another_target_is_refused(router: str, make_ns: MakeNs) -> None:
    a, b, book = make_ns("a"), make_ns("b"), MemoryBook()
    attach.attach(book, ref(a, router), [], ns_path(router))
    with pytest.raises(RouterError, match="already in use by"):
        attach.attach(book, ref(b, router), [parse_addr("10.32.0.1/12")], ns_path(router))
    assert "ethwe" not in links(b) and f"ns:{b}" not in book.owned


def test_failure_after_the_veth_exists_rolls_everything_back(router: str, make_ns: MakeNs) -> None:
    a, book = make_ns("a"), MemoryBook()
    in_ns(a, "ip", "route", "add", "224.0.0.0/4", "dev", "lo")  # our multicast route will clash
    with pytest.raises(DatapathError, match="route for 224.0.0.0/4 via ethwe: File exists"):
        attach.attach(book, ref(a, router), [], ns_path(router))
    assert "ethwe" not in links(a) and "vethwepl" not in links(router)
    assert book.owned == {} and book.calls[-1] == f"free ns:{a} 10.32.0.1"
    done = attach.attach(book, ref(a, router), [], ns_path(router), multicast_route=False)
    assert done.addrs == [IPv4Interface("10.32.0.1/12")]


def test_failed_allocation_gives_back_what_it_took(router: str, make_ns: MakeNs) -> None:
    a, book = make_ns("a"), MemoryBook()
    book.fail_allocate_after = 1
    specs = [parse_addr("net:10.40.0.0/24"), parse_addr("net:10.41.0.0/24")]
    with pytest.raises(RouterError, match="no free address"):
        attach.attach(book, ref(a, router), specs, ns_path(router))
    assert book.owned == {} and "ethwe" not in links(a) and "vethwepl" not in links(router)


def test_foreign_ethwe_is_refused(router: str, make_ns: MakeNs) -> None:
    a, book = make_ns("a"), MemoryBook()
    in_ns(a, "ip", "link", "add", "ethwe", "type", "veth", "peer", "name", "other")
    with pytest.raises(AttachConflictError, match="did not create"):
        attach.attach(book, ref(a, router), [], ns_path(router))
    assert book.calls == [] and "vethwepl" not in links(router)


def test_missing_bridge_missing_namespace_and_own_namespace(make_ns: MakeNs) -> None:
    r, a, book = make_ns("r"), make_ns("a"), MemoryBook()
    with pytest.raises(NotRunningError, match='bridge "weave" not present'):
        attach.attach(book, ref(a, r), [], ns_path(r))
    assert book.calls == [] and "ethwe" not in links(a)
    with pytest.raises(TargetNotFoundError, match="does not exist"):
        netns.resolve(target.parse_target("ns:wnt-no-such-namespace"), ns_path(r))
    with pytest.raises(UsageError, match="own network namespace"):
        netns.resolve(target.parse_target(f"ns:{r}"), ns_path(r))
    with pytest.raises(UsageError, match="outside the weave range"):
        datapath.ensure(ns_path(r))
        attach.attach(book, ref(a, r), [parse_addr("192.168.5.5/24")], ns_path(r))
    assert book.calls == [] and "ethwe" not in links(a)


def test_pid_target_resolves_to_the_named_namespace(router: str, make_ns: MakeNs,
                                                    procs: Procs) -> None:
    a = make_ns("a")
    sleeper = subprocess.Popen(["nsenter", f"--net={ns_path(a)}", "--", "sleep", "30"],
                               text=True)
    procs.append(sleeper)
    found = None
    for _ in range(100):  # until nsenter has exec'd sleep inside the namespace
        found = netns.inode_of(f"/proc/{sleeper.pid}/ns/net")
        if found == ref(a, router).inode:
            break
        subprocess.run(["sleep", "0.02"])
    got = netns.resolve(target.parse_target(f"pid:{sleeper.pid}"), ns_path(router))
    assert got.ident == f"ns:{a}" and got.path == ns_path(a)
    with pytest.raises(TargetNotFoundError, match="no process"):
        netns.resolve(target.parse_target("pid:999999999"), ns_path(router))


def test_detach_some_then_all(router: str, make_ns: MakeNs) -> None:
    a, book = make_ns("a"), MemoryBook()
    specs = [parse_addr("net:default"), parse_addr("net:10.40.0.0/24")]
    attach.attach(book, ref(a, router), specs, ns_path(router))
    with pytest.raises(NotAttachedError, match="no address matching ip:10.32.0.5/12"):
        attach.detach(book, ref(a, router), [parse_addr("10.32.0.5/12")], ns_path(router))
    gone = attach.detach(book, ref(a, router), [parse_addr("net:10.40.0.0/24")], ns_path(router))
    assert gone == [IPv4Interface("10.40.0.1/24")] and "ethwe" in links(a)
    assert book.owned == {f"ns:{a}": [IPv4Interface("10.32.0.1/12")]}
    assert attach.detach(book, ref(a, router), [], ns_path(router)) == [
        IPv4Interface("10.32.0.1/12")
    ]
    assert "ethwe" not in links(a) and "vethwepl" not in links(router) and book.owned == {}
    with pytest.raises(NotAttachedError, match="is not attached"):
        attach.detach(book, ref(a, router), [], ns_path(router))


def test_expose_hide_and_ps(router: str, make_ns: MakeNs, procs: Procs) -> None:
    a, book = make_ns("a"), MemoryBook()
    attach.attach(book, ref(a, router), [], ns_path(router))
    procs.append(echo_server(a))
    assert not echo(router, "10.32.0.1", seconds=0.6)  # no host access by default
    shown = expose.expose(book, [], ns_path(router))
    assert shown == [IPv4Interface("10.32.0.2/12")]
    assert expose.expose(book, [], ns_path(router)) == shown  # idempotent
    assert echo(router, "10.32.0.1")
    rules = in_ns(router, "nft", "list", "table", "inet", "weave").stdout
    assert rules.count("masquerade") == 2 and "10.32.0.0/12" in rules
    lines = [ps.format_line(e) for e in ps.entries(ns_path(router))]
    assert lines[0].startswith("weave:expose ") and lines[0].endswith(" 10.32.0.2/12")
    assert lines[1].startswith(f"ns:{a} ") and lines[1].endswith(" 10.32.0.1/12")
    assert len(lines) == 2
    assert expose.hide(book, [], ns_path(router)) == shown
    assert expose.hide(book, [], ns_path(router)) == []
    assert "masquerade" not in in_ns(router, "nft", "list", "table", "inet", "weave").stdout
    assert "weave:expose" not in book.owned
    assert not echo(router, "10.32.0.1", seconds=0.6)
