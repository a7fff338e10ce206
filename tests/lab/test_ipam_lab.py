"""IPAM on real namespaces, part 1: forming the ring and what goes into it (IT20-IT24, IT26).

Scenario ids are those of the shared reliability scenarios (IT20-IT31; goals G1 no shared
address, G2 valid rings, G4 allocations block only for a reason). Every test builds its own lab,
removed even on failure, with fast timers (heartbeat 1 s, gossip 2 s, reconnect backoff <= 3 s).
Allocations are HTTP calls from this process to the routers' control sockets (``ipamutil``);
``History`` proves no two live containers shared an address, ``check_now`` that no two routers
hold one address now. Part 2 (restarts, reset, rmpeer: IT25, IT27-IT31) is test_ipam_lab2.py.
"""

from __future__ import annotations

import time

import pytest
from ipamutil import (
    History,
    agreed_ring,
    allocate_at_once,
    call,
    check_ring,
    ipam_report,
    owner_of,
    peer_name,
    ring_entries,
    router_log,
)
from labutil import established_peers, full_mesh, lab, wait_for

pytestmark = pytest.mark.lab

FAST = ("--heartbeat-interval", "1", "--gossip-interval", "2", "--retry-max", "3")
HOSTS3 = ["h1", "h2", "h3"]


def allocate_everywhere(hist: History, name: str, hosts: list[str], each: int) -> float:
    """``each`` allocations per host, all sent at once; the slowest one's seconds. Then the
    routers agree on one valid ring and no address is held twice."""
    jobs = [(h, f"{h}-c{i}") for h in hosts for i in range(each)]
    got = allocate_at_once(hist, name, jobs)
    assert len({cidr for cidr, _ in got.values()}) == len(jobs)
    ring = wait_for("one ring on every host", lambda: agreed_ring(name, hosts), timeout=20)
    for h in hosts:
        check_ring(name, h)
    for (host, _ident), (cidr, _secs) in got.items():
        assert owner_of(ring, cidr) == peer_name(name, host), f"{cidr} outside {host}'s ranges"
    assert len(hist.check_now(name, hosts)) == len(jobs)
    return max(secs for _, secs in got.values())


def test_it20_three_electors_allocating_in_parallel_share_no_address() -> None:
    """IT20: 3 peers with consensus=3, 30 allocations each at once: all complete, no overlap,
    every ring identical and valid."""
    with lab("i20", 3, "--ipalloc-init", "consensus=3", *FAST) as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        allocate_everywhere(History(), "i20", HOSTS3, 30)
        ring = ring_entries("i20", "h1")
        assert {peer for _, _, peer, _, _ in ring} == {peer_name("i20", h) for h in HOSTS3}


def test_seed_workflow_launch_then_joins_allocate_in_parallel() -> None:
    """Seed workflow: `weave lab up` (h1 launches, the others join), then 20 allocations on
    every host at once: all complete, no overlap, one valid ring."""
    with lab("isw", 3, *FAST) as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        allocate_everywhere(History(), "isw", HOSTS3, 20)


def test_it21_allocation_waits_for_a_second_elector() -> None:
    """IT21: consensus=2 with one elector and one observer: an allocation waits (503 with the
    status words after --ipalloc-timeout); once a second elector joins it completes."""
    with lab("i21", 3, "--bare") as net:
        short = ("--ipalloc-timeout", "3", *FAST)
        net.weave("h1", "launch", "--ipalloc-init", "consensus=2", *short)
        net.weave("h2", "join", "198.18.0.1", *short)  # an observer
        wait_for("h1-h2 connected", lambda: established_peers(net.report("h2")) == {"h1"})
        sent = time.monotonic()
        resp = call("i21", "h1", "POST", "/ip/c1")
        waited = time.monotonic() - sent
        assert (resp.status, resp.text) == (503, "awaiting consensus (quorum: 2, known: 1)\n")
        assert 3 <= waited < 5
        observer = call("i21", "h2", "POST", "/ip/c2")
        assert (observer.status, observer.text) == (503, "priming\n")
        primed = net.weave("h1", "prime", check=False)  # exit 13: not ready, with the words
        assert primed.returncode == 13, primed.stderr
        assert "awaiting consensus (quorum: 2, known: 1)" in primed.stderr
        assert ipam_report("i21", "h1")["Entries"] == []

        net.weave("h3", "join", "198.18.0.1", "--ipalloc-init", "consensus=2", *short)
        hist = History()
        joined = time.monotonic()
        wait_for("h1 allocates", lambda: hist.allocate("i21", "h1", "c1"), timeout=30)
        hist.allocate("i21", "h2", "c2")
        assert time.monotonic() - joined < 15  # a re-proposal is at most 10 s away
        ring = wait_for("one ring", lambda: agreed_ring("i21", HOSTS3), timeout=20)
        assert {peer_name("i21", h) for h in ("h1", "h3")} <= {e[2] for e in ring}
        hist.check_now("i21", HOSTS3)


