"""IPAM under faults on real namespaces, part 1: partitions and a crash (F01-F04).

Scenario ids are those of the shared reliability scenarios (F01-F10, goals G1, G4, G9). Every
test builds its own lab (removed even on failure) with fast timers: heartbeat 1 s (a dead link
is noticed after 4 s), gossip every 2 s, reconnect backoff capped at 3 s. Ranges are small so
that they can be used up quickly. Allocations are HTTP calls from this process straight to the
routers' control sockets (``ipamutil``); ``History`` proves that no two live containers ever
shared an address, ``check_now`` that no two routers hold one address now.

Part 2 (restarts and the database, F05-F10) is ``test_ipam_faults_restart.py``.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from ipamutil import History, call, ipam_report, owned, ring_entries, stored_seeds
from labutil import Lab, established_peers, full_mesh, lab, wait_for, weave

pytestmark = pytest.mark.lab

GOSSIP, BACKOFF = 2.0, 3.0
FAST = ("--heartbeat-interval", "1", "--gossip-interval", "2", "--retry-max", "3")
CONVERGE = 2 * GOSSIP + BACKOFF  # G9: after a heal, rings agree within this
HOSTS3 = ["h1", "h2", "h3"]
UNREACHABLE = "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"


def split_h1(name: str, net: Lab) -> None:
    """Partition {h1} | {h2, h3} and wait until h1 has no connection left."""
    weave("lab", "partition", "--name", name, "h1", "h2")
    weave("lab", "partition", "--name", name, "h1", "h3")
    wait_for("h1 cut off", lambda: not established_peers(net.report("h1")), timeout=20)


def others_unreachable(name: str, host: str) -> bool:
    """On ``host``, every ring entry of another peer is marked unreachable (and there is one)."""
    theirs = [e for e in ipam_report(name, host)["Entries"] if e["Nickname"] != host]
    return bool(theirs) and not any(e["IsKnownPeer"] for e in theirs)


def same_rings(name: str, hosts: list[str]) -> list[tuple[str, int, str, int, int]] | None:
    rings = [ring_entries(name, h) for h in hosts]
    return rings[0] if rings[0] and all(r == rings[0] for r in rings) else None


def converge_after_heal(name: str, hosts: list[str], deadline: float) -> float:
    """Heal every partition; seconds until all rings are equal (fails past ``deadline``)."""
    weave("lab", "heal", "--name", name)
    healed = time.monotonic()
    wait_for("rings equal after the heal", lambda: same_rings(name, hosts), deadline, 0.1)
    return time.monotonic() - healed


def in_parallel(jobs: list[tuple[str, str]], hist: History, name: str) -> dict[str, str]:
    """Allocate ``(host, ident)`` all at once; ident -> CIDR, raising on any failure."""
    got: dict[str, str] = {}
    errors: list[str] = []

    def one(host: str, ident: str) -> None:
        try:
            got[ident] = hist.allocate(name, host, ident)
        except Exception as err:  # reported below, with the others
            errors.append(f"{ident}@{host}: {err}")

    threads = [threading.Thread(target=one, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return got


def own_addresses(name: str, host: str) -> set[str]:
    """Addresses of the default subnet (= the range) inside ``host``'s own ring entries."""
    me = call(name, host, "GET", "/report").json()["Router"]["Name"]
    rep = ipam_report(name, host)
    base, _, bits = rep["Range"].partition("/")
    first = ip_int(base) + 1  # neither the network nor the broadcast address
    last = ip_int(base) + 2 ** (32 - int(bits)) - 2
    out = set()
    for e in rep["Entries"]:
        if e["Peer"] == me:
            start = ip_int(e["Token"])
            out |= {
                ip_str(a) for a in range(max(start, first), min(start + e["Size"] - 1, last) + 1)
            }
    return out


def ip_int(dotted: str) -> int:
    return int.from_bytes(bytes(int(x) for x in dotted.split(".")), "big")


def ip_str(value: int) -> str:
    return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))


