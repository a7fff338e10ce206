"""Throughput of the sleeve against the bare underlay, measured in the same run (opt-in).

    WEAVE_SLEEVE_BENCH=1 [WEAVE_SLEEVE_BENCH_ROUNDS=3] [WEAVE_SLEEVE_BENCH_SECONDS=10] \\
        .venv/bin/pytest -s -p no:cacheprovider /work/main/tests/net/test_sleeve_bench.py

Two namespaces joined by a veth pair (198.18.0.1/2, MTU 1500); a forwarder in each (the argv
the router uses, through ``SleeveProcess``); the TAPs at 198.19.0.1/2 with MTU 1420 (the pmtu
event's 1434-byte frame minus the ethernet header). Rounds alternate underlay and sleeve so
both see the same machine load; the medians and their ratios are printed as JSON. iperf3
numbers as in docs/sleeve.md: TCP -P1 and UDP 64-byte packets at an unlimited rate
(received pps). The gso_max_size variant sets the TAP's to 60000 bytes, so that a TCP
super-packet fits one UDP_SEGMENT send (44 datagrams at 1444 bytes).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable

import pytest
from netutil import NETNS_DIR, in_ns

from weave_cli.names import SLEEVE_IFNAME
from weave_cli.sleeve import control
from weave_cli.sleeve.client import SleeveProcess

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.environ.get("WEAVE_SLEEVE_BENCH") != "1",
                       reason="benchmark: set WEAVE_SLEEVE_BENCH=1"),
    pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3"),
]
ROUNDS = int(os.environ.get("WEAVE_SLEEVE_BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("WEAVE_SLEEVE_BENCH_SECONDS", "10"))
PEERS = ("02:00:00:00:00:01", "02:00:00:00:00:02")


def iperf(client_ns: str, server_ns: str, addr: str, *args: str) -> dict[str, object]:
    server = subprocess.Popen(["nsenter", f"--net={NETNS_DIR / server_ns}", "--", "iperf3",
                               "-s", "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.4)
        out = subprocess.run(["nsenter", f"--net={NETNS_DIR / client_ns}", "--", "iperf3",
                              "-c", addr, "-t", str(SECONDS), "-J", *args],
                             capture_output=True, text=True, timeout=SECONDS + 30)
        return json.loads(out.stdout)["end"]  # type: ignore[no-any-return]
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def tcp(c: str, s: str, addr: str) -> float:
    end = iperf(c, s, addr)
    return float(end["sum_received"]["bits_per_second"]) / 1e9  # type: ignore[index]


def pps(c: str, s: str, addr: str) -> float:
    end = iperf(c, s, addr, "-u", "-b", "0", "-l", "64")
    summary = end["sum"]
    return float(summary["packets"] - summary["lost_packets"]) / SECONDS  # type: ignore[index]


@pytest.mark.parametrize("gso_max_size", [None, 60000])
def test_sleeve_throughput_against_the_underlay(
    make_ns: Callable[[str], str], gso_max_size: int | None
) -> None:
    a, b = make_ns("a"), make_ns("b")
    in_ns(a, "ip", "link", "add", "wslba", "type", "veth", "peer", "name", "wslbb", "netns",
          str(NETNS_DIR / b))
    for ns, dev, i in ((a, "wslba", 1), (b, "wslbb", 2)):
        in_ns(ns, "ip", "addr", "add", f"198.18.0.{i}/24", "dev", dev)
        in_ns(ns, "ip", "link", "set", dev, "mtu", "1500", "up")

    async def scenario() -> dict[str, list[float]]:
        procs = []
        try:
            for i, ns in enumerate((a, b)):
                proc = SleeveProcess(prefix=["nsenter", f"--net={NETNS_DIR / ns}", "--"])
                await proc.start()
                procs.append(proc)
                extra = ["gso_max_size", str(gso_max_size)] if gso_max_size else []
                in_ns(ns, "ip", "link", "set", SLEEVE_IFNAME, "mtu", "1420", *extra, "up")
                in_ns(ns, "ip", "addr", "add", f"198.19.0.{i + 1}/24", "dev", SLEEVE_IFNAME)
            for i, proc in enumerate(procs):
                other = PEERS[1 - i]
                proc.send_config(control.SleeveConfig(
                    local=PEERS[i], neighbours={other: (f"198.18.0.{2 - i}", 6783)},
                    routes={other: other}, sleeve_peers=frozenset([other])))
            await asyncio.sleep(2)  # heartbeats, PMTU discovery and the batch check
            got: dict[str, list[float]] = {k: [] for k in ("tcp_u", "tcp_s", "pps_u", "pps_s")}
            for _ in range(ROUNDS):
                got["tcp_u"].append(await asyncio.to_thread(tcp, a, b, "198.18.0.2"))
                got["tcp_s"].append(await asyncio.to_thread(tcp, a, b, "198.19.0.2"))
                got["pps_u"].append(await asyncio.to_thread(pps, a, b, "198.18.0.2"))
                got["pps_s"].append(await asyncio.to_thread(pps, a, b, "198.19.0.2"))
            stats = [await p.stats() for p in procs]
            print(json.dumps({"sender": stats[0], "receiver": stats[1]}))
            return got
        finally:
            for proc in procs:
                await proc.stop()

    got = asyncio.run(scenario())
    med = {k: statistics.median(v) for k, v in got.items()}
    print(json.dumps({
        "gso_max_size": gso_max_size, "rounds": ROUNDS, "seconds": SECONDS, "runs": got,
        "tcp_gbit": {"underlay": med["tcp_u"], "sleeve": med["tcp_s"]},
        "tcp_ratio": round(med["tcp_s"] / med["tcp_u"], 3),
        "pps": {"underlay": med["pps_u"], "sleeve": med["pps_s"]},
        "pps_ratio": round(med["pps_s"] / med["pps_u"], 3),
    }, indent=1))
