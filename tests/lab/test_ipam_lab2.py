"""IPAM on real namespaces, part 2: restarts, reset and rmpeer (IT25, IT27-IT31).

Same conventions as test_ipam_lab.py (scenario ids of the shared reliability scenarios; goals
G1 no shared address, G3 a restart keeps name, ring and addresses, G4 allocations complete in a
stated bound once their cause clears). Each test builds its own lab, removed even on failure,
with fast timers (heartbeat 1 s so a dead link is noticed in 4 s, gossip 2 s, backoff <= 3 s).
"""

from __future__ import annotations

import re
import subprocess
import threading
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
from labutil import Lab, full_mesh, lab, wait_for, weave

from weave_cli.client import Response
from weave_cli.errors import WeaveError

pytestmark = pytest.mark.lab

FAST = ("--heartbeat-interval", "1", "--gossip-interval", "2", "--retry-max", "3")
HOSTS3 = ["h1", "h2", "h3"]
UNREACHABLE = "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"


def address(host: str) -> str:
    return f"198.18.0.{host[1:]}"


def owner_alive(name: str, host: str, nick: str) -> bool | None:
    """Whether ``host``'s IPAM sees ``nick``, an owner of ring entries, as reachable (None while
    it knows no entry of ``nick``'s: nicknames reach IPAM when it refreshes its view of the mesh,
    every tick)."""
    entries = [e for e in ipam_report(name, host)["Entries"] if e["Nickname"] == nick]
    return all(e["IsKnownPeer"] for e in entries) if entries else None


def owners_seen(name: str, hosts: list[str], nick: str, alive: bool) -> bool:
    return all(owner_alive(name, h, nick) is alive for h in hosts)


def rmpeer(net: Lab, host: str, dead: str) -> subprocess.CompletedProcess[str]:
    """`weave rmpeer <dead>` on ``host``, once ``host``'s mesh has noticed the death (until
    then it is refused as a live peer, exit 6, which changes nothing)."""

    def attempt() -> subprocess.CompletedProcess[str] | None:
        done = net.weave(host, "rmpeer", dead, check=False)
        return None if done.returncode == 6 and "is connected" in done.stderr else done

    out: subprocess.CompletedProcess[str] = wait_for(
        f"{dead} dead on {host}", attempt, timeout=20, interval=0.2
    )
    return out


def taken_over(text: str, dead: str) -> int:
    """The count in rmpeer's first line, "<N> IPs taken over from <dead>"."""
    match = re.fullmatch(rf"(\d+) IPs taken over from {re.escape(dead)}", text.split("\n")[0])
    assert match, text
    return int(match.group(1))


def test_it25_restart_keeps_every_allocation() -> None:
    """IT25: after a restart (of a joiner and of the first host) every ident has the address it
    had; asking again for it gives the same address; a new ident gets another one."""
    with lab("i25", 2, *FAST):
        hist = History()
        had = {(h, i): hist.allocate("i25", h, i) for h in ("h1", "h2") for i in ("c1", "c2")}
        for host in ("h2", "h1"):
            weave("lab", "restart", "--name", "i25", host)
            for (h, ident), cidr in had.items():
                assert call("i25", h, "GET", f"/ip/{ident}").text.strip() == cidr
                assert hist.allocate("i25", h, ident) == cidr
            new = hist.allocate("i25", host, f"new-{host}")
            assert new not in had.values()
        assert len(hist.check_now("i25", ["h1", "h2"])) == 6
        wait_for("one ring", lambda: agreed_ring("i25", ["h1", "h2"]), timeout=20)


def answers(name: str, host: str) -> bool:
    try:
        return call(name, host, "GET", "/status", timeout=2).status == 200
    except WeaveError:
        return False