def test_it22_observer_request_starts_the_election_and_nothing_before() -> None:
    """IT22: IPAM stays idle on every host, electors included, until a request; an observer's
    request is what starts the election, and it completes."""
    with lab("i22", 3, "--bare") as net:
        net.weave("h1", "launch", "--ipalloc-init", "consensus=2", *FAST)
        net.weave("h2", "join", "198.18.0.1", *FAST)  # an observer
        net.weave("h3", "join", "198.18.0.1", "--ipalloc-init", "consensus=2", *FAST)
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        time.sleep(2 * 2.0)  # two gossip rounds: nobody starts an election unasked
        for h in HOSTS3:
            rep = ipam_report("i22", h)
            assert (rep["Status"], rep["Entries"], rep["Paxos"]) == ("idle", [], None), h
        assert net.weave("h1", "status", "ipam").stdout.strip() == "idle"

        hist = History()
        hist.allocate("i22", "h2", "c1")
        ring = wait_for("one ring", lambda: agreed_ring("i22", HOSTS3), timeout=20)
        electors = {peer_name("i22", h) for h in ("h1", "h3")}
        assert electors <= {e[2] for e in ring}
        for h in HOSTS3:
            assert ipam_report("i22", h)["Status"] == "ready"
        hist.check_now("i22", HOSTS3)


def test_it23_rings_seeded_separately_never_merge() -> None:
    """IT23: two peers that each formed a ring alone are connected: the IPAM gossip is refused
    with "seeded by different peers" (logged), both routers keep running, neither ring takes
    anything from the other."""
    with lab("i23", 2, "--bare") as net:
        names = {h: net.weave(h, "launch", *FAST).stdout.strip() for h in ("h1", "h2")}
        hist = History()
        before = {h: hist.allocate("i23", h, f"{h}-c1") for h in ("h1", "h2")}
        rings = {h: owners("i23", h) for h in ("h1", "h2")}
        for h in ("h1", "h2"):
            assert {peer for _, _, peer in rings[h]} == {names[h]}

        net.weave("h2", "connect", "198.18.0.1")
        refused = "seeded by different peers"
        wait_for("the refusal is logged",
                 lambda: any(refused in router_log("i23", h) for h in ("h1", "h2")),
                 timeout=20)  # fmt: skip
        line = next(ln for h in ("h1", "h2") for ln in router_log("i23", h).splitlines()
                    if refused in ln)  # fmt: skip
        assert "ERROR" in line and "dropping the connection" in line
        time.sleep(2.0)  # another gossip round, and a reconnection attempt
        for h in ("h1", "h2"):
            assert net.weave(h, "status").returncode == 0
            assert owners("i23", h) == rings[h], f"{h}'s ring changed hands"
            assert call("i23", h, "GET", f"/ip/{h}-c1").text.strip() == before[h]
        # Each side goes on allocating in its own ring only (the two rings cover the same
        # range, so they hand out the same addresses: exactly why they must never merge).
        assert {h: hist.allocate("i23", h, f"{h}-c2") for h in ("h1", "h2")} == {
            "h1": ring_next(before["h1"]), "h2": ring_next(before["h2"])}  # fmt: skip


def owners(name: str, host: str) -> list[tuple[str, int, str]]:
    """The host's ring as (token, size, owner): what a merge would change (free counts and
    versions also move when the owner reports its free space)."""
    return [(token, size, peer) for token, size, peer, _, _ in ring_entries(name, host)]


def ring_next(cidr: str) -> str:
    from ipaddress import IPv4Address

    addr, prefix = cidr.split("/")
    return f"{IPv4Address(addr) + 1}/{prefix}"


def test_it24_a_new_range_discards_the_persisted_ring() -> None:
    """IT24: relaunching with another --ipalloc-range discards the stored ring and addresses
    (logged), and allocation proceeds in the new range."""
    with lab("i24", 1, *FAST) as net:
        old = History().allocate("i24", "h1", "c1")
        assert old.startswith("10.3") and old.endswith("/12")
        net.weave("h1", "stop")
        net.weave("h1", "launch", "--ipalloc-range", "10.99.0.0/16", *FAST)
        assert ("discarding the persisted IPAM state: the allocation range changed from "
                "10.32.0.0/12 to 10.99.0.0/16") in router_log("i24", "h1")  # fmt: skip
        assert call("i24", "h1", "GET", "/ip/c1").status == 404
        assert History().allocate("i24", "h1", "c1") == "10.99.0.1/16"
        rep = ipam_report("i24", "h1")
        assert rep["Range"] == "10.99.0.0/16" and rep["ActiveIPs"] == 1
        check_ring("i24", "h1")


