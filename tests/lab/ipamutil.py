"""IPAM in lab tests: HTTP calls to a lab router's control socket, and the history checker.

A lab router's control socket is a unix socket under /run/weave-lab/<lab>/<host>/, reachable
from the test process without entering the host's namespaces, so parallel allocations are just
threads here.

``History`` records every allocate, claim and free the test makes, with the time it was sent
and the time it was answered, and ``check()`` proves that no two live containers ever held one
address: a container holds an address from the moment its allocation (or claim) was answered
until the moment its free was *sent*; two different (host, ident) pairs whose holding intervals
overlap on one address are a violation. (Ending at the send, not the answer, never flags a
legitimate reuse; a real double allocation has both allocations answered while both are held.)
``check_now()`` adds the routers' own view: across every host's ``GET /ip``, no address twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weave_cli.client import Response, RouterClient
from weave_cli.names import LAB_RUN_ROOT, LAB_STATE_ROOT, Paths


def client(lab: str, host: str, timeout: float = 60.0) -> RouterClient:
    paths = Paths(state_dir=LAB_STATE_ROOT / lab / host, run_dir=LAB_RUN_ROOT / lab / host)
    return RouterClient(paths, timeout=timeout)


def call(lab: str, host: str, method: str, url: str, timeout: float = 60.0) -> Response:
    return client(lab, host, timeout).request(method, url, timeout=timeout)


def ipam_db(lab: str, host: str) -> Path:
    return LAB_STATE_ROOT / lab / host / "ipam.db"


@dataclass
class Hold:
    host: str
    ident: str
    addr: str
    start: float
    end: float = float("inf")


@dataclass
class History:
    """Every address handed out, by whom, and when it was given back. Thread-safe."""

    holds: list[Hold] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allocate(self, lab: str, host: str, ident: str, subnet: str = "") -> str:
        """POST /ip/<ident>[/<subnet>]; records and returns the CIDR; raises on failure."""
        resp = call(lab, host, "POST", f"/ip/{ident}" + (f"/{subnet}" if subnet else ""))
        if resp.status != 200:
            raise AssertionError(f"allocate {ident} on {host}: {resp.status} {resp.text.strip()}")
        cidr = resp.text.strip()
        self.record(host, ident, cidr)
        return cidr

    def claim(self, lab: str, host: str, ident: str, cidr: str) -> Response:
        resp = call(lab, host, "PUT", f"/ip/{ident}/{cidr}")
        if resp.status == 204:
            self.record(host, ident, cidr)
        return resp

    def record(self, host: str, ident: str, cidr: str) -> None:
        with self.lock:
            self.holds.append(Hold(host, ident, cidr.split("/")[0], time.monotonic()))

    def free(self, lab: str, host: str, ident: str) -> None:
        self.released(host, ident)
        resp = call(lab, host, "DELETE", f"/ip/{ident}")
        if resp.status != 204:
            raise AssertionError(f"free {ident} on {host}: {resp.status} {resp.text.strip()}")

    def released(self, host: str, ident: str | None = None) -> None:
        """``ident`` (or, with None, every container on ``host``) is gone from now on."""
        now = time.monotonic()
        with self.lock:
            for h in self.holds:
                if h.host == host and (ident is None or h.ident == ident) and h.end > now:
                    h.end = now

    def live(self) -> dict[str, tuple[str, str]]:
        with self.lock:
            return {h.addr: (h.host, h.ident) for h in self.holds if h.end == float("inf")}

    def check(self) -> None:
        """Raise AssertionError naming the first address two live containers shared."""
        with self.lock:
            by_addr: dict[str, list[Hold]] = {}
            for h in self.holds:
                by_addr.setdefault(h.addr, []).append(h)
        for addr, holds in by_addr.items():
            holds.sort(key=lambda h: h.start)
            for a, b in zip(holds, holds[1:], strict=False):
                if (a.host, a.ident) != (b.host, b.ident) and b.start < a.end:
                    raise AssertionError(
                        f"{addr} held by {a.ident}@{a.host} and {b.ident}@{b.host} at once"
                    )

    def check_now(self, lab: str, hosts: list[str]) -> dict[str, tuple[str, str]]:
        """The routers' view: every host's owned addresses; no address held twice."""
        seen: dict[str, tuple[str, str]] = {}
        for host in hosts:
            resp = call(lab, host, "GET", "/ip")
            assert resp.status == 200, resp.text
            for entry in json.loads(resp.text)["owned"]:
                for cidr in entry["addrs"]:
                    addr = cidr.split("/")[0]
                    other, ident = seen.get(addr), entry["containerid"]
                    assert other is None, f"{addr} owned by {other} and {ident}@{host}"
                    seen[addr] = (host, ident)
        self.check()
        return seen


# -- helpers for the fault scenarios (F01-F10) --------------------------------------------------


def ipam_report(lab: str, host: str) -> dict[str, Any]:
    """The IPAM section of the host's ``GET /report``."""
    resp = call(lab, host, "GET", "/report")
    assert resp.status == 200, resp.text
    section: dict[str, Any] = json.loads(resp.text)["IPAM"]
    return section