def test_it27_peer_name_survives_restarts_and_changes_on_reset() -> None:
    """IT27: the peer name is the same after `lab restart`, a crash (the supervisor restarts the
    router) and stop + join; `reset` (after handing the ranges over) gives a new name."""
    with lab("i27", 2, *FAST) as net:
        History().allocate("i27", "h2", "c1")  # h2 owns a range now
        first = peer_name("i27", "h2")
        weave("lab", "restart", "--name", "i27", "h2")
        assert peer_name("i27", "h2") == first
        weave("lab", "kill", "--name", "i27", "h2")
        wait_for("h2 restarted by its supervisor", lambda: answers("i27", "h2"), timeout=30)
        assert peer_name("i27", "h2") == first
        net.weave("h2", "stop")
        net.weave("h2", "join", "198.18.0.1", *FAST)
        assert peer_name("i27", "h2") == first

        handed = net.weave("h2", "reset").stdout
        assert re.fullmatch(r"\d+ IPs handed over to \S+\(h1\)\n", handed), handed
        net.weave("h2", "join", "198.18.0.1", *FAST)
        second = peer_name("i27", "h2")
        assert second != first
        assert call("i27", "h2", "GET", "/ip/c1").status == 404
        wait_for("h1 holds h2's old ranges", lambda: first not in
                 {e[2] for e in ring_entries("i27", "h1")}, timeout=10)  # fmt: skip


def test_it28_ring_restored_from_disk_and_claims() -> None:
    """IT28 (as far as the product has it): after a restart the ring comes back from disk; a
    claim of a live address by its holder succeeds, as does one of a free address of ours; a
    claim in another peer's range is refused naming the owner; one outside the range is
    accepted."""
    with lab("i28", 2, *FAST) as net:
        hist = History()
        a = hist.allocate("i28", "h1", "a")
        b = hist.allocate("i28", "h2", "b")
        ring = wait_for("one ring", lambda: agreed_ring("i28", ["h1", "h2"]), timeout=20)
        h1 = peer_name("i28", "h1")
        net.weave("h1", "stop")  # nothing can come back by gossip: h2 restores from disk alone
        weave("lab", "restart", "--name", "i28", "h2")
        assert "IPAM: restored the ring and 1 address(es)" in router_log("i28", "h2")
        assert [e[:3] for e in ring_entries("i28", "h2")] == [e[:3] for e in ring]

        assert hist.claim("i28", "h2", "b", b).status == 204
        prefix = b.split("/")[1]
        mine = next_free(b)
        assert owner_of(ring, mine) == peer_name("i28", "h2")
        assert hist.claim("i28", "h2", "c", f"{mine}/{prefix}").status == 204
        assert call("i28", "h2", "GET", "/ip/c").text.strip() == f"{mine}/{prefix}"
        taken = hist.claim("i28", "h2", "d", b)
        assert (taken.status, "already in use by b" in taken.text) == (400, True), taken.text
        theirs = hist.claim("i28", "h2", "e", next_free(a) + f"/{prefix}")
        assert theirs.status == 400 and f"owned by other peer {h1}" in theirs.text, theirs.text
        assert hist.claim("i28", "h2", "ext", "192.168.50.7/24").status == 204
        assert call("i28", "h2", "GET", "/ip/ext").text.strip() == "192.168.50.7/24"
        check_ring("i28", "h2")
        hist.check()


def next_free(cidr: str) -> str:
    from ipaddress import IPv4Address

    return str(IPv4Address(cidr.split("/")[0]) + 1)


def test_it29_rolling_reset_never_strands_a_range() -> None:
    """IT29 (F07-like): reset each host in turn (its ranges go to a live peer), relaunch it
    with join; afterwards an allocation on every host completes within 10 s."""
    with lab("i29", 3, *FAST) as net:
        hist = History()
        allocate_at_once(hist, "i29", [(h, f"{h}-old") for h in HOSTS3])  # all own ranges
        old = set()
        for host in HOSTS3:
            old.add(peer_name("i29", host))
            handed = net.weave(host, "reset").stdout
            match = re.fullmatch(r"(\d+) IPs handed over to \S+\((h\d)\)\n", handed)
            assert match and int(match.group(1)) > 0 and match.group(2) != host, handed
            hist.released(host)
            net.weave(host, "join", *[address(h) for h in HOSTS3 if h != host], *FAST)
            wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        got = allocate_at_once(hist, "i29", [(h, f"{h}-new") for h in HOSTS3])
        assert max(secs for _, secs in got.values()) < 10, got
        ring = wait_for("one ring", lambda: agreed_ring("i29", HOSTS3), timeout=20)
        assert not {peer for _, _, peer, _, _ in ring} & old, "a range stranded on a reset peer"
        hist.check_now("i29", HOSTS3)
        check_ring("i29", "h1")


