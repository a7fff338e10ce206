"""S04 slowloris: idle connections to the mesh port are closed after the handshake timeout,
and a real peer still joins while they are open.

h3 (no router) opens 1000 TCP connections to h1:6783 at once and never sends a byte. h1's
accept limiter refuses most of them at once; the ones it takes are closed after the 10 s
handshake timeout. Meanwhile h2 joins h1 and its link is established; h1 never holds more
than ``--conn-limit`` of the idle ones, and one timeout after the flood stops it holds none.
Counted on h1's side (``ss``): the flooding side cannot tell a connection the server dropped
from its accept queue from one it holds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from dputil import FAST, link_mode, until
from labutil import Lab, weave

pytestmark = pytest.mark.lab

IDLE = r"""
import socket, sys, time
addr, count, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
socks = []
for _ in range(count):
    s = socket.socket(); s.setblocking(False)
    s.connect_ex((addr, 6783))
    socks.append(s)
print("flooding", flush=True)
time.sleep(hold)  # hold them all, sending nothing
print(f"held {len(socks)}")
"""


def held_from(net: Lab, host: str, source: str) -> int:
    """Established TCP connections on ``host``'s mesh port from ``source``."""
    out = subprocess.run(["nsenter", f"--net=/run/netns/wl-{net.name}-{host}", "--", "ss",
                          "-Htn", "state", "established", "( sport = :6783 )"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if f" {source}:" in line)


def test_idle_connections_are_closed_and_a_real_peer_still_joins(
    lab_names: Callable[[str], str],
) -> None:
    net = Lab(lab_names("sl4"))
    weave("lab", "up", "--name", net.name, "--hosts", "3", "--bare")
    net.weave("h1", "launch", *FAST)
    idle = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/wl-{net.name}-h3", "--", sys.executable, "-c", IDLE,
         "198.18.0.1", "1000", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert idle.stdout is not None and idle.stdout.readline().strip() == "flooding"
        net.weave("h2", "launch", "198.18.0.1", *FAST)
        line, took = until("h1-h2 established during the flood of idle connections",
                           lambda: link_mode(net, "h1", "h2", "fastdp"), timeout=30)
        print(line, f"after {took:.1f}s")
        # the router holds at most --conn-limit (200) of them, each for the 10 s handshake
        # timeout; connections the kernel completes later come and go the same way
        peaks = []
        for _ in range(8):
            peaks.append(held_from(net, "h1", "198.18.0.3"))
            time.sleep(2.0)
        print("held by h1 over time:", peaks)
        assert max(peaks) <= 200, peaks
    finally:
        out, err = idle.communicate(timeout=60)
    # once the flood stops, nothing of it is left after one handshake timeout
    until("h1 holds none of the idle connections",
          lambda: held_from(net, "h1", "198.18.0.3") == 0, timeout=12)
    assert link_mode(net, "h1", "h2", "fastdp"), "the real peer's link did not survive"
