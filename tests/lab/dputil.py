"""Helpers for the data-path lab tests: traffic probes between lab nodes, link modes, soft checks.

Traffic is made by small Python programs (standard library only) run inside a container or host
namespace with ``weave lab exec NODE -- python -c PROGRAM ARGS``, so no ping or netcat is
needed:

* ``SERVE`` answers UDP datagrams on ``UDP_PORT`` with the same bytes (any size up to 64 KiB)
  and, on ``TCP_PORT``, reads each TCP connection to its end and replies ``"<length> <sha256>"``;
* ``UDP_ASK`` sends one datagram of N random bytes until the identical echo comes back;
* ``UDP_SWEEP`` does that for every size in a range, and lists the sizes that got no echo;
* ``PING`` sends ICMP echo requests with N bytes of payload from a raw socket (the kernel
  fragments what does not fit the MTU) until a reply with the same payload comes back;
* ``TCP_SEND`` streams N bytes over one TCP connection and checks the server's digest.

Each asker exits 0 on success and 1 after its deadline, printing one line that says what
happened (the last error included), which the tests put in their failure messages.

``Checks`` collects named checks (scenario ids) so one lab can serve several scenarios and a
failure report still says which passed and which failed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from labutil import Lab, weave, weave_cmd

PY = sys.executable
UDP_PORT = 7777
TCP_PORT = 7778
FAST = ("--heartbeat-interval", "1", "--gossip-interval", "2", "--retry-max", "3")
CONVERGE = 20.0  # seconds: links, modes and traffic settle well within this on 2 busy cores

SERVE = r"""
import hashlib, socket, sys, threading, time
udp_port, tcp_port, lifetime = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
u.bind(("0.0.0.0", udp_port))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", tcp_port)); t.listen(16)
def udp():
    while True:
        data, peer = u.recvfrom(65535)
        try:
            u.sendto(data, peer)
        except OSError:
            pass
def one(conn):
    with conn:
        conn.settimeout(60); h = hashlib.sha256(); n = 0
        try:
            while True:
                b = conn.recv(65536)
                if not b:
                    break
                h.update(b); n += len(b)
            conn.sendall(f"{n} {h.hexdigest()}".encode())
        except OSError:
            pass
def tcp():
    while True:
        conn, _ = t.accept()
        threading.Thread(target=one, args=(conn,), daemon=True).start()
for f in (udp, tcp):
    threading.Thread(target=f, daemon=True).start()
print("ready", flush=True)
time.sleep(lifetime)
"""

UDP_ASK = r"""
import os, socket, sys, time
addr, port, size, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
bind_port = int(sys.argv[5]) if len(sys.argv) > 5 else 0
payload = os.urandom(size); start = time.monotonic(); deadline = start + seconds; last = "no reply"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", bind_port)); s.settimeout(0.3)
while time.monotonic() < deadline:
    try:
        s.sendto(payload, (addr, port))
        while time.monotonic() < deadline:
            data, _ = s.recvfrom(65535)
            if data == payload:
                print(f"udp {size} B echoed by {addr} after {time.monotonic() - start:.1f}s")
                sys.exit(0)
            last = f"got {len(data)} B that are not the echo"
    except TimeoutError:
        pass
    except OSError as err:
        last = f"{type(err).__name__}: {err}"; time.sleep(0.2)
print(f"udp {size} B to {addr}:{port}: no echo in {seconds:.0f}s ({last})")
sys.exit(1)
"""

UDP_SWEEP = r"""
import os, socket, sys, time
addr, port, per, total = sys.argv[1], int(sys.argv[2]), float(sys.argv[5]), float(sys.argv[6])
first, last = int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
lost = []; start = time.monotonic(); end = start + total
for size in range(first, last + 1):
    if time.monotonic() > end:
        lost.append(f"{size}..{last} not tried in {total:.0f}s")
        break
    payload = os.urandom(size); deadline = time.monotonic() + per; ok = False
    while not ok and time.monotonic() < deadline:
        try:
            s.sendto(payload, (addr, port))
            while not ok:
                ok = s.recvfrom(65535)[0] == payload
        except OSError:
            pass
    if not ok:
        lost.append(size)
