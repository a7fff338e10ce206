"""Probes for the local-surface tests (test_surfaces*.py): servers, port scans, raw packets.

No tests here. Each probe is a small standard-library program run inside a namespace with
``nsenter --net``, so it sees exactly what a container or a neighbour would:

* ``SERVE`` binds TCP and UDP sockets (address, port) and answers: TCP with a banner, UDP with
  an echo, so a probe that gets an answer has reached the socket itself;
* ``SCAN`` tries many (proto, address, port) at once, in threads, and prints a JSON verdict for
  each: ``open`` (the banner or the echo came back), ``open-other`` (connected, but to
  something else), ``filtered`` (TCP: no answer before the timeout), ``refused``, ``silent``
  (UDP: no echo);
* ``SYN`` sends one TCP SYN from a packet socket (any destination, even 127.0.0.1, with the
  Ethernet header filled in by hand: the sender's own stack would keep 127.0.0.1 local) and
  reports whether a SYN-ACK or RST came back;
* ``VXLAN`` wraps an IPv4/UDP datagram in VXLAN (any VNI) to a host's port 6784 and waits for
  the echo of the inner datagram: it comes back only if the frame was decapsulated and
  delivered;
* ``RA`` sends an IPv6 router advertisement (type 134, prefix option) from a raw ICMPv6
  socket, hop limit 255, to ff02::1 (the kernel fills in the checksum).
"""

from __future__ import annotations

import json
import subprocess
import sys

from netutil import NETNS_DIR

PY = sys.executable
BANNER = "weave-probe"

SERVE = r"""
import json, socket, sys, threading, time
spec, lifetime = json.loads(sys.argv[1]), float(sys.argv[2])
def tcp(s):
    while True:
        c, _ = s.accept()
        try:
            c.sendall(b"weave-probe\n")
        finally:
            c.close()
def udp(s):
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)
for addr, port in spec.get("tcp", []):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(64)
    threading.Thread(target=tcp, args=(s,), daemon=True).start()
for addr, port in spec.get("udp", []):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, port))
    threading.Thread(target=udp, args=(s,), daemon=True).start()
print("ready", flush=True)
time.sleep(lifetime)
"""

SCAN = r"""
import json, os, socket, sys, threading
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
out = {}
def one(proto, addr, port):
    key = f"{proto} {addr}:{port}"
    try:
        if proto == "tcp":
            with socket.create_connection((addr, port), timeout=timeout) as c:
                c.settimeout(timeout)
                try:
                    banner = c.recv(64)
                except OSError:
                    banner = b""
                out[key] = "open" if banner.startswith(b"weave-probe") else "open-other"
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.settimeout(timeout); u.connect((addr, port)); token = os.urandom(12)
                u.send(token)
                out[key] = "open" if u.recv(64) == token else "open-other"
    except TimeoutError:
        out[key] = "filtered" if proto == "tcp" else "silent"
    except ConnectionRefusedError:
        out[key] = "refused"
    except OSError as err:
        out[key] = f"error {err.errno}"
threads = [threading.Thread(target=one, args=t) for t in targets]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out))
"""

_CSUM = r"""
import os, socket, struct, sys, time
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def mac(text):
    return bytes.fromhex(text.replace(":", ""))
def ipv4(src, dst, proto, payload):
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), os.getpid() & 0xffff, 0,
                       64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return head[:10] + struct.pack("!H", csum(head)) + head[12:] + payload
"""

SYN = _CSUM + r"""
ifname, dst_mac, src, dst, dport, seconds = sys.argv[1:6] + [float(sys.argv[6])]
dport = int(dport); sport = 40000 + os.getpid() % 20000
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((ifname, 0x0800)); s.settimeout(0.2)
own = s.getsockname()[4]
tcp = struct.pack("!HHIIBBHHH", sport, dport, 12345, 0, 5 << 4, 0x02, 64240, 0, 0)
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
frame = mac(dst_mac) + own + b"\x08\x00" + ipv4(src, dst, 6, tcp)
deadline = time.monotonic() + seconds; next_send = 0.0
while time.monotonic() < deadline:
    if time.monotonic() >= next_send:
        s.send(frame); next_send = time.monotonic() + 0.5
    try:
        pkt = s.recv(2048)[14:]
    except TimeoutError:
        continue
    if len(pkt) < 40 or pkt[9] != 6 or pkt[12:16] != socket.inet_aton(dst):
        continue
    ihl = (pkt[0] & 15) * 4
    psport, pdport = struct.unpack("!HH", pkt[ihl:ihl + 4]); flags = pkt[ihl + 13]
    if psport == dport and pdport == sport:
        print("answered " + ("syn-ack" if flags & 0x12 == 0x12 else f"flags {flags:#x}"))
        sys.exit(0)
print(f"no answer in {seconds:.1f}s"); sys.exit(1)
"""