def test_f01_partition_each_side_allocates_in_its_own_ranges_then_rings_converge(
    lab_names: object,
) -> None:
    """F01 (G1, G9): {h1}|{h2,h3} while every host allocates in the ranges it owns: no
    address twice; after the heal all rings are equal within 2 gossip intervals + backoff."""
    name = "f01"
    hist = History()
    with lab(name, 3, *FAST, "--ipalloc-range", "10.40.0.0/24") as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        for h in HOSTS3:  # every host owns space before the split
            hist.allocate(name, h, f"first-{h}")
        wait_for("one ring before the split", lambda: same_rings(name, HOSTS3), 10, 0.2)
        mine = {h: own_addresses(name, h) for h in HOSTS3}
        split_h1(name, net)
        jobs = [(h, f"{h}-{i}") for h in HOSTS3 for i in range(6)]
        got = in_parallel(jobs, hist, name)
        for h in HOSTS3:  # in the ranges it owned before: nobody needed space from anybody
            assert {got[f"{h}-{i}"].split("/")[0] for i in range(6)} <= mine[h], (h, got)
        hist.check_now(name, HOSTS3)
        # Both sides record their new free counts (a tick): the rings differ before the heal.
        wait_for("the sides' rings differ", lambda: ring_entries(name, "h1") != ring_entries(
            name, "h2"
        ) and same_rings(name, ["h2", "h3"]), 3 * GOSSIP, 0.2)  # fmt: skip
        took = converge_after_heal(name, HOSTS3, CONVERGE)
        ring = same_rings(name, HOSTS3)
        assert ring is not None
        wait_for("all owners reachable", lambda: all(
            e["IsKnownPeer"] for h in HOSTS3 for e in ipam_report(name, h)["Entries"]
        ), GOSSIP + 1, 0.2)  # fmt: skip
        assert len({stored_seeds(name, h) for h in HOSTS3}) == 1
        hist.check_now(name, HOSTS3)
        print(f"F01: rings equal {took:.2f}s after the heal (bound {CONVERGE:.0f}s)")


def test_f02_exhausted_and_cut_off_answers_503_then_completes_after_heal(
    lab_names: object,
) -> None:
    """F02 (G4): h1 uses up the addresses it owns, then is cut off: its next allocation waits
    and answers 503 "all IP ranges owned by unreachable peers ..."; after the heal it completes."""
    name = "f02"
    hist = History()
    with lab(name, 3, *FAST, "--ipalloc-range", "10.40.0.0/26", "--ipalloc-timeout", "3") as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        for h in HOSTS3:
            hist.allocate(name, h, f"first-{h}")
        wait_for("one ring", lambda: same_rings(name, HOSTS3), 10, 0.2)
        mine = own_addresses(name, "h1") - set(hist.live())
        assert mine
        for i in range(len(mine)):  # exactly what h1 still has: no space request needed
            addr = hist.allocate(name, "h1", f"fill-{i}").split("/")[0]
            assert addr in mine, (addr, sorted(mine))
        split_h1(name, net)
        wait_for("h1 sees h2, h3 unreachable", lambda: others_unreachable(name, "h1"), 10, 0.2)
        started = time.monotonic()
        resp = call(name, "h1", "POST", "/ip/blocked")
        waited = time.monotonic() - started
        assert (resp.status, resp.text.strip()) == (503, UNREACHABLE)
        assert 2.5 <= waited < 6, waited  # it waited --ipalloc-timeout, then gave up
        assert owned(name, "h1").get("blocked") is None  # the given-up request left nothing
        weave("lab", "heal", "--name", name)
        healed = time.monotonic()

        def allocated() -> str | None:
            r = call(name, "h1", "POST", "/ip/after-heal")
            return r.text.strip() if r.status == 200 else None

        # G4's bound after the heal; + one --ipalloc-timeout for a try that gave up just before.
        cidr = wait_for("allocation after the heal", allocated, CONVERGE + 3, 0.1)
        took = time.monotonic() - healed
        hist.record("h1", "after-heal", cidr)
        assert cidr.split("/")[0] not in mine
        hist.check_now(name, HOSTS3)
        print(f"F02: blocked {waited:.1f}s; allocated {took:.2f}s after the heal")


