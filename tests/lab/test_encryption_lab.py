"""A password-protected network on real routers: who connects, what crosses, what is seen.

* ``en1``: h1 and h2 share a password, h3 has another one and h4 none (it joins h1). h1-h2 is
  established on the encrypted sleeve (the kernel has no ESP, and status says so), containers
  on h1 and h2 talk; h3 and h4 never establish (``auth_failed`` in the dialling side's status)
  and containers on them reach nobody; a capture on the lab switch while c1 sends a marker to
  c2 finds the marker nowhere, no VXLAN packet crosses, and a plaintext sleeve datagram sent
  to h2 is not delivered; plaintext VXLAN and ESP sent from h2's own address find no VXLAN
  device and no ESP handler on h1 (S13); the password is in no report, status, log or router
  command line.
* ``en2``: the same marker without a password is found by the same capture (so the capture
  works), and ``--trusted-subnets`` on both sides lets the link use fastdp, while VXLAN from
  a host outside them (h3) is dropped by the ``vxlan-from`` input rule (S13).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptutil import encrypted_pair, password_file
from dputil import FAST, Checks, lab_run, link_mode, links, serving, silent, udp, until
from labutil import Lab, weave

pytestmark = pytest.mark.lab
Names = Callable[[str], str]
MARKER = "weave-marker-7f3a9c"
SECRET = "correct horse battery staple 42"

CAPTURE = r"""
import socket, sys, time
marker, seconds = sys.argv[1].encode(), float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.settimeout(0.2)  # every port of the switch: each frame is seen entering and leaving
found = vxlan = frames = 0
end = time.monotonic() + seconds
print("ready", flush=True)
while time.monotonic() < end:
    try:
        f = s.recv(70000)
    except socket.timeout:
        continue
    frames += 1
    found += marker in f
    # IPv4 (ethertype 0x0800), UDP (proto 17), destination port 6784: VXLAN
    if f[12:14] == b"\x08\x00" and f[23] == 17:
        ihl = (f[14] & 15) * 4
        vxlan += f[14 + ihl + 2:14 + ihl + 4] == (6784).to_bytes(2, "big")
print(f"frames {frames} marker {found} vxlan {vxlan}")
"""

SEND_MARKER = r"""
import socket, sys, time
addr, port, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):
    s.sendto(marker * 8, (addr, port)); time.sleep(0.05)
"""


# From a peer's own address: 5 VXLAN datagrams (the overlay's VNI) to 6784 wrapping a UDP
# datagram to a container, then 5 ESP packets with an SPI nobody set up.
INJECT = r"""
import os, socket, struct, sys
host, inner_dst, marker = sys.argv[1], socket.inet_aton(sys.argv[2]), sys.argv[3].encode()
payload = marker * 4
udp = struct.pack("!HHHH", 40000, 7777, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton("10.32.0.99"), inner_dst) + udp
frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x99" + b"\x08\x00" + ip
vxlan = struct.pack("!II", 0x08000000, 0x5756 << 8) + frame
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    u.sendto(vxlan, (host, 6784))
esp = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
for seq in range(1, 6):
    esp.sendto(os.urandom(4) + struct.pack("!I", seq) + os.urandom(48), (host, 0))
