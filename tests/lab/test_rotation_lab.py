"""A rolling password rotation on real routers: the network is never split (``rot1``).

Three hosts share password OLD and a fourth never joins. The rotation runs host by host,
``begin NEW`` everywhere, then ``switch`` everywhere, then ``finish`` everywhere. After every
single command on every host, all three links are established and a container on h1 still
reaches containers on h2 and h3; a UDP probe that runs throughout the rotation records the
longest time without an echo. At the end, a router launched with OLD is refused
(``auth_failed``) and one launched with NEW joins. The CLI refuses a step out of order
(exit 19) and a rotation on a network without a password.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptutil import password_file
from dputil import FAST, PY, UDP_PORT, lab_run, links, serving, udp, until
from labutil import Lab, weave, weave_cmd

pytestmark = pytest.mark.lab
Names = Callable[[str], str]
OLD, NEW = "old password: five random words", "new password: five other words"
HOSTS = ("h1", "h2", "h3")

PROBE = r"""
import socket, sys, threading, time
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.05)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
sent = echoed = 0
start = last = time.monotonic()
gap = 0.0
print("ready", flush=True)
while not stop.is_set():
    s.sendto(str(sent).encode(), (addr, port)); sent += 1
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        try:
            s.recv(100); echoed += 1
            now = time.monotonic(); gap = max(gap, now - last); last = now
        except socket.timeout:
            break
gap = max(gap, time.monotonic() - last)
print(f"sent {sent} echoed {echoed} longest_gap {gap:.2f}s over {time.monotonic() - start:.0f}s")
"""


def all_established(net: Lab) -> str | None:
    for host in HOSTS:
        view = links(net, host)
        others = [h for h in HOSTS if h != host]
        if sorted(n for n, v in view.items() if v.state == "established") != others:
            return None
    return "all established"


def test_a_rolling_rotation_never_splits_the_network(lab_names: Names, tmp_path: Path) -> None:
    net = Lab(lab_names("rot1"))
    old, new = password_file(tmp_path, "old", OLD), password_file(tmp_path, "new", NEW)
    weave("lab", "up", "--name", net.name, "--hosts", "4", "--bare")
    net.weave("h1", "launch", "--password-file", old, *FAST)
    for host in ("h2", "h3"):
        net.weave(host, "launch", "198.18.0.1", "--password-file", old, *FAST)
    until("a full mesh on OLD", lambda: all_established(net), timeout=30)
    lab_run(net, "h1", "c1")
    c2, c3 = lab_run(net, "h2", "c2"), lab_run(net, "h3", "c3")
    bad = net.weave("h1", "rotate-password", "switch", check=False)  # nothing begun
    assert bad.returncode == 19 and "weave rotate-password begin" in bad.stderr, bad
    with serving(net, "c2", "c3"):
        until("c1 -> c3", lambda: udp(net, "c1", c3))
        probe = subprocess.Popen(
            [*weave_cmd(), "lab", "exec", "--name", net.name, "c1", "--", PY, "-c", PROBE, c3,
             str(UDP_PORT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert probe.stdout is not None and probe.stdout.readline().strip() == "ready"
        started = time.monotonic()
        try:
            for step in ("begin", "switch", "finish"):
                for host in HOSTS:
                    args = ("--password-file", new) if step == "begin" else ()
                    out = net.weave(host, "rotate-password", step, *args)
                    print(f"{host} {step}: {out.stdout.strip()}")
                    assert NEW not in out.stdout + out.stderr
                    until(f"all links after {step} on {host}", lambda: all_established(net))
                    for target in (c2, c3):
                        until(f"c1 -> {target} after {step} on {host}",
                              lambda t=target: udp(net, "c1", t, seconds=2.0))
                phase = {"begin": "Rotation: begun", "switch": "Rotation: switched"}
                status = " ".join(net.weave("h2", "status").stdout.split())
                assert phase.get(step, "Rotation") in status or step == "finish", status
                assert step != "finish" or "Rotation:" not in status, status
        finally:
            out, err = probe.communicate(input="", timeout=30)  # EOF ends the probe
    print(f"rotation took {time.monotonic() - started:.0f}s; probe c1 -> c3: {out.strip()}")
    words = out.split()
    assert words[0] == "sent" and int(words[3]) > 0, out + err
    _state, run = net.host_dirs("h1")
    log = (run / "weave.log").read_text(errors="replace")
    assert "password files reloaded" in log and OLD not in log and NEW not in log
    assert not (run / "password.next").exists() and not (run / "password.previous").exists()
    # a router that still has OLD is refused everywhere; with NEW it joins
    net.weave("h4", "launch", "198.18.0.1", "--password-file", old, "--ipalloc-init",
              "consensus=1", *FAST)
    until("h4 on OLD is refused", lambda: "auth_failed" in " ".join(
        str(c.get("Info")) for c in net.report("h4")["Router"]["Connections"]), timeout=20)
    net.weave("h4", "reset")  # its own ring (consensus=1) must not meet the network's
    net.weave("h4", "launch", "198.18.0.1", "--password-file", new, *FAST)
    until("h4 on NEW joins", lambda: links(net, "h4").get("h1") is not None
          and links(net, "h4")["h1"].state == "established", timeout=30)


def test_rotation_needs_a_password(lab_names: Names) -> None:
    net = Lab(lab_names("rot2"))
    weave("lab", "up", "--name", net.name, "--hosts", "1", "--bare")
    net.weave("h1", "launch", *FAST)
    out = net.weave("h1", "rotate-password", "begin", "--password", "x", check=False)
    assert out.returncode == 19 and "no password" in out.stderr, out
