"""IPAM under faults on real namespaces, part 2: restarts, resets and the database (F05-F10).

Same rig and timers as part 1 (``test_ipam_faults.py``). Routers are stopped and started
inside the hosts with the CLI (``weave stop``, ``weave launch``/``join``, ``weave reset``) and
the database files are damaged from here. There is no container runtime in a lab, so where the
original relies on one (pre-claiming the addresses of running containers at start-up, freeing
those of containers that died while the router was down) the test does it with PUT/DELETE
``/ip`` and says so.

A refused start must say why in the launch command's own output (the file and
``--ipam-recover=relearn``), not only in the router log; those checks are collected in ``late``
and asserted at the end of each test, so that the rest of the scenario still runs and reports.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from ipamutil import (
    History,
    call,
    ipam_db,
    ipam_report,
    owned,
    ring_entries,
    router_log,
)
from labutil import Lab, full_mesh, lab, wait_for, weave
from test_ipam_faults import FAST, HOSTS3, ip_int, ip_str, same_rings

pytestmark = pytest.mark.lab

R24 = ("--ipalloc-range", "10.40.0.0/24", "--ipalloc-timeout", "3")
R27 = ("--ipalloc-range", "10.40.0.0/27", "--ipalloc-timeout", "3")
RELEARN = "--ipam-recover=relearn"


def start(
    net: Lab, host: str, opts: tuple[str, ...], *extra: str, peers: tuple[str, ...] | None = None
) -> subprocess.CompletedProcess[str]:
    """Start ``host``'s router as the lab does (h1 launches, the others join h1), or with
    ``peers``; never raises on the exit status."""
    verb = "launch" if host == "h1" else "join"
    targets = peers if peers is not None else (() if host == "h1" else ("198.18.0.1",))
    return net.weave(host, verb, *targets, *FAST, *opts, *extra, check=False)


def refusal(
    net: Lab, host: str, proc: subprocess.CompletedProcess[str], late: list[str], why: str = ""
) -> None:
    """The start was refused, nothing runs, and the reason names the database and the way out:
    in the router log (asserted now) and in the launch output (collected into ``late``)."""
    db = str(ipam_db(net.name, host))
    assert proc.returncode != 0, proc
    assert net.weave(host, "status", check=False).returncode == 3
    lines = [ln for ln in router_log(net.name, host).splitlines() if db in ln]
    assert lines and RELEARN in lines[-1], lines[-1:]
    said = proc.stdout + proc.stderr
    if db not in said or RELEARN not in said:
        late.append(
            f"{host}{why}: launch exited {proc.returncode} without naming {db} and {RELEARN}: "
            + repr(said.strip())
        )


def populate(net: Lab, hist: History, hosts: list[str], per_host: int) -> None:
    """Mesh up, ``per_host`` containers ``hK-i`` on every host, and one ring everywhere."""
    wait_for("full mesh", lambda: full_mesh(net, hosts))
    for h in hosts:
        for i in range(per_host):
            hist.allocate(net.name, h, f"{h}-{i}")
    wait_for("one ring", lambda: same_rings(net.name, hosts), 10, 0.2)


def peer_name(net: Lab, host: str) -> str:
    return str(net.report(host)["Router"]["Name"])


def tokens_of(name: str, host: str, peer: str) -> set[str]:
    return {e[0] for e in ring_entries(name, host) if e[2] == peer}


def remove_db(name: str, host: str) -> None:
    db = ipam_db(name, host)
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)


def reclaim(hist: History, name: str, host: str, held: dict[str, str]) -> None:
    """What a container runtime does at start-up: claim the addresses of running containers."""
    for ident, cidr in held.items():
        resp = hist.claim(name, host, ident, cidr)
        assert resp.status == 204, (ident, cidr, resp.status, resp.text)


def live_on(hist: History, host: str) -> dict[str, str]:
    return {ident: addr for addr, (h, ident) in hist.live().items() if h == host}


def with_len(held: dict[str, str], bits: int) -> dict[str, str]:
    return {ident: f"{addr}/{bits}" for ident, addr in held.items()}


def test_f05_lost_database_is_refused_then_relearned_under_the_same_name(
    lab_names: object,
) -> None:
    """F05 (G1, G3; weave#678, #2809): h2 restarts with its database deleted while h1 and h3
    run. Without --ipam-recover it refuses to start and creates nothing; with
    --ipam-recover=relearn it keeps its name, gets its own ranges back from the others, its live
    containers' claims succeed and new allocations everywhere share nothing."""
    name, hist, late = "f05", History(), []
    with lab(name, 3, *FAST, *R24) as net:
        populate(net, hist, HOSTS3, 3)
        me = peer_name(net, "h2")
        mine = tokens_of(name, "h1", me)
        assert mine
        net.weave("h2", "stop")
        remove_db(name, "h2")
        refusal(net, "h2", start(net, "h2", R24), late)
        assert not ipam_db(name, "h2").exists()  # nothing was silently created
        proc = start(net, "h2", R24, RELEARN)
        assert proc.returncode == 0, proc.stderr
        assert peer_name(net, "h2") == me
        wait_for("h2 relearns its ranges", lambda: tokens_of(name, "h2", me) == mine, 10, 0.2)
        reclaim(hist, name, "h2", with_len(live_on(hist, "h2"), 24))
        for h in HOSTS3:
            for i in range(3, 5):
                hist.allocate(name, h, f"{h}-{i}")
        hist.check_now(name, HOSTS3)
        wait_for("one ring", lambda: same_rings(name, HOSTS3), 10, 0.2)
        assert tokens_of(name, "h1", me) >= mine
    assert not late, late


def test_f06_unclean_death_rmpeer_on_one_survivor_and_the_dead_peer_returning(
    lab_names: object,
) -> None:
    """F06 (G1): h3 stops without reset. Its ranges show unreachable; when h1 needs space the
    503 says it waits. rmpeer on h1 alone takes them over; h2 follows. h3 then returns with its
    old database: it loses those ranges, and says so (report Conflicts, 'IPAM conflict' in its
    log, naming the containers it had there) - nothing is silently shared."""
    name, hist = "f06", History()
    with lab(name, 3, *FAST, *R27) as net:
        populate(net, hist, HOSTS3, 1)
        dead = peer_name(net, "h3")
        h3_tokens = tokens_of(name, "h1", dead)
        # Nicknames reach IPAM from the local topology every 2 s (they are not gossiped with
        # the ring): let the survivors learn h3's before it dies, so rmpeer can name it.
        for h in ("h1", "h2"):
            wait_for(f"{h} knows every nickname", lambda h=h: all(
                e["Nickname"] for e in ipam_report(name, h)["Entries"]
            ), 10, 0.2)  # fmt: skip
        net.weave("h3", "stop")
        hist.released("h3")  # the host died: so did its container

        def dead_unreachable(host: str) -> bool:
            theirs = [e for e in ipam_report(name, host)["Entries"] if e["Peer"] == dead]
            return bool(theirs) and not any(e["IsKnownPeer"] for e in theirs)

        for h in ("h1", "h2"):
            wait_for(f"{h} sees h3 unreachable", lambda h=h: dead_unreachable(h), 10, 0.2)
        for i in range(40):  # use up everything h1 and h2 own (h2 donates to h1)
            resp = call(name, "h1", "POST", f"/ip/fill-{i}")
            if resp.status != 200:
                break
            hist.record("h1", f"fill-{i}", resp.text.strip())
        assert (resp.status, resp.text.strip()) == (503, "waiting for IP(s) to become available")
        rep = ipam_report(name, "h1")
        assert sum(e["Free"] for e in rep["Entries"] if e["Peer"] == dead) > 0
        took = call(name, "h1", "DELETE", "/peer/h3")
        size = sum(e["Size"] for e in rep["Entries"] if e["Peer"] == dead)
        assert (took.status, took.text.strip()) == (200, f"{size} IPs taken over from h3")
        got = hist.allocate(name, "h1", "after-rmpeer")
        hist.allocate(name, "h2", "after-rmpeer")
        assert got.split("/")[0] in h3_range(name, h3_tokens)
        wait_for("h2 follows h1", lambda: same_rings(name, ["h1", "h2"]), 10, 0.2)
        assert tokens_of(name, "h2", dead) == set()
        hist.check_now(name, ["h1", "h2"])

        weave("lab", "restart", "--name", name, "h3")  # back, with its old database
        wait_for("h3 adopts the takeover", lambda: same_rings(name, HOSTS3), 10, 0.2)
        assert tokens_of(name, "h3", dead) == set()
        conflicts = ipam_report(name, "h3")["Conflicts"]
        assert any("which I think I own" in c for c in conflicts), conflicts
        log = router_log(name, "h3")
        assert "IPAM conflict" in log
        named = [ln for ln in log.splitlines() if "IPAM conflict affects addresses of" in ln]
        assert named and "h3-0" in named[-1], named
        for h in ("h1", "h2"):
            assert ipam_report(name, h)["Conflicts"] == [], h
        # h3 still lists its dead container; any address also held elsewhere must be one the
        # conflict named. The runtime would free it at start-up; do that, then nothing is shared.
        stale = owned(name, "h3")
        elsewhere = {a for h in ("h1", "h2") for cidrs in owned(name, h).values() for a in cidrs}
        for ident, cidrs in stale.items():
            if set(cidrs) & elsewhere:
                assert ident in named[-1], (ident, cidrs)
        assert call(name, "h3", "DELETE", "/ip/h3-0").status == 204
        hist.check_now(name, HOSTS3)
        back = hist.allocate(name, "h3", "back")  # space from h1 (h3's old ranges had room)
        assert back.split("/")[0] not in stale_addrs(stale)
        hist.check_now(name, HOSTS3)


def stale_addrs(held: dict[str, list[str]]) -> set[str]:
    return {cidr.split("/")[0] for cidrs in held.values() for cidr in cidrs}


def h3_range(name: str, tokens: set[str]) -> set[str]:
    """Every address in the ring entries starting at ``tokens`` (read from h1's report)."""
    out = set()
    for e in ipam_report(name, "h1")["Entries"]:
        if e["Token"] in tokens:
            start = ip_int(e["Token"])
            out |= {ip_str(v) for v in range(start, start + e["Size"])}
    return out


def test_f07_rolling_reset_of_every_peer_strands_nothing(lab_names: object) -> None:
    """F07 (G4; weave#1593): h1, h2, h3 in turn hand their ranges over (DELETE /peer, what
    reset does), reset and join again under a new name. No range is left with a peer that is
    gone, and an allocation on the last one completes within 10 s."""
    name, hist = "f07", History()
    opts = ("--ipalloc-range", "10.40.0.0/24", "--ipalloc-timeout", "15")
    with lab(name, 3, *FAST, *opts) as net:
        populate(net, hist, HOSTS3, 2)
        for h in HOSTS3:
            others = [o for o in HOSTS3 if o != h]
            resp = call(name, h, "DELETE", "/peer")
            handed = re.fullmatch(r"(\d+) IPs handed over to \S+\((h\d)\)", resp.text.strip())
            assert resp.status == 200 and handed, resp.text
            assert int(handed[1]) > 0 and handed[2] in others, resp.text
            old = peer_name(net, h)
            net.weave(h, "reset")
            hist.released(h)
            target = "198.18.0.2" if h == "h1" else "198.18.0.1"
            proc = start(net, h, opts, peers=(target,))
            assert proc.returncode == 0, proc.stderr
            assert peer_name(net, h) != old
            wait_for(f"{h} rejoined the ring", lambda: same_rings(name, HOSTS3), 15, 0.2)
        live = {peer_name(net, h) for h in HOSTS3}
        assert {e[2] for e in ring_entries(name, "h3")} <= live
        started = time.monotonic()
        hist.allocate(name, "h3", "last")
        took = time.monotonic() - started
        assert took <= 10, took
        hist.check_now(name, HOSTS3)
        print(f"F07: allocation on the last reset peer took {took:.2f}s")


def test_f08_all_stopped_then_started_in_reverse_without_discovery_claims_succeed(
    lab_names: object,
) -> None:
    """F08 (G3; weave#1116): stop every peer, start them again in reverse order with
    --no-discovery and explicit peers. Each host's claims of its live containers' addresses
    succeed at once (from its own database, before the others are back) and again afterwards."""
    name, hist = "f08", History()
    with lab(name, 3, *FAST, *R24) as net:
        populate(net, hist, HOSTS3, 3)
        for h in HOSTS3:
            net.weave(h, "stop")
        for k in (3, 2, 1):
            h = f"h{k}"
            peers = tuple(f"198.18.0.{j}" for j in (1, 2, 3) if j != k)
            proc = start(net, h, R24, "--no-discovery", peers=peers)
            assert proc.returncode == 0, proc.stderr
            reclaim(hist, name, h, with_len(live_on(hist, h), 24))
        wait_for("full mesh again", lambda: full_mesh(net, HOSTS3))
        wait_for("one ring", lambda: same_rings(name, HOSTS3), 10, 0.2)
        for h in HOSTS3:
            reclaim(hist, name, h, with_len(live_on(hist, h), 24))
            taken = next(iter(live_on(hist, h).values()))
            resp = call(name, h, "PUT", f"/ip/intruder/{taken}/24")
            assert resp.status == 400 and "already in use" in resp.text, resp.text
            hist.allocate(name, h, f"{h}-new")
        hist.check_now(name, HOSTS3)


def test_f09_new_name_or_new_range_discards_the_persisted_state(lab_names: object) -> None:
    """F09 (G3): a restart under another peer name, or with another --ipalloc-range, discards
    the persisted IPAM state with a log line and holds no stale claims; a reset followed by a
    launch starts empty too. New allocations never reuse a live old container's address."""
    name, hist = "f09", History()
    with lab(name, 2, *FAST, *R24) as net:
        populate(net, hist, ["h1", "h2"], 2)
        old = peer_name(net, "h2")
        net.weave("h2", "stop")
        new = "0a:00:00:00:00:99"
        proc = start(net, "h2", R24, "--name", new)
        assert proc.returncode == 0, proc.stderr
        line = f"discarding the persisted IPAM state: the peer name changed from {old} to {new}"
        assert line in router_log(name, "h2")
        assert owned(name, "h2") == {}
        assert call(name, "h2", "GET", "/ip/h2-0").status == 404
        hist.allocate(name, "h2", "renamed")  # the old containers still run: no reuse (check)
        hist.check_now(name, ["h1", "h2"])

        net.weave("h2", "reset")
        hist.released("h2")
        proc = start(net, "h2", R24)
        assert proc.returncode == 0, proc.stderr
        assert peer_name(net, "h2") not in (old, new)
        assert owned(name, "h2") == {}

        net.weave("h1", "stop")
        other = ("--ipalloc-range", "10.41.0.0/24", "--ipalloc-timeout", "3")
        proc = start(net, "h1", other)
        assert proc.returncode == 0, proc.stderr
        line = (
            "discarding the persisted IPAM state: the allocation range changed from "
            "10.40.0.0/24 to 10.41.0.0/24"
        )
        assert line in router_log(name, "h1")
        assert owned(name, "h1") == {}
        assert ipam_report(name, "h1")["Entries"] == []


CORRUPTIONS = {
    "truncated to half": lambda data: data[: len(data) // 2],
    "truncated to nothing": lambda data: b"",
    "overwritten with garbage": lambda data: os.urandom(len(data)),
}


def test_f10_damaged_database_is_refused_and_relearn_moves_it_aside(lab_names: object) -> None:
    """F10 (G3): a truncated (to half, to nothing) or garbage-overwritten ipam.db: the start is
    refused with a message naming the file, and the file is left as it is (never a silent
    reset); --ipam-recover=relearn moves it to ipam.db.corrupt-*, keeps the name and re-learns
    the ranges; the live containers' claims then succeed."""
    name, hist, late = "f10", History(), []
    with lab(name, 2, *FAST, *R24) as net:
        populate(net, hist, ["h1", "h2"], 2)
        me = peer_name(net, "h2")
        mine = tokens_of(name, "h1", me)
        db = ipam_db(name, "h2")
        for what, damage in CORRUPTIONS.items():
            net.weave("h2", "stop")
            assert not db.with_name("ipam.db-wal").exists()  # a clean stop checkpoints
            bad = damage(db.read_bytes())
            db.write_bytes(bad)
            aside = set(db.parent.glob("ipam.db.corrupt-*"))
            refusal(net, "h2", start(net, "h2", R24), late, f" ({what})")
            assert db.read_bytes() == bad, what  # left exactly as it was
            proc = start(net, "h2", R24, RELEARN)
            assert proc.returncode == 0, (what, proc.stderr)
            moved = set(db.parent.glob("ipam.db.corrupt-*")) - aside
            assert len(moved) == 1 and Path(moved.pop()).read_bytes() == bad, what
            assert peer_name(net, "h2") == me
            wait_for(f"relearn after {what}", lambda: tokens_of(name, "h2", me) == mine, 10, 0.2)
            reclaim(hist, name, "h2", with_len(live_on(hist, "h2"), 24))
        for h in ("h1", "h2"):
            hist.allocate(name, h, f"{h}-after")
        hist.check_now(name, ["h1", "h2"])
    assert not late, late