took = time.monotonic() - start
if lost:
    print(f"udp sizes {first}..{last} B to {addr}: {len(lost)} lost: {lost[:40]} ({took:.1f}s)")
    sys.exit(1)
print(f"udp sizes {first}..{last} B to {addr}: every one echoed ({took:.1f}s)")
"""

PING = r"""
import os, socket, struct, sys, time
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
dst, size, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ident = os.getpid() & 0xffff; payload = os.urandom(size); last = "no reply"
start = time.monotonic(); deadline = start + seconds
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); sock.settimeout(0.5)
seq = 0
while time.monotonic() < deadline:
    seq += 1
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, csum(head + payload), ident, seq) + payload
    try:
        sock.sendto(packet, (dst, 0))
        while time.monotonic() < deadline:
            buf, peer = sock.recvfrom(65535); ihl = (buf[0] & 15) * 4
            kind, _, _, rid, _ = struct.unpack("!BBHHH", buf[ihl:ihl + 8])
            if peer[0] == dst and kind == 0 and rid == ident and buf[ihl + 8:] == payload:
                print(f"icmp {size} B echoed by {dst} after {time.monotonic() - start:.1f}s")
                sys.exit(0)
            if kind == 3:
                last = f"ICMP unreachable code {buf[ihl + 1]} from {peer[0]}"
    except TimeoutError:
        pass
    except OSError as err:
        last = f"{type(err).__name__}: {err}"; time.sleep(0.2)
print(f"icmp {size} B to {dst}: no echo in {seconds:.0f}s ({last})")
sys.exit(1)
"""

TCP_SEND = r"""
import hashlib, os, socket, sys, time
addr, port, size, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
data = os.urandom(size); want = f"{size} {hashlib.sha256(data).hexdigest()}"
start = time.monotonic(); deadline = start + seconds; last = "not tried"
while time.monotonic() < deadline:
    try:
        with socket.create_connection((addr, port), timeout=2) as c:
            c.settimeout(max(0.5, deadline - time.monotonic()))
            c.sendall(data); c.shutdown(socket.SHUT_WR); got = b""
            while True:
                b = c.recv(4096)
                if not b:
                    break
                got += b
        if got.decode(errors="replace") == want:
            print(f"tcp {size} B to {addr} intact after {time.monotonic() - start:.1f}s")
            sys.exit(0)
        last = f"server answered {got[:80]!r}"
    except OSError as err:
        last = f"{type(err).__name__}: {err}"; time.sleep(0.3)
print(f"tcp {size} B to {addr}:{port}: not delivered in {seconds:.0f}s ({last})")
sys.exit(1)
"""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    line: str

    def __bool__(self) -> bool:
        return self.ok


def _run_py(net: Lab, node: str, program: str, *args: str, seconds: float) -> Outcome:
    proc = net.exec(node, PY, "-c", program, *args, check=False, timeout=seconds + 30)
    text = (proc.stdout.strip() or proc.stderr.strip() or f"exit {proc.returncode}")
    return Outcome(proc.returncode == 0, f"{node}: {text.splitlines()[-1]}")


def udp(net: Lab, node: str, addr: str, size: int = 64, seconds: float = 3.0,
        port: int = UDP_PORT, bind_port: int = 0) -> Outcome:
    """A UDP datagram of ``size`` bytes from ``node`` to ``addr`` comes back intact."""
    return _run_py(net, node, UDP_ASK, addr, str(port), str(size), str(seconds), str(bind_port),
                   seconds=seconds)


def udp_sweep(net: Lab, node: str, addr: str, first: int, last: int,
              per_size: float = 2.0, seconds: float = 30.0) -> Outcome:
    """Every UDP payload size from ``first`` to ``last`` bytes comes back intact, each within
    ``per_size`` seconds (resent every 0.2 s, so a size that first triggers PMTU discovery still
    counts) and all within ``seconds``: no size falls into a black hole between two MTUs."""
    return _run_py(net, node, UDP_SWEEP, addr, str(UDP_PORT), str(first), str(last),
                   str(per_size), str(seconds), seconds=seconds + per_size)


def ping(net: Lab, node: str, addr: str, size: int = 56, seconds: float = 3.0) -> Outcome:
    """An ICMP echo with ``size`` bytes of payload from ``node`` to ``addr`` is answered."""
    return _run_py(net, node, PING, addr, str(size), str(seconds), seconds=seconds)


def tcp(net: Lab, node: str, addr: str, size: int = 10 * 1024, seconds: float = 10.0,
        port: int = TCP_PORT) -> Outcome:
    """``size`` bytes stream from ``node`` to ``addr`` over TCP and arrive intact."""
    return _run_py(net, node, TCP_SEND, addr, str(port), str(size), str(seconds),
                   seconds=seconds)


def none_reach(net: Lab, pairs: list[tuple[str, str, str]], seconds: float = 1.5) -> None:
    """No ``(source node, target name, target address)`` gets a UDP echo; all probed at once.

    Fails with every pair that did reach (or whose probe could not run)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(pairs) or 1) as pool:
        outcomes = list(pool.map(lambda p: udp(net, p[0], p[2], seconds=seconds), pairs))
    bad = [f"{src} -> {name}: {o.line}" for (src, name, _), o in zip(pairs, outcomes, strict=True)
           if not silent(o)]
    assert not bad, "reached (or could not probe): " + "; ".join(bad)


