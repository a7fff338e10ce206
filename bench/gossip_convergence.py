"""How long one topology change takes to reach every peer of a full mesh, and what it costs.

    python bench/gossip_convergence.py        # prints a table; writes nothing

Model (discrete events, tests/sim/harness.py with ``measure_cpu=True``): N routers run the
real ``MeshCore`` over real ``ConnectionProtocol`` byte streams. Each message costs 1 ms of
link latency plus serialization at 1 Gbit/s through the sender's NIC (one message after
another); each router is one CPU whose processing time is the measured ``perf_counter``
time of the core call. Routers run in parallel, so the result is the critical path.

A change is one connection of the full mesh dropped (a reset seen by both ends) or added
back (dial, handshake, digest exchange). It has reached every peer when every router holds
both ends' new entries. Bytes are the GOSSIP* frames all routers send from the change until
then, divided by N. Each figure is the median of ``REPEATS`` changes on different pairs.
Goals (docs/performance.md, "Gossip convergence"): T(64)/T(8) <= 2.5 and bytes per peer per
change growing at most linearly in N.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sim"))

from harness import SimNet, addr, name  # noqa: E402

from weave_cli.router.mesh import Send  # noqa: E402
from weave_cli.router.protocol import MessageTag  # noqa: E402

SIZES = (8, 16, 32, 64)
REPEATS = 7
LATENCY = 0.001
BANDWIDTH = 1e9 / 8
GOSSIP = {MessageTag.GOSSIP, MessageTag.GOSSIP_UNICAST, MessageTag.GOSSIP_BROADCAST}


def gossip_bytes(data: bytes) -> int:
    """Bytes of gossip frames in a chunk (whole frames only; Sends never split them)."""
    total, pos = 0, 0
    while pos + 5 <= len(data):
        size = 4 + int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4] in GOSSIP:
            total += size
        pos += size
    return total


def full_mesh(n: int) -> SimNet:
    net = SimNet(n, seed=n, latency=LATENCY,
                 targets=lambda i: [addr(j) for j in range(1, i)],
                 configure=lambda i: {"discovery": False, "gossip_interval": 1e6})
    if not net.run_until(120, lambda: net.converged(full_mesh=True), every=0.05):
        raise SystemExit(f"N={n}: the full mesh did not form")
    net.run_for(1.0)
    return net


def measure(net: SimNet, a: int, b: int, change: str) -> tuple[float, int]:
    """(seconds until every router has both new entries, gossip bytes sent meanwhile)."""
    va = net.cores[a].topology.local.version
    vb = net.cores[b].topology.local.version
    pending = set(net.alive)
    done_at: list[float] = []
    sent = [0]

    def watch(i: int, t: float) -> None:
        view = net.cores[i].topology.entries
        if i in pending and view[name(a)].version > va and view[name(b)].version > vb:
            pending.discard(i)
            if not pending:
                done_at.append(t)

    carry = net._carry_out

    def count(i: int, actions: list[object], t: float) -> None:
        if pending:
            sent[0] += sum(gossip_bytes(x.data) for x in actions if isinstance(x, Send))
        carry(i, actions, t)

    if change == "drop":  # no redial afterwards: both forget the other as a target first
        net.call(a, lambda c, now: c.forget([addr(b)], now))
        net.call(b, lambda c, now: c.forget([addr(a)], now))
        net.run_for(0)
    net.observers.append(watch)
    net._carry_out = count  # type: ignore[method-assign]
    net.measure_cpu, net.bandwidth = True, BANDWIDTH
    for i in net.alive:
        net.busy[i] = net.nic[i] = net.now
    start = net.now
    if change == "drop":
        net.reset(a, b)
    else:
        net.call(a, lambda c, now: c.connect([addr(b)], now))
    net.run_for(5.0, lambda: bool(done_at))
    net.observers.remove(watch)
    net._carry_out = carry  # type: ignore[method-assign]
    net.measure_cpu, net.bandwidth = False, None
    if not done_at:
        raise SystemExit(f"N={len(net.alive)}: a {change} did not reach every peer")
    net.run_for(3.0)  # let settling and backoff timers pass before the next change
    return done_at[0] - start, sent[0]


def main() -> None:
    rows = []
    began = time.perf_counter()
    for n in SIZES:
        t0 = time.perf_counter()
        net = full_mesh(n)
        formed = time.perf_counter() - t0
        results: dict[str, list[tuple[float, int]]] = {"drop": [], "add": []}
        for k in range(REPEATS):
            a, b = 1 + (k * 5) % n, 1 + (k * 5 + n // 2) % n
            results["drop"].append(measure(net, a, b, "drop"))
            results["add"].append(measure(net, a, b, "add"))
            if not net.converged(full_mesh=True):
                raise SystemExit(f"N={n}: the mesh did not return to a full mesh")
        row = {"n": n, "formed": formed}
        for change, samples in results.items():
            row[f"{change}_ms"] = statistics.median(s[0] for s in samples) * 1000
            row[f"{change}_bytes"] = statistics.median(s[1] for s in samples) / n
        rows.append(row)
    print(f"{'N':>4} {'drop ms':>9} {'drop B/peer':>12} {'add ms':>9} {'add B/peer':>11}"
          f" {'mesh setup s':>13}")
    for r in rows:
        print(f"{r['n']:>4} {r['drop_ms']:>9.3f} {r['drop_bytes']:>12.0f} {r['add_ms']:>9.3f}"
              f" {r['add_bytes']:>11.0f} {r['formed']:>13.1f}")
    first, last = rows[0], rows[-1]
    scale = last["n"] / first["n"]
    print()
    for change in ("drop", "add"):
        t_ratio = last[f"{change}_ms"] / first[f"{change}_ms"]
        b_ratio = last[f"{change}_bytes"] / first[f"{change}_bytes"]
        print(f"{change}: T({last['n']})/T({first['n']}) = {t_ratio:.2f} (goal <= 2.5: "
              f"{'met' if t_ratio <= 2.5 else 'NOT met'}); bytes/peer ratio = {b_ratio:.2f} "
              f"vs N ratio {scale:.0f} (linear: {'met' if b_ratio <= scale else 'NOT met'})")
    print(f"\ntotal wall time {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