VXLAN = _CSUM + r"""
host, vni, inner_mac, src, dst, dport, seconds = sys.argv[1:8]
vni, dport, seconds = int(vni), int(dport), float(seconds)
back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); back.bind(("0.0.0.0", 0))
back.settimeout(0.2); sport = back.getsockname()[1]; token = os.urandom(16)
udp = struct.pack("!HHHH", sport, dport, 8 + len(token), 0) + token
inner = mac(inner_mac) + bytes([0x02, 0x57, 0, 0, 0, 1]) + b"\x08\x00" + ipv4(src, dst, 17, udp)
packet = struct.pack("!BxxxI", 0x08, vni << 8) + inner
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
deadline = time.monotonic() + seconds; next_send = 0.0
while time.monotonic() < deadline:
    if time.monotonic() >= next_send:
        try:
            out.sendto(packet, (host, 6784))
        except OSError:
            pass
        next_send = time.monotonic() + 0.3
    try:
        if back.recv(64) == token:
            print("answered: the inner datagram was delivered"); sys.exit(0)
    except TimeoutError:
        pass
print(f"no answer in {seconds:.1f}s"); sys.exit(1)
"""

RA = r"""
import socket, struct, sys, time
ifname, src, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
index = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
s.bind((src, 0, 0, index))
# type 134, code 0, checksum (kernel), hop limit 64, flags 0, router lifetime 1800 s,
# reachable 0, retrans 0; option 3 (prefix information, 4 x 8 bytes): /64, on-link and
# autonomous, valid 86400 s, preferred 14400 s
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
ra += struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0) + socket.inet_pton(
    socket.AF_INET6, prefix)
for _ in range(3):
    s.sendto(ra, ("ff02::1", 0, 0, index)); time.sleep(0.2)
print("sent")
"""


def py_in(ns: str, program: str, *args: str,
          timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run one of the programs above inside the namespace ``ns`` (a name under /run/netns)."""
    return subprocess.run(
        ["nsenter", f"--net={NETNS_DIR / ns}", "--", PY, "-c", program, *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def serve(ns: str, tcp: list[tuple[str, int]], udp: list[tuple[str, int]],
          seconds: float = 120) -> subprocess.Popen[str]:
    """``SERVE`` in ``ns``; returns once every socket is bound (add it to ``procs``)."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR / ns}", "--", PY, "-c", SERVE,
         json.dumps({"tcp": tcp, "udp": udp}), str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise AssertionError(f"server in {ns} did not start: {proc.communicate()[1][-400:]}")
    return proc


def scan(ns: str, targets: list[tuple[str, str, int]], timeout: float = 1.0) -> dict[str, str]:
    """``SCAN`` from ``ns``: ``{"tcp 10.32.0.3:6783": "filtered", ...}``."""
    proc = py_in(ns, SCAN, json.dumps(targets), str(timeout), timeout=timeout + 30)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, str] = json.loads(proc.stdout)
    return result


def syn(ns: str, ifname: str, dst_mac: str, src: str, dst: str, port: int,
        seconds: float = 2.0) -> str:
    """``SYN`` from ``ns``: ``"answered syn-ack"`` or ``"no answer in 2.0s"``."""
    proc = py_in(ns, SYN, ifname, dst_mac, src, dst, str(port), str(seconds))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.strip()


def vxlan(ns: str, host: str, vni: int, inner_mac: str, src: str, dst: str, port: int,
          seconds: float = 2.0) -> str:
    """``VXLAN`` from ``ns``: ``"answered: ..."`` or ``"no answer in 2.0s"``."""
    proc = py_in(ns, VXLAN, host, str(vni), inner_mac, src, dst, str(port), str(seconds))
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.strip()


def send_ra(ns: str, ifname: str, src: str, prefix: str) -> None:
    proc = py_in(ns, RA, ifname, src, prefix)
    assert proc.returncode == 0, proc.stderr
