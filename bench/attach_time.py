"""Time to attach one container: weave's in-process attach against the 7-command ``ip`` sequence.

    sudo .venv/bin/python bench/attach_time.py [--quick] [--count N] [--runs R]

In a host namespace ``wbn-at-h`` made here (the "host": weave's bridge from
``datapath.ensure``, and a plain bridge ``plbrd`` at 198.18.200.1/24 for the reference), each
run attaches N fresh container namespaces both ways, alternating one of each, and times every
attachment (namespace creation excluded, as in the reference, performance.md Part 2.4):

* ``ip``: 7 subprocesses: ``link add`` veth in the host, ``link set`` the peer ``netns``
  the container, ``addr add``, peer ``up``, ``lo up``, ``route add default``, host end
  ``master plbrd up``;
* weave: ``netns.resolve(ns:NAME)`` + ``attach.attach`` called in this process (what
  ``weave attach ns:NAME`` does after its start-up), with an in-memory address book in place
  of the router's IPAM (an allocation from the default subnet, as ``weave attach`` with no
  ADDR). It makes ``ethwe`` directly in the container, plugs the host end into the bridge,
  adds the address, brings it up and adds the multicast route.

After each run the last container of each kind must reach the first (ping), then all container
namespaces are deleted. Figures: the median over runs of each run's median per attachment,
p95 likewise. Goal (issue): weave median <= 0.25x the ``ip`` median; also reported, Part 3:
p95/median <= 1.5. Exit status 0 when the median goal is met. Everything made here is removed
at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import statistics
import time
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import _netlab as nl

from weave_cli.net import attach, datapath, netns, target
from weave_cli.net.addrspec import IPAMView

HOST, PREFIX, REF_BRIDGE, GW = "wbn-at-h", "wbn-at-", "plbrd", "198.18.200.1"
GOAL, P95_GOAL = 0.25, 1.5


class Book:
    """IPAM in memory: sequential addresses in 10.32.0.0/12, one owner each (AddressBook)."""

    def __init__(self) -> None:
        self.net = IPv4Network("10.32.0.0/12")
        self.owned: dict[str, list[IPv4Interface]] = {}
        self.next = 1

    def view(self) -> IPAMView:
        return IPAMView(True, self.net, self.net)

    def lookup(self, ident: str) -> list[IPv4Interface]:
        return list(self.owned.get(ident, []))

    def allocate(self, ident: str, subnet: IPv4Network | None) -> IPv4Interface:
        if ident not in self.owned:
            self.owned[ident] = [IPv4Interface(f"{self.net[self.next]}/{self.net.prefixlen}")]
            self.next += 1
        return self.owned[ident][0]

    def claim(self, ident: str, addr: IPv4Interface) -> None:
        self.owned.setdefault(ident, []).append(addr)

    def free(self, ident: str, ip: IPv4Address | None = None) -> None:
        self.owned.pop(ident, None)


def ip_attach(ctr: str, k: int) -> None:
    """The reference: 7 ``ip`` commands, the peer made in the host and moved (Part 2.4)."""
    host_end, peer = f"plh{k}", f"plp{k}"
    for argv in (
        ["ip", "-n", HOST, "link", "add", host_end, "type", "veth", "peer", "name", peer],
        ["ip", "-n", HOST, "link", "set", peer, "netns", ctr],
        ["ip", "-n", ctr, "addr", "add", f"198.18.200.{k + 2}/24", "dev", peer],
        ["ip", "-n", ctr, "link", "set", peer, "up"],
        ["ip", "-n", ctr, "link", "set", "lo", "up"],
        ["ip", "-n", ctr, "route", "add", "default", "via", GW],
        ["ip", "-n", HOST, "link", "set", host_end, "master", REF_BRIDGE, "up"],
    ):
        nl.run(argv)


def weave_attach(book: Book, ctr: str) -> IPv4Interface:
    host = str(nl.NETNS / HOST)
    ref = netns.resolve(target.parse_target(f"ns:{ctr}"), host)
    got: IPv4Interface = attach.attach(book, ref, [], host).addrs[0]
    return got


def make_ns(cl: nl.Cleanup, name: str) -> None:
    if nl.netns_exists(name):
        nl.run(["ip", "netns", "del", name])
    nl.run(["ip", "netns", "add", name])
    cl.push(f"ip netns del {name}",
            lambda: nl.run(["ip", "netns", "del", name]) if nl.netns_exists(name) else None)


def one_run(cl: nl.Cleanup, count: int) -> tuple[list[float], list[float]]:
    """``count`` attachments of each kind, alternating; (ip ms, weave ms)."""
    book = Book()
    ips: list[float] = []
    weaves: list[float] = []
    addrs: list[IPv4Interface] = []
    ctrs = [f"{PREFIX}{kind}{k:03d}" for k in range(count) for kind in ("i", "w")]
    for name in ctrs:
        make_ns(cl, name)
    try:
        for k in range(count):
            t0 = time.perf_counter()
            ip_attach(f"{PREFIX}i{k:03d}", k)
            t1 = time.perf_counter()
            addr = weave_attach(book, f"{PREFIX}w{k:03d}")
            t2 = time.perf_counter()
            ips.append((t1 - t0) * 1000)
            weaves.append((t2 - t1) * 1000)
            addrs.append(addr)
        last = count - 1
        if not nl.wait_reachable(f"{PREFIX}i{last:03d}", GW, 5):
            raise nl.Unavailable(f"the last ip-attached container cannot reach {GW}")
        if count > 1 and not nl.wait_reachable(f"{PREFIX}w{last:03d}", str(addrs[0].ip), 5):
            raise nl.Unavailable("the last weave-attached container cannot reach the first")
    finally:
        for name in ctrs:
            if nl.netns_exists(name):
                nl.run(["ip", "netns", "del", name])
    return ips, weaves


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) > 1 else xs[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 20 attachments")
    parser.add_argument("--count", type=int, default=100, help="attachments per run and kind")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs, count = (1, 20) if args.quick else (args.runs, args.count)
    nl.interrupt_on_sigterm()
    nl.need_tools()
    nl.exit_with(lambda: bench(runs, count))


def bench(runs: int, count: int) -> bool:
    """The host namespace and bridges, ``runs`` runs, the report; True when the goal is met."""
    began = time.perf_counter()
    cl = nl.Cleanup()
    results: list[tuple[list[float], list[float]]] = []
    try:
        make_ns(cl, HOST)
        nl.run(["ip", "-n", HOST, "link", "set", "lo", "up"])
        datapath.ensure(str(nl.NETNS / HOST))
        nl.run(["ip", "-n", HOST, "link", "add", REF_BRIDGE, "type", "bridge"])
        nl.run(["ip", "-n", HOST, "addr", "add", f"{GW}/24", "dev", REF_BRIDGE])
        nl.run(["ip", "-n", HOST, "link", "set", REF_BRIDGE, "up"])
        for r in range(runs):
            print(f"run {r + 1}/{runs}: {count} attachments of each kind ...", flush=True)
            results.append(one_run(cl, count))
    finally:
        cl.close()
    ok = report(results, count)
    print(f"\ntotal wall time {time.perf_counter() - began:.1f} s")
    return ok


def report(results: list[tuple[list[float], list[float]]], count: int) -> bool:
    rows = []
    for label, pick in (("ip: 7 subprocesses", 0), ("weave attach, in-process", 1)):
        meds = [statistics.median(r[pick]) for r in results]
        p95s = [p95(r[pick]) for r in results]
        totals = [sum(r[pick]) / 1000 for r in results]
        rows.append((label, statistics.median(meds), statistics.median(p95s),
                     statistics.median(totals), meds))
    ref = rows[0][1]
    print(f"\n| variant | median ms (runs) | p95 ms | {count} attachments s | ratio to ip |")
    print("|---|---:|---:|---:|---:|")
    for label, med, q95, total, meds in rows:
        runs = ", ".join(f"{m:.2f}" for m in meds)
        print(f"| {label} | {med:.2f} ({runs}) | {q95:.2f} | {total:.2f} | {med / ref:.3f} |")
    ratio, spread = rows[1][1] / ref, rows[1][2] / rows[1][1]
    ok = ratio <= GOAL
    print(f"\n{'PASS' if ok else 'FAIL'}  weave attach median / ip median = {ratio:.3f} "
          f"(goal <= {GOAL})")
    print(f"info  weave attach p95 / median = {spread:.2f} (Part 3: <= {P95_GOAL}: "
          f"{'met' if spread <= P95_GOAL else 'not met'})")
    return ok


if __name__ == "__main__":
    main()