def test_it30_rmpeer_hands_a_dead_peers_ranges_over() -> None:
    """IT30: h1, which owns every range, dies; allocations on the others wait with the words
    for it; rmpeer of a live peer is 400, of an unknown one 404; `rmpeer h1` on h2 takes
    everything over, and allocations on h2 and h3 then complete within 5 s."""
    with lab("i30", 3, "--ipalloc-timeout", "3", *FAST) as net:
        hist = History()
        hist.allocate("i30", "h1", "first")
        wait_for("h2, h3 know h1", lambda: owners_seen("i30", ["h2", "h3"], "h1", True), 10)
        live = call("i30", "h2", "DELETE", "/peer/h1")
        assert live.status == 400 and "is connected" in live.text, live.text
        refused = net.weave("h2", "rmpeer", "h1", check=False)
        assert refused.returncode == 6 and "is connected" in refused.stderr, refused.stderr
        for unknown in ("nosuch", "aa:bb:cc:dd:ee:ff"):
            resp = call("i30", "h2", "DELETE", f"/peer/{unknown}")
            assert (resp.status, resp.text) == (404, f"unknown peer {unknown}\n")
            cli = net.weave("h2", "rmpeer", unknown, check=False)
            assert cli.returncode == 14 and f"unknown peer {unknown}" in cli.stderr, cli.stderr
        h1_size = sum(e["Size"] for e in ipam_report("i30", "h2")["Entries"])

        net.weave("h1", "stop")
        hist.released("h1")
        wait_for("h3 sees h1 dead", lambda: owners_seen("i30", ["h3"], "h1", False), 10)
        blocked = call("i30", "h3", "POST", "/ip/early")
        assert (blocked.status, blocked.text) == (503, UNREACHABLE + "\n")
        assert "(h1)" in net.weave("h3", "status", "ipam").stdout.split("- unreachable!")[0]

        done = rmpeer(net, "h2", "h1")
        assert done.returncode == 0 and taken_over(done.stdout, "h1") == h1_size, done.stderr
        began = time.monotonic()
        got = allocate_at_once(hist, "i30", [("h2", "c2"), ("h3", "c3")])
        assert time.monotonic() - began < 5, got
        ring = wait_for("one ring", lambda: agreed_ring("i30", ["h2", "h3"]), timeout=20)
        for (host, _), (cidr, _) in got.items():
            assert owner_of(ring, cidr) == peer_name("i30", host)
        hist.check_now("i30", ["h2", "h3"])


def conflicts(name: str, host: str) -> list[str]:
    found: list[str] = ipam_report(name, host)["Conflicts"]
    return found


def conflict_lines(name: str, host: str) -> int:
    return sum(
        "ERROR" in ln and "IPAM conflict" in ln for ln in router_log(name, host).splitlines()
    )