def silent(probe: Outcome) -> Outcome:
    """The opposite of a probe, for "must not reach" checks: true only when the probe ran to
    its deadline without an answer (a probe that could not even start proves nothing)."""
    ran = " no echo in " in probe.line or " not delivered in " in probe.line
    return Outcome(not probe.ok and ran, probe.line)


@contextmanager
def serving(net: Lab, *nodes: str, udp_port: int = UDP_PORT, tcp_port: int = TCP_PORT,
            lifetime: float = 900.0) -> Iterator[None]:
    """``SERVE`` running in every node for the duration of the block."""
    procs = []
    try:
        for node in nodes:
            proc = subprocess.Popen(
                [*weave_cmd(), "lab", "exec", "--name", net.name, node, "--", PY, "-c", SERVE,
                 str(udp_port), str(tcp_port), str(lifetime)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                proc.kill()
                raise AssertionError(f"server in {node} did not start: {line!r} "
                                     f"{proc.communicate()[1][-500:]}")
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()


def until(what: str, probe: Callable[[], Any], timeout: float = CONVERGE,
          interval: float = 0.3) -> tuple[Any, float]:
    """Call ``probe`` until it is truthy; (its value, seconds it took), else AssertionError
    naming ``what`` with the last value (an Outcome's line says what went wrong)."""
    start = time.monotonic()
    deadline = start + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except AssertionError as err:
            last = err
        if last and not isinstance(last, AssertionError):
            return last, time.monotonic() - start
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s; last: {last}")
        time.sleep(interval)


def lab_run(net: Lab, host: str, name: str, *addrs: str) -> str:
    """``weave lab run HOST NAME ADDR...``: the container's first IP."""
    out = weave("lab", "run", "--name", net.name, host, name, *addrs).stdout.split()
    assert out[:3] == [name, f"wl-{net.name}-c-{name}", host], out
    return out[3]


def own_address(net: Lab, host: str, offset: int = 257) -> str:
    """An address ``offset`` into the biggest range ``host``'s IPAM owns, for ``ip:`` claims.

    A claim succeeds only on the peer that owns the address ("owned by other peer" elsewhere,
    as in the original), so a static address for a host is picked from that host's own space.
    """
    import ipaddress

    entries = [e for e in net.report(host)["IPAM"]["Entries"] if e.get("Nickname") == host]
    assert entries, f"{host} owns no IPAM space yet"
    biggest = max(entries, key=lambda e: int(e["Size"]))
    assert int(biggest["Size"]) > offset, biggest
    return str(ipaddress.ip_address(biggest["Token"]) + offset)


@dataclass(frozen=True)
class LinkView:
    """One of a router's connections as ``weave report`` shows it."""

    nick: str
    state: str  # "established", "pending", ...
    mode: str  # "fastdp", "sleeve", "none" (the first word of Info), or "" when absent
    attrs: dict[str, Any]
    address: str

    def __str__(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.attrs.items())
        return f"{self.address} {self.state} {self.mode} ({self.nick}) {extra}".strip()


def links(net: Lab, host: str) -> dict[str, LinkView]:
    """The host's connections by the peer's nickname."""
    out = {}
    for conn in net.report(host)["Router"]["Connections"]:
        info = str(conn.get("Info") or "")
        match = re.search(r"\(([^()]*)\)\s*$", info)
        nick = match.group(1) if match else info
        words = info.split()
        mode = words[0] if len(words) > 1 else ""
        attrs = conn.get("Attrs") or {}
        out[nick] = LinkView(nick, str(conn.get("State")), mode,
                             dict(attrs) if isinstance(attrs, dict) else {"attrs": attrs},
                             str(conn.get("Address")))
    return out


def link_mode(net: Lab, a: str, b: str, mode: str) -> str | None:
    """``a``'s link to ``b`` is established in ``mode``: a description of it, else None."""
    link = links(net, a).get(b)
    if link is not None and link.state == "established" and link.mode == mode:
        return str(link)
    return None


def both_ways(net: Lab, a: str, b: str, mode: str) -> Callable[[], str | AssertionError]:
    """A probe for ``until``: the a-b link is established in ``mode`` on both routers."""
    def probe() -> str | AssertionError:
        seen = [link_mode(net, a, b, mode), link_mode(net, b, a, mode)]
        if all(seen):
            return f"{a}: {seen[0]}; {b}: {seen[1]}"
        return AssertionError(f"{a}: {links(net, a).get(b)}; {b}: {links(net, b).get(a)}")
    return probe


def connections_text(net: Lab, host: str) -> str:
    return net.weave(host, "status", "connections", check=False).stdout.strip()


def link_line(net: Lab, host: str, nick: str) -> str:
    """``host``'s line of ``weave status connections`` for peer ``nick`` (or what is there)."""
    text = connections_text(net, host)
    return next((x for x in text.splitlines() if f"({nick})" in x), f"no line for {nick}: {text}")


def ns_out(netns: str, *argv: str, check: bool = True) -> str:
    """``argv`` in a lab namespace (as root, from the test process): its stdout."""
    proc = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "--", *argv],
                          capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} in {netns}: exit {proc.returncode} "
                             f"{proc.stderr.strip()}")
    return proc.stdout