"""


def snmp(net: Lab, host: str) -> dict[str, int]:
    """``/proc/net/snmp`` of ``host`` as {"Proto Counter": value}."""
    rows = [line.split() for line in net.exec(host, "cat", "/proc/net/snmp").stdout.splitlines()]
    out: dict[str, int] = {}
    for names, values in zip(rows[::2], rows[1::2], strict=True):
        for name, value in zip(names[1:], values[1:], strict=True):
            out[f"{names[0][:-1]} {name}"] = int(value)
    return out


@contextmanager
def capture(net: Lab, seconds: float) -> Iterator[list[str]]:
    """Frames crossing the lab switch while the block runs; the result line lands in the list."""
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/wl-{net.name}-sw", "--", sys.executable,
                             "-c", CAPTURE, MARKER, str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    result: list[str] = []
    try:
        yield result
    finally:
        out, err = proc.communicate(timeout=seconds + 10)
        result.append(out.strip() or err.strip())


def counts(line: str) -> dict[str, int]:
    words = line.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def test_password_network(lab_names: Names, tmp_path: Path) -> None:
    net = Lab(lab_names("en1"))
    tmp = tmp_path
    good, bad = password_file(tmp, "good", SECRET), password_file(tmp, "bad", "another one")
    weave("lab", "up", "--name", net.name, "--hosts", "4", "--bare")
    net.weave("h1", "launch", "--password-file", good, *FAST)
    net.weave("h2", "launch", "198.18.0.1", "--password-file", good, *FAST)
    # h3 and h4 never join, so they get address rings of their own (consensus=1)
    net.weave("h3", "launch", "198.18.0.1", "--password-file", bad, "--ipalloc-init",
              "consensus=1", *FAST)
    net.weave("h4", "launch", "198.18.0.1", "--ipalloc-init", "consensus=1", *FAST)
    checks = Checks("password-protected network (en1)")
    with checks.must("h1-h2 established on the encrypted sleeve, saying why not fastdp"):
        line, _ = until("h1-h2 sleeve", lambda: link_mode(net, "h1", "h2", "sleeve"))
        print(line)
        assert "kernel has no ESP" in str(links(net, "h1")["h2"].attrs.get("fastdp", "")), line
        assert links(net, "h1")["h2"].attrs.get("encrypted") in (True, "true"), line
    for host in ("h3", "h4"):
        with checks(f"{host} (wrong or no password) never establishes: auth_failed"):
            until(f"{host} auth_failed", lambda h=host: "auth_failed" in " ".join(
                str(c.get("Info")) for c in net.report(h)["Router"]["Connections"]), timeout=20)
            assert all(v.state != "established" for v in links(net, host).values())
    with checks("the refusing side (h1) shows auth_failed for them too"):
        until("h1 shows the refusals", lambda: "auth_failed" in net.weave(
            "h1", "status", "connections").stdout, timeout=20)
    c1, c2 = lab_run(net, "h1", "c1"), lab_run(net, "h2", "c2")
    with serving(net, "c1", "c2"):
        with checks.must("c1 (h1) <-> c2 (h2) through the encrypted sleeve"):
            print(until("c1 -> c2", lambda: udp(net, "c1", c2))[0].line)
            assert udp(net, "c2", c1)
        with checks("the capture on the switch finds no marker and no VXLAN"):
            with capture(net, 4.0) as seen:
                net.exec("c1", sys.executable, "-c", SEND_MARKER, c2, "7777", MARKER)
                time.sleep(1.5)
            got = counts(seen[0])
            print("capture:", seen[0])
            assert got["frames"] > 20 and got["marker"] == 0 and got["vxlan"] == 0, seen[0]
        with checks("S13: plaintext VXLAN and ESP from a peer's address find nothing to take them"):
            # no VXLAN device exists with a password (no trusted subnets), so nothing listens on
            # 6784; the kernel has no ESP, so protocol 50 has no handler: both are counted as
            # dropped by h1's own stack (Udp NoPorts, Ip InUnknownProtos)
            assert "weave-vxlan" not in net.exec("h1", "ip", "-o", "link").stdout
            before = snmp(net, "h1")
            net.exec("h2", sys.executable, "-c", INJECT, "198.18.0.1", c1, MARKER)
            after = snmp(net, "h1")
            assert after["Udp NoPorts"] - before["Udp NoPorts"] >= 5, (before, after)
            assert after["Ip InUnknownProtos"] - before["Ip InUnknownProtos"] >= 5, after
        with checks("a plaintext sleeve datagram to h2 is not delivered"):
            # what an unencrypted peer would send: the forwarder must drop it
            net.exec("h4", sys.executable, "-c", SEND_MARKER, "198.18.0.2", "6783", MARKER)
        for host in ("h3", "h4"):
            with checks(f"a container on {host} reaches nobody"):
                c = lab_run(net, host, f"c{host[1]}", f"ip:10.32.7.{host[1]}/12")
                assert silent(udp(net, f"c{host[1]}", c1, seconds=2.0)), c
    with checks("the password appears in no report, status, log or command line"):
        texts = [str(net.report("h1")), net.weave("h1", "status").stdout,
                 net.weave("h1", "status", "connections").stdout]
        state, run = net.host_dirs("h1")
        texts.append((run / "weave.log").read_text(errors="replace"))
        for pid_file in ("router.pid", "weave.pid"):
            pid = (run / pid_file).read_text().strip()
            texts.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
            texts.append(Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace"))
        assert not [t[:80] for t in texts if SECRET in t]
        assert (run / "password").stat().st_mode & 0o777 == 0o600
    checks.done()


def test_marker_is_seen_without_a_password_and_trusted_subnets_use_fastdp(
    lab_names: Names, tmp_path: Path,
) -> None:
    net = Lab(lab_names("en2"))
    tmp = tmp_path
    good = password_file(tmp, "good", SECRET)
    weave("lab", "up", "--name", net.name, "--hosts", "3", "--bare")
    net.weave("h1", "launch", *FAST)
    net.weave("h2", "launch", "198.18.0.1", *FAST)
    checks = Checks("capture control and trusted subnets (en2)")
    lab_run(net, "h1", "c1")
    c2 = lab_run(net, "h2", "c2")
    with serving(net, "c2"):
        until("c1 -> c2", lambda: udp(net, "c1", c2))
        with checks.must("without a password the capture does see the marker"):
            with capture(net, 3.0) as seen:
                net.exec("c1", sys.executable, "-c", SEND_MARKER, c2, "7777", MARKER)
                time.sleep(1.0)
            print("capture:", seen[0])
            assert counts(seen[0])["marker"] > 0, seen[0]
    for host in ("h1", "h2"):
        net.weave(host, "reset", "--force")
    trusted = "198.18.0.1/32,198.18.0.2/32"  # h1 and h2, not h3
    net.weave("h1", "launch", "--password-file", good, "--trusted-subnets", trusted, *FAST)
    net.weave("h2", "launch", "198.18.0.1", "--password-file", good, "--trusted-subnets",
              trusted, *FAST)
    with checks("both sides trust each other: the link may use (plaintext) fastdp"):
        print(until("h1-h2 fastdp", lambda: link_mode(net, "h1", "h2", "fastdp"))[0])
    net.weave("h3", "launch", "198.18.0.1", "--password-file", good, *FAST)
    with checks("a peer that does not trust h1 stays on the encrypted sleeve"):
        print(until("h1-h3 sleeve", lambda: link_mode(net, "h1", "h3", "sleeve"))[0])
    with checks("S13: plaintext VXLAN from outside the trusted subnets is dropped on input"):
        assert "weave-vxlan" in net.exec("h1", "ip", "-o", "link").stdout  # a device listens
        before = vxlan_from_drops(net, "h1")
        net.exec("h3", sys.executable, "-c", INJECT, "198.18.0.1", "10.32.0.1", MARKER)
        assert vxlan_from_drops(net, "h1") - before >= 5, before
    checks.done()


def vxlan_from_drops(net: Lab, host: str) -> int:
    """Packets counted by the input rule that drops VXLAN from untrusted sources."""
    table = net.exec(host, "nft", "list", "chain", "inet", "weave", "input").stdout
    for line in table.splitlines():
        if "vxlan-from" in line:
            return int(line.split("counter packets ")[1].split()[0])
    raise AssertionError(f"no vxlan-from rule on {host}")


FLOOD = r"""
import os, socket, sys, time
addr, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
opened = refused = 0
while time.monotonic() < end:
    s = socket.socket(); s.settimeout(0.5)
    try:
        s.connect((addr, 6783))
        s.send(b"WVPY\x01\x01\x01" + os.urandom(32))  # an encrypted preamble, then garbage
        opened += 1
    except OSError:
        refused += 1
    finally:
        s.close()