def ring_entries(lab: str, host: str) -> list[tuple[str, int, str, int, int]]:
    """The host's ring as (Token, Size, Peer, Version, Free): equal lists = converged rings."""
    return [
        (e["Token"], e["Size"], e["Peer"], e["Version"], e["Free"])
        for e in ipam_report(lab, host)["Entries"]
    ]


def owned(lab: str, host: str) -> dict[str, list[str]]:
    """``GET /ip``: ident -> CIDRs the host's router holds."""
    resp = call(lab, host, "GET", "/ip")
    assert resp.status == 200, resp.text
    return {e["containerid"]: e["addrs"] for e in json.loads(resp.text)["owned"]}


def stored_seeds(lab: str, host: str) -> tuple[str, ...] | None:
    """The seeds of the ring in the host's database (read-only), None when it has no ring:
    two different non-empty answers mean two rings were formed."""
    from weave_cli.ipam.ring import Ring

    db = sqlite3.connect(f"file:{ipam_db(lab, host)}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='ring'").fetchone()
    finally:
        db.close()
    if row is None:
        return None
    ring = Ring.from_bytes(bytes(row[0]))
    return tuple(str(p) for p in ring.seeds) if not ring.is_empty() else None


def router_log(lab: str, host: str) -> str:
    return (LAB_RUN_ROOT / lab / host / "weave.log").read_text(errors="replace")


# -- helpers for the integration scenarios (IT20-IT31) ------------------------------------------


def allocate_at_once(
    hist: History, lab: str, jobs: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, float]]:
    """Release every ``(host, ident)`` allocation at the same instant (a thread each, behind
    a barrier); (CIDR, seconds it took) per job. Fails listing every allocation that failed."""
    from concurrent.futures import ThreadPoolExecutor

    gate = threading.Barrier(len(jobs))

    def one(host: str, ident: str) -> tuple[str, float]:
        gate.wait()
        sent = time.monotonic()
        return hist.allocate(lab, host, ident), time.monotonic() - sent

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {job: pool.submit(one, *job) for job in jobs}
    failed = [f"{ident}@{host}: {f.exception()}" for (host, ident), f in futures.items()
              if f.exception() is not None]  # fmt: skip
    assert not failed, failed
    return {job: f.result() for job, f in futures.items()}


def agreed_ring(lab: str, hosts: list[str]) -> list[tuple[str, int, str, int, int]] | None:
    """The ring all ``hosts`` hold, once they hold one and the same (else None)."""
    first, *rest = (ring_entries(lab, h) for h in hosts)
    return first if first and all(r == first for r in rest) else None


def owner_of(entries: list[tuple[str, int, str, int, int]], addr: str) -> str:
    """The peer whose ring entry holds ``addr`` (the last entry also holds what wraps)."""
    from ipaddress import IPv4Address

    value, owner = IPv4Address(addr.split("/")[0]), entries[-1][2]
    for token, _size, peer, _version, _free in entries:
        if IPv4Address(token) <= value:
            owner = peer
    return owner


def check_ring(lab: str, host: str) -> None:
    """The host's ring keeps the invariants: tokens sorted, unique and inside the range;
    sizes tile the whole range; every free count within its entry's size."""
    from ipaddress import IPv4Address, IPv4Network

    rep = ipam_report(lab, host)
    universe = IPv4Network(rep["Range"])
    tokens = [IPv4Address(e["Token"]) for e in rep["Entries"]]
    assert tokens, f"{host} has no ring"
    assert tokens == sorted(set(tokens)), f"{host}: tokens unsorted or repeated: {tokens}"
    assert all(t in universe for t in tokens), f"{host}: a token outside {universe}"
    assert sum(e["Size"] for e in rep["Entries"]) == rep["RangeNumIPs"] == universe.num_addresses
    assert all(0 <= e["Free"] <= e["Size"] for e in rep["Entries"]), rep["Entries"]


def peer_name(lab: str, host: str) -> str:
    resp = call(lab, host, "GET", "/report")
    assert resp.status == 200, resp.text
    name: str = json.loads(resp.text)["Router"]["Name"]
    return name
