"""Underlay faults on real traffic, and the data path's answers to them (lab, root).

* The fault modes of ``weave lab partition`` (a protocol, one port, a size limit) drop exactly
  what they say, on a bare lab (no routers), host to host.
* Fastdp blocked (UDP 6784 dropped between two hosts): the link falls back to the sleeve and
  traffic keeps flowing; unblocked, it goes back to fastdp within a bounded time.
* IT07: an underlay that drops UDP larger than 700 bytes from the start; 10000-byte UDP and
  ICMP payloads and a 10 KiB TCP stream still cross (PMTU discovery and the sleeve's
  fragmentation).

Every test uses its own lab (``dfN``) through ``lab_names``, removed even on failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from dputil import (
    CONVERGE,
    FAST,
    Checks,
    both_ways,
    lab_run,
    link_line,
    links,
    ns_out,
    ping,
    serving,
    silent,
    tcp,
    udp,
    udp_sweep,
    until,
)
from labutil import Lab, weave

pytestmark = pytest.mark.lab
Names = Callable[[str], str]


def _partition(net: Lab, *args: str) -> None:
    weave("lab", "partition", "--name", net.name, *args)


def _status_partitions(net: Lab) -> str:
    lines = weave("lab", "status", "--name", net.name).stdout.splitlines()
    return next((line for line in lines if line.startswith("partitions:")), "")


def test_fault_modes_drop_exactly_what_they_say(lab_names: Names) -> None:
    net = Lab(lab_names("df1"))
    weave("lab", "up", "--name", net.name, "--hosts", "3", "--bare")
    h1, h2, h3 = "198.18.0.1", "198.18.0.2", "198.18.0.3"
    quick = 1.2  # a probe that must fail: the rules are in place before it starts
    with serving(net, "h2", udp_port=6784, tcp_port=6784), \
            serving(net, "h2", "h3", udp_port=6783, tcp_port=6783), \
            serving(net, "h1", udp_port=6783, tcp_port=6785):
        _partition(net, "h1", "h2", "--mode", "udp", "--port", "6784")
        _partition(net, "h2", "h1", "--mode", "udp", "--port", "6784")  # idempotent
        assert _status_partitions(net) == "partitions: h1-h2 (udp/6784)"
        assert silent(udp(net, "h1", h2, port=6784, seconds=quick)), "UDP to 6784 must drop"
        assert udp(net, "h1", h2, port=6783)
        assert tcp(net, "h1", h2, port=6784, size=2000), "TCP 6784 is not UDP"
        assert ping(net, "h1", h2)
        # The port as source is dropped too (h1:6784 -> h2:6783), other source ports are not.
        assert silent(udp(net, "h1", h2, port=6783, bind_port=6784, seconds=quick))
        assert udp(net, "h1", h2, port=6783, bind_port=6785)
        assert udp(net, "h3", h2, port=6784), "another pair is untouched"
        sw = f"wl-{net.name}-sw"
        assert ns_out(sw, "nft", "list", "chain", "bridge", "weavelab", "forward").count(
            'drop comment "wl:h1-h2:udp/6784"') == 4

        # A size limit replaces the port rule: IP length 700 passes, 701 is dropped.
        _partition(net, "h1", "h2", "--mode", "udp", "--max-size", "700")
        assert _status_partitions(net) == "partitions: h1-h2 (udp>700)"
        assert udp(net, "h1", h2, port=6784, size=672), "IP length 700 must pass"
        assert silent(udp(net, "h1", h2, port=6784, size=673, seconds=quick))
        assert silent(udp(net, "h2", h1, port=6783, size=673, seconds=quick)), "both ways"
        assert silent(udp(net, "h1", h2, port=6783, size=10000, seconds=quick)), \
            "every fragment of a big datagram is above the limit but the last"
        assert udp(net, "h1", h3, port=6783, size=10000), "another pair is untouched"
        assert ping(net, "h1", h2, size=1400), "ICMP is not UDP"
        assert tcp(net, "h1", h2, port=6784, size=10 * 1024), "TCP is not UDP"

        # Both at once: only big datagrams of that port.
        _partition(net, "h1", "h2", "--udp-only", "--port", "6783", "--max-size", "700")
        assert silent(udp(net, "h1", h2, port=6783, size=1000, seconds=quick))
        assert udp(net, "h1", h2, port=6783, size=600)
        assert udp(net, "h1", h2, port=6784, size=1000)

        # Any protocol above a size; then the old forms still work.
        _partition(net, "h1", "h2", "--max-size", "1000")
        assert silent(ping(net, "h1", h2, size=1000, seconds=quick))
        assert ping(net, "h1", h2, size=900)
        _partition(net, "h1", "h2", "--tcp-only")
        assert silent(tcp(net, "h1", h2, port=6784, size=100, seconds=quick))
        assert udp(net, "h1", h2, port=6784, size=10000)
        _partition(net, "h1", "h3", "--mode", "udp", "--port", "6783")
        assert _status_partitions(net) == "partitions: h1-h2 (tcp), h1-h3 (udp/6783)"
        weave("lab", "heal", "--name", net.name, "h1", "h2")
        assert tcp(net, "h1", h2, port=6784, size=100)
        assert silent(udp(net, "h1", h3, port=6783, seconds=quick))
        weave("lab", "heal", "--name", net.name)
        weave("lab", "heal", "--name", net.name)  # idempotent
        assert _status_partitions(net) == ""
        assert udp(net, "h1", h3, port=6783, size=10000)
        assert udp(net, "h1", h2, port=6783, bind_port=6784)
    bad = weave("lab", "partition", "--name", net.name, "h1", "h2", "--port", "6784",
                check=False)
    assert bad.returncode == 7 and "--port needs --mode tcp or --mode udp" in bad.stderr
    assert _status_partitions(net) == ""


def test_fastdp_blocked_falls_back_to_sleeve_and_comes_back(lab_names: Names) -> None:
    """UDP 6784 dropped: sleeve, traffic flows; dropped no more: fastdp again, in bounded time."""
    net = Lab(lab_names("df2"))
    net.up(2, *FAST)
    checks = Checks("fastdp blocked and unblocked (df2)")
    with checks.must("link h1-h2 confirmed on fastdp"):
        print(until("h1-h2 on fastdp", both_ways(net, "h1", "h2", "fastdp"))[0])
    c1 = lab_run(net, "h1", "c1")
    c2 = lab_run(net, "h2", "c2")
    with serving(net, "c1", "c2"):
        with checks.must("c1 (h1) <-> c2 (h2) on fastdp"):
            print(until("c1 -> c2", lambda: udp(net, "c1", c2))[0].line)
            assert udp(net, "c2", c1)
        _partition(net, "h1", "h2", "--mode", "udp", "--port", "6784")
        with checks("fastdp blocked: both routers show sleeve, with the reason"):
            seen, took = until("h1-h2 on sleeve", both_ways(net, "h1", "h2", "sleeve"),
                               timeout=CONVERGE)
            print(f"sleeve after {took:.1f}s: {seen}")
            line = link_line(net, "h1", "h2")
            assert re.search(r"established\s+sleeve\s", line) and "fastdp=" in line, line
        with checks("fastdp blocked: traffic flows over the sleeve"):
            print(until("c1 -> c2 over sleeve", lambda: udp(net, "c1", c2))[0].line)
            assert udp(net, "c2", c1)
            assert tcp(net, "c1", c2, size=64 * 1024)
            assert ping(net, "c2", c1, size=5000)
        weave("lab", "heal", "--name", net.name, "h1", "h2")
        with checks("fastdp unblocked: back to fastdp on both routers within 20 s"):
            seen, took = until("h1-h2 on fastdp again", both_ways(net, "h1", "h2", "fastdp"),
                               timeout=20)
            print(f"fastdp after {took:.1f}s: {seen}")
            line = link_line(net, "h1", "h2")
            assert re.search(r"established\s+fastdp\s", line) and "fastdp=" not in line, line
        with checks("fastdp unblocked: traffic flows"):
            print(until("c1 -> c2 on fastdp", lambda: udp(net, "c1", c2))[0].line)
            assert udp(net, "c2", c1)
            assert tcp(net, "c2", c1, size=64 * 1024)
    checks.done()


def test_it07_underlay_dropping_big_udp_still_carries_big_payloads(lab_names: Names) -> None:
    """IT07: UDP above 700 bytes is dropped between the hosts before the routers start."""
    net = Lab(lab_names("df3"))
    weave("lab", "up", "--name", net.name, "--hosts", "2", "--bare")
    _partition(net, "h1", "h2", "--mode", "udp", "--max-size", "700")
    net.weave("h1", "launch", *FAST)
    net.weave("h2", "launch", "198.18.0.1", *FAST)
    checks = Checks("IT07 underlay drops UDP > 700 B (df3)")

    def established() -> str | AssertionError:
        pair = [links(net, "h1").get("h2"), links(net, "h2").get("h1")]
        if all(x is not None and x.state == "established" for x in pair):
            return f"h1: {pair[0]}; h2: {pair[1]}"
        return AssertionError(f"h1: {pair[0]}; h2: {pair[1]}")

    with checks.must("IT07 link h1-h2 established (its data path confirmed)"):
        seen, took = until("h1-h2 established", established, timeout=30)
        print(f"after {took:.1f}s: {seen}")
    c1 = lab_run(net, "h1", "c1")
    c2 = lab_run(net, "h2", "c2")
    with serving(net, "c1", "c2"):
        with checks("IT07 small UDP c1 -> c2"):
            print(until("c1 -> c2", lambda: udp(net, "c1", c2), timeout=30)[0].line)
        with checks("IT07 10000-byte UDP datagram c1 -> c2 and its echo back"):
            print(until("10000 B UDP", lambda: udp(net, "c1", c2, size=10000), timeout=30)[0]
                  .line)
        with checks("IT07 10000-byte ICMP echo c2 -> c1"):
            print(until("10000 B ICMP", lambda: ping(net, "c2", c1, size=10000),
                        timeout=30)[0].line)
        with checks("IT07 every UDP size from 500 to 1500 B crosses (no black hole between "
                    "the underlay's limit and the container MTU)"):
            probe = udp_sweep(net, "c1", c2, 500, 1500)
            print(probe.line)
            assert probe, probe.line
        with checks("IT07 10 KiB TCP stream both ways (PMTU discovery)"):
            print(tcp(net, "c1", c2, seconds=30).line)
            assert tcp(net, "c1", c2, seconds=30)
            assert tcp(net, "c2", c1, seconds=30)
        with checks("IT07 the link is on the sleeve (fastdp's MTU-sized heartbeats cannot pass)"):
            line = link_line(net, "h1", "h2")
            print(line)
            assert re.search(r"established\s+sleeve\s", line) and "fastdp=" in line, line
    checks.done()