class Checks:
    """Named checks that keep going after a failure; ``done()`` fails with every result.

    ``with checks("IT01 static addresses across hosts"):`` runs a block; an exception in it is
    recorded (with where it happened) instead of ending the test, so later, independent checks
    on the same lab still run and the report says which scenarios passed. Use ``must`` for a
    block that later checks depend on: a failure there ends the test with the report so far.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.results: list[tuple[str, bool, str]] = []
        self.started = time.monotonic()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        except Exception as err:  # every failure is reported at the end
            where = traceback.extract_tb(err.__traceback__)[-1]
            self.results.append((name, False, f"{type(err).__name__}: {err} "
                                 f"(line {where.lineno})"))
        else:
            self.results.append((name, True, f"{time.monotonic() - start:.1f}s"))
        print(f"[{'ok' if self.results[-1][1] else 'FAILED'}] {name}: {self.results[-1][2]}",
              flush=True)

    @contextmanager
    def must(self, name: str) -> Iterator[None]:
        with self(name):
            yield
        if not self.results[-1][1]:
            self.done()

    def report(self) -> str:
        lines = [f"{self.title} ({time.monotonic() - self.started:.0f}s)"]
        lines += [f"  {'ok    ' if ok else 'FAILED'} {name}: {detail}"
                  for name, ok, detail in self.results]
        return "\n".join(lines)

    def done(self) -> None:
        failed = [name for name, ok, _ in self.results if not ok]
        print(self.report(), flush=True)
        assert not failed, self.report()