print(f"opened {opened} refused {refused}")
"""


def test_a_handshake_flood_does_not_disturb_established_peers(
    lab_names: Names, tmp_path: Path,
) -> None:
    net = Lab(lab_names("en3"))
    c2 = encrypted_pair(net, tmp_path, SECRET)
    with serving(net, "c2"):
        until("c1 -> c2", lambda: udp(net, "c1", c2))
        flood = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/wl-{net.name}-h3", "--", sys.executable, "-c", FLOOD,
             "198.18.0.1", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            during = [bool(udp(net, "c1", c2, seconds=2.0)) for _ in range(3)]
            modes = [link_mode(net, "h1", "h2", "sleeve") for _ in range(3)]
        finally:
            out, err = flood.communicate(timeout=30)
    print("flood:", out.strip() or err.strip())
    assert int(out.split()[1]) > 200, out  # the flood really hit the port
    assert all(during), "traffic between established peers stopped during the flood"
    assert all(modes), f"the h1-h2 link left established during the flood: {modes}"
    assert net.weave("h1", "status").returncode == 0
    # A forwarder that dies is replaced, and never with the dead one's keys (its sequence
    # numbers would start again under them): every connection is redialled for new keys.
    state, run = net.host_dirs("h1")
    router_pid = (run / "router.pid").read_text().strip()
    found = subprocess.run(["pgrep", "-P", router_pid, "-f", "weave_cli.sleeve.forwarder"],
                           capture_output=True, text=True, check=False).stdout.split()
    assert found, "no sleeve forwarder under h1's router"
    os.kill(int(found[0]), 9)
    until("h1 renews the link keys", lambda: "the sleeve forwarder restarted: new link keys"
          in (run / "weave.log").read_text(errors="replace"), timeout=20)
    until("h1-h2 back on the sleeve", lambda: link_mode(net, "h1", "h2", "sleeve"), timeout=30)
    with serving(net, "c2"):
        until("c1 -> c2 after the forwarder restart", lambda: udp(net, "c1", c2), timeout=20)