def test_it31_double_rmpeer_is_detected_and_resolved_to_one_owner() -> None:
    """IT31: rmpeer of one dead peer on two hosts. At the same moment on connected hosts: both
    answer 409 naming the conflict. While the two are partitioned: both take over, and after
    the heal the conflict is logged and reported. Either way every ring ends with one owner
    per range (the same on all hosts) and no address is held twice."""
    hosts = ["h1", "h2", "h3", "h4"]
    with lab("i31", 4, *FAST) as net:
        hist = History()
        hist.allocate("i31", "h1", "first")  # h1 owns every range
        wait_for("all know h1", lambda: owners_seen("i31", hosts[1:], "h1", True), 10)
        net.weave("h1", "stop")
        hist.released("h1")
        wait_for("h2, h3 see h1 dead", lambda: owners_seen("i31", ["h2", "h3"], "h1", False), 10)
        contested = tokens_of("i31", "h2", "h1")
        both = rmpeer_at_once("i31", ["h2", "h3"], "h1")
        for h, resp in both.items():
            assert taken_over(resp.text, "h1") > 0, f"{h} took nothing: no race reproduced"
            assert resp.status == 409 and "\nconflict: " in resp.text, (h, resp.text)
        winner, loser = resolved_once("i31", ["h2", "h3", "h4"], ["h2", "h3"], contested)

        # Now the winner dies too, and the two survivors take it over while partitioned.
        weave("lab", "partition", "--name", "i31", loser, "h4")
        # Once the partition has cut them off, the dead peers were their only links: only a
        # target of their own brings them back together after the heal.
        net.weave(loser, "connect", address("h4"))
        winner_name = peer_name("i31", winner)
        net.weave(winner, "stop")
        before = {h: (len(conflicts("i31", h)), conflict_lines("i31", h)) for h in (loser, "h4")}
        wait_for(f"{loser} sees {winner} dead", lambda: owners_seen("i31", [loser], winner, False))
        contested = tokens_of("i31", loser, winner)
        for h, dead in ((loser, winner), ("h4", winner_name)):  # by nickname, by name
            done = rmpeer(net, h, dead)
            assert done.returncode == 0 and taken_over(done.stdout, dead) > 0, done
        weave("lab", "heal", "--name", "i31")
        resolved_once("i31", [loser, "h4"], [loser, "h4"], contested, before)
        for h in (loser, "h4"):
            text = net.weave(h, "status", "ipam").stdout
            assert "\nconflict: " in text and "claimed by both" in text, text
            assert "Conflicts: " in net.weave(h, "status").stdout
        got = allocate_at_once(hist, "i31", [(h, f"{h}-c{i}") for h in (loser, "h4")
                                             for i in range(5)])  # fmt: skip
        ring = wait_for("one ring", lambda: agreed_ring("i31", [loser, "h4"]), timeout=20)
        for (host, _), (cidr, _) in got.items():
            assert owner_of(ring, cidr) == peer_name("i31", host)
        hist.check_now("i31", [loser, "h4"])


def rmpeer_at_once(name: str, hosts: list[str], dead: str) -> dict[str, Response]:
    gate = threading.Barrier(len(hosts))
    out: dict[str, Response] = {}

    def one(host: str) -> None:
        gate.wait()
        out[host] = call(name, host, "DELETE", f"/peer/{dead}")

    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def tokens_of(name: str, host: str, nick: str) -> set[str]:
    """The tokens of ``nick``'s ring entries, as ``host`` sees them."""
    return {e["Token"] for e in ipam_report(name, host)["Entries"] if e["Nickname"] == nick}


def resolved_once(
    name: str,
    hosts: list[str],
    claimants: list[str],
    contested: set[str],
    before: dict[str, tuple[int, int]] | None = None,
) -> tuple[str, str]:
    """After ``claimants`` both took over the ``contested`` tokens: all ``hosts`` agree on one
    ring in which the claimant with the greater peer name owns every contested token; each
    claimant reports a new conflict and logged an ERROR line. Returns (winner, loser)."""
    names = {h: peer_name(name, h) for h in claimants}
    winner = max(claimants, key=lambda h: names[h])
    loser = next(h for h in claimants if h != winner)
    ring = wait_for("one ring after the double takeover",
                    lambda: agreed_ring(name, hosts), timeout=25)  # fmt: skip
    assert contested and {peer for token, _, peer, _, _ in ring if token in contested} == {
        names[winner]}, ring  # fmt: skip
    seen = before or {h: (0, 0) for h in claimants}
    wait_for("the claimants report the conflict",
             lambda: all(len(conflicts(name, h)) > seen[h][0] for h in claimants),
             timeout=10)  # fmt: skip
    for h in claimants:
        assert any("claimed by both" in c for c in conflicts(name, h)[seen[h][0] :]), h
        assert conflict_lines(name, h) > seen[h][1], f"no ERROR 'IPAM conflict' line on {h}"
    for h in hosts:
        check_ring(name, h)
    return winner, loser
