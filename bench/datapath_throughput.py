"""Container-to-container TCP, RTT and 64 B UDP rate across two lab hosts, against references
measured in the same run on the same underlay (docs/performance.md, "Data path").

    sudo .venv/bin/python bench/datapath_throughput.py [--quick] [--rounds R] [--seconds S]

Labs ``bdpfast`` (default options: fastdp) and ``bdpslv`` (``--no-fastdp``: the sleeve), 2 hosts
each, a container per host. References in bdpfast's own hosts, so over the same veths and switch:
(a) host to host over eth0; (b) bridge+VXLAN built by hand next to weave's devices (recipe of
reference Part 2.2: VNI 42, UDP 4789, static FDB, MTU 1450, no outer UDP checksum); (b') the same
with ``udpcsum`` like weave's VXLAN (TCP only, not a goal). Each round measures (a), (b), (b'),
fastdp, fastdp TCP -P1 at each hand-set MTU of a sweep, then the sleeve; medians of the rounds.

Goals (issue): fastdp TCP >= 0.95x (b) at -P1 and -P2, RTT <= 1.1x (b); sleeve TCP -P1 >= 0.20x
(a) (stretch 0.25x); sleeve 64 B UDP pps >= 0.15x (a) (stretch 0.20x); fastdp at the default MTU
>= 0.95x the best hand-tuned one. A path that does not work prints "not available: <why>" and
its goals FAIL; exit status 0 only when every goal passes. Everything made is removed at the
end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import _netlab as nl

FAST, SLOW = "bdpfast", "bdpslv"
UNDERLAY_MTU = 1500
SWEEP_BELOW = (50, 100, 200)  # hand-tuned candidates: the underlay MTU minus these
REACH_SECONDS = 20.0
METRICS = ("tcp1", "tcp2", "rtt", "pps")
A, B = "(a) underlay", f"(b) bridge+VXLAN {UNDERLAY_MTU - 50}"
B2 = "(b') as (b), udpcsum"
FD, SL = "weave fastdp", "weave sleeve"


@dataclass
class Path:
    """One path: iperf3 server in ``server_ns`` at ``addr``, client and ping in ``client_ns``."""

    name: str
    server_ns: str = ""
    client_ns: str = ""
    addr: str = ""
    why: str = ""  # non-empty: not available
    metrics: tuple[str, ...] = METRICS
    mtu: int | None = None  # set every fastdp path device to this MTU while measuring
    runs: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def med(self, metric: str) -> float | None:
        xs = self.runs.get(metric)
        return nl.median(xs) if xs else None


@dataclass
class Settings:
    rounds: int
    seconds: float
    udp_seconds: float
    pings: int


def measure(cl: nl.Cleanup, p: Path, s: Settings) -> None:
    """One round of ``p``'s metrics; a failure is recorded, not raised."""
    jobs: dict[str, Callable[[], float]] = {
        "tcp1": lambda: nl.tcp_bps(cl, p.server_ns, p.client_ns, p.addr, 1, s.seconds),
        "tcp2": lambda: nl.tcp_bps(cl, p.server_ns, p.client_ns, p.addr, 2, s.seconds),
        "rtt": lambda: nl.ping_us(p.client_ns, p.addr, s.pings),
        "pps": lambda: nl.udp_pps(cl, p.server_ns, p.client_ns, p.addr, s.udp_seconds),
    }
    for metric in p.metrics:
        try:
            p.runs.setdefault(metric, []).append(jobs[metric]())
        except nl.Unavailable as err:
            p.errors[metric] = str(err)


