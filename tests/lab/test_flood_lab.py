"""S27: an accept flood of 5000+ connections a second to 6783 (lab ``fl1``).

h1 and h2 share a password and have an established link; c1 (h1) streams UDP to c2 (h2). From
h3, ``floodgen.py`` (two processes, non-blocking connects, RST closes) opens ``RATE``
connections a second to h1:6783 for ``SECONDS`` seconds; each one completes its handshake in
h1's kernel, so h1's router has to take it off its accept queue. Checked:

* the flood really ran at 5000 or more completed connections in every whole second;
* the token bucket held: the router let through at most its burst plus its rate for the time
  between two readings of ``Router.AcceptLimit`` that enclose the flood, and refused (RST)
  nearly everything else the flood completed; the refusals are logged once, not per connection;
* the router's CPU (utime + stime of its process, /proc/PID/stat) stayed under ``CPU_BOUND`` of
  one core for the flood's duration. Measured here: 14% at 7500 a second (the asyncio accept
  path used before took 51% at that rate, and could not keep up with 10000). The bound is about
  twice what is measured, so a busy machine does not make the test flaky, and well below what
  the old accept path needed, so a return to it fails the test;
* established peers were unaffected: the h1-h2 connection is the same one afterwards (same
  remote address and port: never re-established), established throughout, and the UDP stream
  from c1 to c2 lost (almost) nothing and never stalled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptutil import encrypted_pair
from dputil import PY, links, serving, udp, until
from labutil import Lab, weave_cmd

pytestmark = pytest.mark.lab
Names = Callable[[str], str]
SECRET = "correct horse battery staple 42"
RATE, SECONDS, MIN_RATE = 7500, 10, 5000
CPU_BOUND = 0.30  # of one core
FLOODGEN = Path(__file__).with_name("floodgen.py")

STREAM = r"""
import json, os, socket, sys, time
addr, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.02)
sent = echoed = 0; start = time.monotonic(); last = start; gap = 0.0
while time.monotonic() < start + seconds:
    token = os.urandom(8); s.sendto(token, (addr, port)); sent += 1
    until = time.monotonic() + 0.02
    while time.monotonic() < until:
        try:
            if s.recv(64) == token:
                echoed += 1; now = time.monotonic(); gap = max(gap, now - last); last = now
        except (TimeoutError, OSError):
            pass
print(json.dumps({"sent": sent, "echoed": echoed, "max_gap": round(gap, 3)}), flush=True)
"""


def cpu_seconds(pid: str) -> float:
    """utime + stime of the process (fields 14 and 15 of /proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accept_limit(net: Lab) -> tuple[float, dict[str, Any]]:
    """(when, ``Router.AcceptLimit`` of h1's report) — the report is read after ``when``."""
    when = time.monotonic()
    return when, net.report("h1")["Router"]["AcceptLimit"]


def test_an_accept_flood_is_refused_cheaply_and_peers_are_unaffected(
    lab_names: Names, tmp_path: Path,
) -> None:
    net = Lab(lab_names("fl1"))
    c2 = encrypted_pair(net, tmp_path, SECRET)
    _, run_dir = net.host_dirs("h1")
    router_pid = (run_dir / "router.pid").read_text().strip()
    with serving(net, "c2"):
        until("c1 -> c2", lambda: udp(net, "c1", c2))
        link_before = links(net, "h1")["h2"]
        stream = subprocess.Popen(
            [*weave_cmd(), "lab", "exec", "--name", net.name, "c1", "--", PY, "-c", STREAM, c2,
             "7777", str(SECONDS + 2)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        t0, limit0 = accept_limit(net)
        cpu0 = cpu_seconds(router_pid)
        flood = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/wl-{net.name}-h3", "--", sys.executable,
             str(FLOODGEN), "198.18.0.1", "6783", str(SECONDS), str(RATE), "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(SECONDS / 2)
            during = links(net, "h1")["h2"]
        finally:
            out, err = flood.communicate(timeout=SECONDS + 30)
        cpu = cpu_seconds(router_pid) - cpu0
        t1, limit1 = accept_limit(net)
        streamed, stream_err = stream.communicate(timeout=60)
    got = json.loads(out) if out.strip() else {}
    accepted = limit1["Accepted"] - limit0["Accepted"]
    refused = limit1["Refused"] - limit0["Refused"]
    print("flood:", out.strip() or err.strip())
    print(f"router: {accepted} accepted, {refused} refused, {cpu:.2f} s of CPU in "
          f"{got.get('seconds')} s ({cpu / float(got.get('seconds') or SECONDS):.0%} of a core)")
    print("stream c1 -> c2:", streamed.strip() or stream_err.strip())
    # the flood really ran at the rate of S27, every second of it
    assert got and got["rate"] >= MIN_RATE, out or err
    assert min(got["per_second"]) >= MIN_RATE, got["per_second"]
    # the token bucket held: burst + rate over the time the two readings enclose, no more
    allowance = limit0["Burst"] + limit0["PerSecond"] * (t1 - t0)
    assert 0 < accepted <= allowance, (accepted, allowance)
    assert accepted + refused >= 0.95 * got["completed"], (accepted, refused, got)
    log = (run_dir / "weave.log").read_text(errors="replace")
    assert 1 <= log.count("over the accept limit") <= 2, log[-2000:]  # at most 1 a minute
    # the router's CPU stayed bounded
    assert cpu <= CPU_BOUND * float(got["seconds"]), (cpu, got["seconds"])
    # established peers were unaffected: same connection, established, traffic flowing
    after = links(net, "h1")["h2"]
    for view in (during, after):
        assert view.state == "established" and view.mode == "sleeve", view
        assert view.address == link_before.address, (link_before, view)
    stats = json.loads(streamed)
    assert stats["echoed"] >= 0.95 * stats["sent"] and stats["max_gap"] < 1.0, stats
    assert net.weave("h1", "status").returncode == 0