def test_it26_identical_seeds_on_disconnected_peers() -> None:
    """IT26: two peers given the same seed=NAME,NAME while disconnected build the same ring and
    allocate without overlap, before and after they connect; a renamed peer drops its data."""
    n1, n2, n3 = "aa:00:00:00:00:01", "aa:00:00:00:00:02", "aa:00:00:00:00:03"
    seed = ("--ipalloc-init", f"seed={n1},{n2}")
    with lab("i26", 2, "--bare") as net:
        net.weave("h1", "launch", "--name", n1, *seed, *FAST)
        net.weave("h2", "launch", "--name", n2, *seed, *FAST)
        ring = agreed_ring("i26", ["h1", "h2"])
        assert ring is not None and {e[2] for e in ring} == {n1, n2}
        hist = History()
        got = allocate_at_once(hist, "i26", [(h, f"{h}-a{i}") for h in ("h1", "h2")
                                             for i in range(5)])  # fmt: skip
        for (host, _), (cidr, _) in got.items():
            assert owner_of(ring, cidr) == {"h1": n1, "h2": n2}[host]
        hist.check_now("i26", ["h1", "h2"])

        net.weave("h2", "connect", "198.18.0.1")
        wait_for("one ring", lambda: agreed_ring("i26", ["h1", "h2"]), timeout=20)
        allocate_at_once(hist, "i26", [(h, f"{h}-b{i}") for h in ("h1", "h2") for i in range(5)])
        assert len(hist.check_now("i26", ["h1", "h2"])) == 20

        net.weave("h2", "stop")
        hist.released("h2")
        net.weave("h2", "launch", "--name", n3, *seed, "198.18.0.1", *FAST)
        assert f"the peer name changed from {n2} to {n3}" in router_log("i26", "h2")
        assert call("i26", "h2", "GET", "/ip/h2-a0").status == 404
        hist.allocate("i26", "h2", "h2-c0")  # space from h1: the ring gave n3 nothing
        hist.check_now("i26", ["h1", "h2"])


def test_bad_input_is_refused_and_disabled_ipam_is_404() -> None:
    """Bad input through the API: malformed CIDRs, bad idents, subnets outside the range are
    400; a claim outside the range is accepted, one in another peer's range or of an address in
    use is refused naming who holds it; with --ipalloc-range '' every IPAM route is 404."""
    with lab("ibad", 3, "--bare") as net:
        net.weave("h1", "launch", *FAST)
        net.weave("h2", "join", "198.18.0.1", *FAST)
        net.weave("h3", "launch", "--ipalloc-range", "", *FAST)
        hist = History()
        a = hist.allocate("ibad", "h1", "a")
        b = hist.allocate("ibad", "h2", "b")
        wait_for("one ring", lambda: agreed_ring("ibad", ["h1", "h2"]), timeout=20)

        bad = {
            ("POST", "/ip/bad!id"): "invalid container id",
            ("POST", "/ip/" + "x" * 129): "invalid container id",
            ("POST", "/ip/x/10.32.0.0/33"): "prefix length",
            ("POST", "/ip/x/300.1.1.1/12"): "invalid IPv4 address",
            ("POST", "/ip/x/10.32.0.5/12"): "not the start of a /12 block",
            ("POST", "/ip/x/10.99.0.0/16"): "outside the IP allocation range",
            ("GET", "/ip/x/10.32.0.0/40"): "prefix length",
            ("PUT", "/ip/x/10.32.0.1/99"): "prefix length",
            ("PUT", "/ip/x/not.an.ip/12"): "invalid IPv4 address",
            ("DELETE", "/ip/a/10.32.0.999"): "invalid IPv4 address",
            ("PUT", f"/ip/steal/{b}"): f"is owned by other peer {peer_name('ibad', 'h2')}",
            ("PUT", f"/ip/dup/{a}"): "already in use by a",
        }
        for (method, url), reason in bad.items():
            resp = call("ibad", "h1", method, url)
            assert (resp.status, reason in resp.text) == (400, True), (method, url, resp.text)
        assert hist.claim("ibad", "h1", "ext", "192.168.7.7/24").status == 204
        assert call("ibad", "h1", "GET", "/ip/ext").text.strip() == "192.168.7.7/24"
        assert call("ibad", "h1", "GET", "/ip/a").text.strip() == a
        hist.check_now("ibad", ["h1", "h2"])

        disabled = [("POST", "/ip/x"), ("POST", "/ip/x/10.32.0.0/12"), ("GET", "/ip"),
                    ("GET", "/ip/x"), ("PUT", "/ip/x/10.32.0.1/12"), ("DELETE", "/ip/x"),
                    ("GET", "/ring"), ("GET", "/ipinfo/defaultsubnet"), ("DELETE", "/peer"),
                    ("DELETE", "/peer/h1")]  # fmt: skip
        for method, url in disabled:
            resp = call("ibad", "h3", method, url)
            assert (resp.status, "disabled" in resp.text) == (404, True), (method, url)
        assert net.report("h3")["IPAM"] is None
        for cli in (("rmpeer", "h1"), ("prime",)):
            done = net.weave("h3", *cli, check=False)
            assert (done.returncode, "disabled" in done.stderr) == (14, True), done.stderr
