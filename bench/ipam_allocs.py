"""IPAM allocations per second with durability on, against floors measured in the same run.

Every allocation is written to SQLite (WAL, ``synchronous=FULL``, one transaction per change)
before the router answers it, so its cost has two floors: an HTTP round trip through the
router's tasks, and one fsync'ed commit. The machine is shared and noisy, so absolute rates
mean little; each round measures the floors and the allocations back to back and the table
reports medians and the ratios:

* ``GET /status`` round trips on the same control socket (HTTP, the mesh and IPAM tasks, the
  status text): the HTTP + actor floor; ``GET /ip/<id>`` (HTTP + the IPAM task, no write) too;
* raw ``synchronous=FULL`` commits of one small row, from this process, in a scratch database
  in the same state directory (same filesystem): the durability floor.

Cases: one peer with one client (sequential) and with ``--clients`` parallel clients; three
peers at once, ``--clients`` clients each. The lab ("bench", 3 hosts) is built and removed
here; clients are threads of this process calling the routers' unix sockets directly.

    sudo .venv/bin/python bench/ipam_allocs.py [--quick] [--ops N] [--rounds R] [--clients K]

Exit status 0 unless something failed to run.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from weave_cli.client import RouterClient
from weave_cli.names import LAB_RUN_ROOT, LAB_STATE_ROOT, Paths

BIN = Path(sys.executable).parent
LAB = "bench"
HOSTS = ["h1", "h2", "h3"]
RANGE = "10.40.0.0/16"
_ids = itertools.count()


def weave(*args: str) -> None:
    subprocess.run([str(BIN / "weave"), *args], check=True, capture_output=True, text=True)


def client(host: str) -> RouterClient:
    return RouterClient(Paths(LAB_STATE_ROOT / LAB / host, LAB_RUN_ROOT / LAB / host), timeout=30)


def request(host: str, method: str, url: str, want: int) -> None:
    resp = client(host).request(method, url)
    if resp.status != want:
        raise RuntimeError(f"{method} {url} on {host}: {resp.status} {resp.text.strip()}")


def rate(jobs: list[tuple[str, int]], op: Callable[[str], None]) -> float:
    """Run ``count`` calls of ``op(host)`` per (host, count), one thread each; calls/s."""
    errors: list[BaseException] = []

    def worker(host: str, count: int) -> None:
        try:
            for _ in range(count):
                op(host)
        except BaseException as err:  # noqa: B036 - reported by the caller
            errors.append(err)

    threads = [threading.Thread(target=worker, args=job) for job in jobs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if errors:
        raise errors[0]
    return sum(count for _, count in jobs) / took


def allocate(host: str) -> None:
    request(host, "POST", f"/ip/b{next(_ids)}", 200)


def sqlite_floor(directory: Path, ops: int) -> float:
    """Commits/s of one small INSERT each, WAL + synchronous=FULL, as the IPAM store does."""
    path = directory / "bench-floor.db"
    try:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)")
        start = time.perf_counter()
        for i in range(ops):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (f"c{i}", "10.40.0.1/16"))
            db.execute("COMMIT")
        took = time.perf_counter() - start
        db.close()
        return ops / took
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations, one round")
    parser.add_argument("--ops", type=int, default=None, help="operations per case and round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--clients", type=int, default=4, help="parallel clients per peer")
    args = parser.parse_args()
    ops = args.ops or (120 if args.quick else 600)
    rounds = args.rounds or (1 if args.quick else 5)
    k = args.clients
    weave("lab", "down", "--name", LAB)
    try:
        weave("lab", "up", "--name", LAB, "--hosts", "3", "--ipalloc-range", RANGE)
        for host in HOSTS:  # the ring exists and every peer owns space before measuring
            request(host, "POST", f"/ip/warm-{host}", 200)
        state_dir = LAB_STATE_ROOT / LAB / "h1"
        split = [("h1", ops // k)] * k
        cases: dict[str, Callable[[], float]] = {
            "GET /status, 1 client": lambda: rate(
                [("h1", ops)], lambda h: request(h, "GET", "/status", 200)
            ),
            "GET /ip/<id>, 1 client": lambda: rate(
                [("h1", ops)], lambda h: request(h, "GET", "/ip/warm-h1", 200)
            ),
            "SQLite FULL commit": lambda: sqlite_floor(state_dir, ops),
            "allocate, 1 peer, 1 client": lambda: rate([("h1", ops)], allocate),
            f"allocate, 1 peer, {k} clients": lambda: rate(split, allocate),
            f"allocate, 3 peers, {k} clients each": lambda: rate(
                [(h, ops // k) for h in HOSTS for _ in range(k)], allocate
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, measure in cases.items():
                samples[name].append(measure())
        med = {name: statistics.median(values) for name, values in samples.items()}
        floors = [med["GET /status, 1 client"], med["GET /ip/<id>, 1 client"]]
        floors.append(med["SQLite FULL commit"])
        print(f"{rounds} round(s) of {ops} operations per case; medians of rates\n")
        print(f"{'case':<34} {'ops/s':>7} {'ms/op':>6}  ratio to: {'/status':>7} {'/ip/<id>':>8}"
              f" {'commit':>7}")  # fmt: skip
        for name, value in med.items():
            ratios = " ".join(
                f"{value / f:>{w}.2f}" for f, w in zip(floors, (7, 8, 7), strict=True)
            )
            print(f"{name:<34} {value:>7.0f} {1000 / value:>6.2f}  {'':>9} {ratios}")
        return 0
    finally:
        weave("lab", "down", "--name", LAB)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (subprocess.CalledProcessError, OSError, RuntimeError) as err:
        detail = getattr(err, "stderr", "") or ""
        print(f"ipam_allocs: failed to run: {err} {detail}".strip(), file=sys.stderr)
        sys.exit(1)