def test_f03_consensus_partition_majority_decides_minority_adopts_its_ring(
    lab_names: object,
) -> None:
    """F03 (G1, G4): three electors (consensus=3) split 1|2 before any allocation: the pair
    agrees and allocates, h1 waits ("awaiting consensus ..."); after the heal h1 adopts the
    pair's ring. Only one ring ever exists (seeds compared on every host at every step)."""
    name = "f03"
    hist = History()
    seeds_seen: set[tuple[str, ...]] = set()

    def one_ring() -> None:
        for h in HOSTS3:
            s = stored_seeds(name, h)
            if s is not None:
                seeds_seen.add(s)
        assert len(seeds_seen) <= 1, f"two rings: {seeds_seen}"

    opts = ("--ipalloc-range", "10.40.0.0/26", "--ipalloc-timeout", "3")
    with lab(name, 3, *FAST, *opts, "--ipalloc-init", "consensus=3") as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        assert all(ipam_report(name, h)["Status"] == "idle" for h in HOSTS3)
        split_h1(name, net)
        results: dict[str, tuple[int, str]] = {}

        def ask(host: str) -> None:
            r = call(name, host, "POST", f"/ip/first-{host}")
            results[host] = (r.status, r.text.strip())
            if r.status == 200:
                hist.record(host, f"first-{host}", r.text.strip())

        threads = [threading.Thread(target=ask, args=(h,)) for h in HOSTS3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results["h1"] == (503, "awaiting consensus (quorum: 2, known: 1)"), results
        assert results["h2"][0] == 200 and results["h3"][0] == 200, results
        one_ring()
        assert stored_seeds(name, "h1") is None
        pair = stored_seeds(name, "h2")
        names = {h: net.report(h)["Router"]["Name"] for h in HOSTS3}
        assert pair == tuple(sorted((names["h2"], names["h3"])))
        assert ipam_report(name, "h1")["Status"].startswith("awaiting consensus")
        hist.check_now(name, HOSTS3)
        took = converge_after_heal(name, HOSTS3, CONVERGE)
        one_ring()
        assert stored_seeds(name, "h1") == pair
        for h in HOSTS3:
            hist.allocate(name, h, f"after-{h}")
        one_ring()
        hist.check_now(name, HOSTS3)
        print(f"F03: h1 adopted the pair's ring {took:.2f}s after the heal")


def test_f04_sigkill_during_parallel_allocations_keeps_every_acknowledged_address(
    lab_names: object,
) -> None:
    """F04 (G1, G3): SIGKILL h1's router while ~100 allocations run in parallel; after the
    supervisor restarts it, every acknowledged address is still held by the same ident,
    nothing is held twice, and each unacknowledged ident is either held (asking again returns
    that address) or free (asking again gives an address nobody holds) - consistently."""
    name = "f04"
    hist = History()
    with lab(name, 2, *FAST, "--ipalloc-range", "10.40.0.0/24") as net:
        wait_for("mesh", lambda: full_mesh(net, ["h1", "h2"]))
        for i in range(3):
            hist.allocate(name, "h2", f"h2-{i}")
        pid = next(h["router_pid"] for h in net.status()["hosts"] if h["name"] == "h1")
        acked: dict[str, str] = {}
        failed: list[str] = []
        lock = threading.Lock()
        kill_at, killed = 30, threading.Event()

        def one(ident: str) -> None:
            try:
                resp = call(name, "h1", "POST", f"/ip/{ident}", timeout=20)
            except Exception:
                resp = None
            with lock:
                if resp is not None and resp.status == 200:
                    acked[ident] = resp.text.strip()
                    hist.record("h1", ident, acked[ident])
                    if len(acked) >= kill_at and not killed.is_set():
                        os.kill(pid, signal.SIGKILL)
                        killed.set()
                else:
                    failed.append(ident)

        idents = [f"c{i:03d}" for i in range(100)]
        threads = [threading.Thread(target=one, args=(i,)) for i in idents]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert killed.is_set() and failed, (len(acked), len(failed))

        def restarted() -> bool:
            new = next(h["router_pid"] for h in net.status()["hosts"] if h["name"] == "h1")
            return (
                bool(new) and new != pid and net.weave("h1", "status", check=False).returncode == 0
            )

        wait_for("supervisor restart", restarted, timeout=30)
        held = owned(name, "h1")
        for ident, cidr in acked.items():
            assert held.get(ident) == [cidr], (ident, cidr, held.get(ident))
            assert call(name, "h1", "GET", f"/ip/{ident}").text.strip() == cidr
        kept = {i: held[i] for i in failed if i in held}
        for ident in failed:
            lookup = call(name, "h1", "GET", f"/ip/{ident}")
            if ident in kept:
                assert (lookup.status, lookup.text.split()) == (200, kept[ident])
            else:
                assert lookup.status == 404, (ident, lookup.status, lookup.text)
        hist.check_now(name, ["h1", "h2"])
        for ident in failed:  # the clients retry: a held address comes back unchanged
            cidr = hist.allocate(name, "h1", ident)
            if ident in kept:
                assert [cidr] == kept[ident]
        for ident, cidr in acked.items():
            assert hist.allocate(name, "h1", ident) == cidr
        final = hist.check_now(name, ["h1", "h2"])
        assert len(final) == 103
        print(f"F04: {len(acked)} acknowledged, {len(kept)} of {len(failed)} unacknowledged kept")