def weave_path(cl: nl.Cleanup, name: str, lab: str, want: str, launch: list[str]) -> Path:
    """A lab with a container per host, checked to carry traffic in mode ``want``."""
    p = Path(name)
    try:
        nl.lab_up(cl, lab, launch)
        p.client_ns, _ = nl.lab_container(lab, "h1", "c1")
        p.server_ns, p.addr = nl.lab_container(lab, "h2", "c2")
        if not nl.wait_reachable(p.client_ns, p.addr, REACH_SECONDS):
            raise nl.Unavailable(f"c1 cannot reach c2 ({p.addr}) within {REACH_SECONDS:.0f} s; "
                                 f"h1's connection to h2 shows {nl.connection_mode(lab)!r}")
        mode = nl.connection_mode(lab)
        if mode != want:
            raise nl.Unavailable(f"the connection h1-h2 is {mode!r}, not {want!r}")
    except nl.Unavailable as err:
        p.why = str(err)
    return p


# -- MTU by hand --------------------------------------------------------------------------------


def mtu_devices(lab: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(namespace, device) on the fastdp path c1 -> c2: (the containers' ``ethwe`` and their
    host ends ``vethwepl*``; weave's own devices in each host: the ``weave`` bridge, its other
    ports, the VXLAN devices). Our reference's ``pl*`` devices are not weave's."""
    ends: list[tuple[str, str]] = [(f"wl-{lab}-c-{c}", "ethwe") for c in ("c1", "c2")]
    owned: list[tuple[str, str]] = []
    for host in ("h1", "h2"):
        ns = nl.lab_host_ns(lab, host)
        for link in json.loads(nl.run(["ip", "-n", ns, "-j", "-d", "link", "show"])):
            name, kind = link["ifname"], link.get("linkinfo", {}).get("info_kind")
            if name.startswith("pl"):
                continue
            if name.startswith("vethwepl"):
                ends.append((ns, name))
            elif link.get("master") == "weave" or name == "weave" or kind == "vxlan":
                owned.append((ns, name))
    return ends, owned


def measure_at_mtu(cl: nl.Cleanup, p: Path, s: Settings) -> None:
    """``measure`` with the containers' veths at ``p.mtu`` (and weave's own devices raised to
    it if they are lower), weave's MTUs restored after. A measurement during which something
    (the router's keeper) changed one of those MTUs is dropped."""
    assert p.mtu is not None
    try:
        ends, owned = mtu_devices(FAST)
        default = nl.read_mtus(ends + owned)
    except nl.Unavailable as err:
        p.errors["tcp1"] = f"cannot read the path's MTUs: {err}"
        return
    want = {d: p.mtu for d in ends} | {d: p.mtu for d in owned if default[d] < p.mtu}
    raised = {d: m for d, m in want.items() if d in owned}
    try:
        nl.set_mtus(raised)  # path first when raising, so no device is ever below its ends
        nl.set_mtus({d: m for d, m in want.items() if d not in owned})
        time.sleep(0.2)
        measure(cl, p, s)
        changed = {d: m for d, m in nl.read_mtus(list(want)).items() if m != p.mtu}
        if changed and p.runs.get("tcp1"):
            p.runs["tcp1"].pop()
            p.errors["tcp1"] = f"MTU changed back while measuring: {changed}"
    except nl.Unavailable as err:
        p.errors["tcp1"] = f"cannot set MTU {p.mtu}: {err}"
    finally:
        try:
            nl.set_mtus({d: default[d] for d in want if d not in owned})
            nl.set_mtus({d: default[d] for d in raised})
        except nl.Unavailable as err:
            p.errors["tcp1"] = f"cannot restore weave's MTUs: {err}"


# -- setup, report ------------------------------------------------------------------------------


def ref_path(cl: nl.Cleanup, name: str, why: str, hosts: list[str], udpcsum: bool, vni: int,
             port: int) -> Path:
    """A hand-built bridge+VXLAN overlay in the fastdp lab's hosts, checked to carry pings."""
    p = Path(name, why=why)
    if not why:
        try:
            ref = nl.RefOverlay(cl, FAST, hosts, mtu=UNDERLAY_MTU - 50, udpcsum=udpcsum,
                                vni=vni, port=port)
            p.server_ns, p.client_ns, p.addr = ref.ctrs[1], ref.ctrs[0], ref.addr(2)
            if not nl.wait_reachable(p.client_ns, p.addr, 10):
                p.why = "the hand-built overlay does not carry pings"
        except nl.Unavailable as err:
            p.why = str(err)
    return p


def setup(cl: nl.Cleanup) -> tuple[list[Path], int | None]:
    """The labs, the references and the MTU variants, each checked to carry pings."""
    fast = weave_path(cl, FD, FAST, "fastdp", [])
    slow = weave_path(cl, SL, SLOW, "sleeve", ["--no-fastdp"])
    if slow.why:  # its routers would only take CPU from the others
        nl.weave("lab", "down", "--name", SLOW)
    h1, h2 = nl.lab_host_ns(FAST, "h1"), nl.lab_host_ns(FAST, "h2")
    a = Path(A, h2, h1, "198.18.0.2", why="" if nl.netns_exists(h1) else fast.why)
    b = ref_path(cl, B, a.why, [h1, h2], udpcsum=False, vni=42, port=4789)
    b2 = ref_path(cl, B2, a.why, [h1, h2], udpcsum=True, vni=43, port=4790)
    b2.metrics = ("tcp1", "tcp2")
    paths, default_mtu = [a, b, b2, fast], None
    if not fast.why:  # the hand-set MTUs right after fastdp's own, then the sleeve
        default_mtu = nl.read_mtus([(fast.client_ns, "ethwe")])[(fast.client_ns, "ethwe")]
        for mtu in (UNDERLAY_MTU - below for below in SWEEP_BELOW):
            if mtu != default_mtu:
                paths.append(Path(f"fastdp, MTU {mtu} by hand", fast.server_ns, fast.client_ns,
                                  fast.addr, metrics=("tcp1",), mtu=mtu))
    paths.append(slow)
    for p in paths:
        print(f"{p.name}: {'not available: ' + p.why if p.why else 'ready'}", flush=True)
    return paths, default_mtu


def cell(p: Path, metric: str, scale: float, refs: list[Path]) -> str:
    v = p.med(metric)
    if v is None:
        return "n/a" + "  n/a" * len(refs)
    out = f"{v / scale:.3g}"
    for r in refs:
        rv = r.med(metric)
        out += f"  {v / rv:.3f}x" if rv else "  n/a"
    return out


def report(paths: list[Path], default_mtu: int | None) -> bool:
    """The table, the runs, what is missing and why, PASS/FAIL per goal; True if all pass."""
    by = {p.name: p for p in paths}
    a, b, fd, sl = by[A], by[B], by[FD], by[SL]
    cols = (("tcp1", 1e9, "TCP -P1 Gbit/s  /a  /b"), ("tcp2", 1e9, "TCP -P2 Gbit/s  /a  /b"),
            ("rtt", 1.0, "RTT us  /a  /b"), ("pps", 1e3, "UDP 64 B kpps  /a  /b"))
    print(f"\nmedians of {max((len(x) for p in paths for x in p.runs.values()), default=0)} "
          "rounds; each cell: the median, then its ratio to (a) and to (b)")
    print(f"| path | {' | '.join(c[2] for c in cols)} |")
    print("|---" * (len(cols) + 1) + "|")
    for p in paths:
        print(f"| {p.name} | " + " | ".join(cell(p, m, sc, [a, b]) if m in p.metrics else "-"
                                            for m, sc, _ in cols) + " |")
    print("\nruns (Gbit/s, Gbit/s, us, kpps):")
    for p in paths:
        for m, sc, _ in cols:
            if p.runs.get(m):
                print(f"  {p.name:<28} {m:<5} " + ", ".join(f"{x / sc:.3g}" for x in p.runs[m]))
    for p in paths:
        if p.why:
            print(f"  {p.name}: not available: {p.why}")
        for m, why in p.errors.items():
            state = "failed in a round" if p.runs.get(m) else "not available"
            print(f"  {p.name} {m}: {state}: {why}")
    tuned = [p for p in paths if p.mtu is not None and p.med("tcp1")]
    best = max(tuned, key=lambda p: p.med("tcp1") or 0.0, default=None)
    print(f"\nfastdp default MTU: {default_mtu or 'n/a'}; hand-tuned best: "
          f"{best.mtu if best else 'n/a'}")
    none = Path("none", why="not measured")
    goals: list[Goal] = [
        Goal("fastdp TCP -P1 / (b)", fd, b, "tcp1", ">=", 0.95),
        Goal("fastdp TCP -P2 / (b)", fd, b, "tcp2", ">=", 0.95),
        Goal("fastdp RTT / (b)", fd, b, "rtt", "<=", 1.10),
        Goal("sleeve TCP -P1 / (a)", sl, a, "tcp1", ">=", 0.20, 0.25),
        Goal("sleeve UDP 64 B pps / (a)", sl, a, "pps", ">=", 0.15, 0.20),
        Goal("fastdp default MTU / hand-tuned", fd, best or none, "tcp1", ">=", 0.95),
    ]
    infos = [
        Goal("fastdp TCP -P1 / (b')", fd, by[B2], "tcp1", ">=", 0.95, info=True),
        Goal("fastdp TCP -P2 / (b')", fd, by[B2], "tcp2", ">=", 0.95, info=True),
        Goal("sleeve RTT / (a)", sl, a, "rtt", "<=", 8.0, info=True),  # Part 3, goal 3
    ]
    print()
    met = [g.show() for g in goals]
    for g in infos:
        g.show()
    return all(met)


@dataclass
class Goal:
    """num.metric / den.metric (ratio of medians) against ``goal``; ``info``: not a goal of
    the issue, printed for reading only."""

    what: str
    num: Path
    den: Path
    metric: str
    op: str  # ">=" or "<="
    goal: float
    stretch: float | None = None
    info: bool = False

    def show(self) -> bool:
        """Print the PASS/FAIL (or info) line; True when met."""
        n, d = self.num.med(self.metric), self.den.med(self.metric)
        if not n or not d:
            print(f"{'info' if self.info else 'FAIL'}  {self.what}: not measured "
                  f"(goal {self.op} {self.goal})")
            return False
        r = n / d
        met = r >= self.goal if self.op == ">=" else r <= self.goal
        pairs = zip(self.num.runs[self.metric], self.den.runs[self.metric], strict=False)
        rounds = ", ".join(f"{x / y:.2f}" for x, y in pairs)
        extra = ""
        if self.stretch is not None:
            extra = f", stretch {self.stretch}: {'met' if r >= self.stretch else 'not met'}"
        word = "info" if self.info else "PASS" if met else "FAIL"
        print(f"{word}  {self.what} = {r:.3f} (goal {self.op} {self.goal}{extra}; "
              f"per-round ratios {rounds})")
        return met


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s tests (smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each TCP test")
    args = parser.parse_args()
    s = Settings(1, 3.0, 2.0, 30) if args.quick else Settings(args.rounds, args.seconds, 5.0, 100)
    nl.interrupt_on_sigterm()
    nl.need_tools()
    nl.exit_with(lambda: bench(s))


def bench(s: Settings) -> bool:
    """Set up, measure the rounds, report, clean up; True when every goal is met."""
    began = time.perf_counter()
    cl = nl.Cleanup()
    try:
        paths, default_mtu = setup(cl)
        for r in range(s.rounds):  # interleaved: every path once per round
            print(f"round {r + 1}/{s.rounds} ...", flush=True)
            for p in paths:
                if not p.why:
                    (measure_at_mtu if p.mtu is not None else measure)(cl, p, s)
        ok = report(paths, default_mtu)
    finally:
        cl.close()
    print(f"\ntotal wall time {time.perf_counter() - began:.1f} s")
    return ok


if __name__ == "__main__":
    main()
