"""The sleeve forwarder on a real kernel: namespaces joined by veth underlays (198.18.x), a
forwarder per namespace started through ``SleeveProcess``, its TAP given a 198.19.0.x
address (what the router's bridge would do for containers), and a static config.

Everything runs inside namespaces the test makes (``make_ns``): the fixture deletes them, and
``SleeveProcess.stop`` ends every forwarder, even when the test fails."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from netutil import NETNS_DIR, echo, echo_server, in_ns

from weave_cli.names import SLEEVE_IFNAME
from weave_cli.net.errors import DatapathError
from weave_cli.sleeve import control
from weave_cli.sleeve.client import SleeveProcess

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]
PORT = 6783


@dataclass(eq=False)
class Host:
    ns: str
    peer: str
    overlay: str  # the TAP's address
    proc: SleeveProcess | None = None
    events: list[control.Event] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def collect(self) -> None:
        assert self.proc is not None
        async for event in self.proc.events():
            self.events.append(event)


def veth(a: str, b: str, a_addr: str, b_addr: str, tag: str) -> tuple[str, str]:
    left, right = f"wsl{tag}a", f"wsl{tag}b"
    in_ns(a, "ip", "link", "add", left, "type", "veth", "peer", "name", right,
          "netns", str(NETNS_DIR / b))
    in_ns(a, "ip", "addr", "add", a_addr, "dev", left)
    in_ns(b, "ip", "addr", "add", b_addr, "dev", right)
    in_ns(a, "ip", "link", "set", left, "up")
    in_ns(b, "ip", "link", "set", right, "up")
    return left, right


def host(make_ns: MakeNs, tag: str, i: int) -> Host:
    return Host(make_ns(tag), f"02:00:00:00:00:0{i}", f"198.19.0.{i}")


async def start(h: Host, mtu: int = 1400, extra_args: Sequence[str] = ()) -> None:
    h.proc = SleeveProcess(port=PORT, prefix=["nsenter", f"--net={NETNS_DIR / h.ns}", "--"],
                           extra_args=extra_args)
    await h.proc.start()
    assert h.proc.ready == control.Ready(SLEEVE_IFNAME, PORT)
    h.task = asyncio.ensure_future(h.collect())
    in_ns(h.ns, "ip", "link", "set", SLEEVE_IFNAME, "mtu", str(mtu), "gso_max_size", "60000",
          "up")
    in_ns(h.ns, "ip", "addr", "add", f"{h.overlay}/24", "dev", SLEEVE_IFNAME)


@asynccontextmanager
async def running(*hosts: Host, mtu: int = 1400, extra_args: Sequence[str] = ()
                  ) -> AsyncIterator[None]:
    try:
        for h in hosts:
            await start(h, mtu, extra_args)
        yield
    finally:
        for h in hosts:
            if h.proc is not None:
                await h.proc.stop()
            if h.task is not None:
                await h.task


def configure(h: Host, neighbours: dict[Host, str], routes: dict[Host, Host],
              sleeve: list[Host]) -> None:
    assert h.proc is not None
    h.proc.send_config(control.SleeveConfig(
        local=h.peer, neighbours={n.peer: (addr, PORT) for n, addr in neighbours.items()},
        routes={d.peer: hop.peer for d, hop in routes.items()},
        sleeve_peers=frozenset(p.peer for p in sleeve)))


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def heard(h: Host, peer: Host) -> bool:
    return any(isinstance(e, control.Heard) and e.peer == peer.peer for e in h.events)


def pmtu(h: Host, peer: Host) -> int | None:
    found = [e.mtu for e in h.events if isinstance(e, control.Pmtu) and e.peer == peer.peer]
    return found[-1] if found else None


SERVER = """
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5211)); s.listen(1); s.settimeout(30); print("ready", flush=True)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while (d := c.recv(1 << 16)):
    h.update(d); n += len(d)
print(n, h.hexdigest(), flush=True)
"""
CLIENT = """
import hashlib, random, socket, sys, time
data = random.Random(7).randbytes(int(sys.argv[2]))
for _ in range(100):
    try:
        c = socket.create_connection((sys.argv[1], 5211), timeout=30); break
    except OSError:
        time.sleep(0.1)
c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


def nspy(ns: str, code: str, *args: str) -> list[str]:
    return ["nsenter", f"--net={NETNS_DIR / ns}", "--", sys.executable, "-c", code, *args]


async def tcp_stream(src: Host, dst: Host, size: int, procs: list[subprocess.Popen[str]]
                     ) -> None:
    server = subprocess.Popen(nspy(dst.ns, SERVER), stdout=subprocess.PIPE, text=True)
    procs.append(server)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    client = await asyncio.create_subprocess_exec(
        *nspy(src.ns, CLIENT, dst.overlay, str(size)), stdout=subprocess.PIPE)
    sent, _ = await asyncio.wait_for(client.communicate(), 60)
    got = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 30)
    assert got.split() == sent.decode().split() and int(got.split()[0]) == size


def test_two_hosts_ping_and_stream(make_ns: MakeNs, procs: list[subprocess.Popen[str]]
                                   ) -> None:
    a, b = host(make_ns, "a", 1), host(make_ns, "b", 2)
    veth(a.ns, b.ns, "198.18.0.1/24", "198.18.0.2/24", "ab")

    async def scenario() -> None:
        async with running(a, b):
            configure(a, {b: "198.18.0.2"}, {b: b}, [b])
            configure(b, {a: "198.18.0.1"}, {a: a}, [a])
            await until(lambda: heard(a, b) and heard(b, a))
            procs.append(echo_server(b.ns))
            assert echo(a.ns, b.overlay)
            await until(lambda: pmtu(a, b) is not None)
            assert pmtu(a, b) == 1500 - 66
            await tcp_stream(a, b, 8 << 20, procs)
            await tcp_stream(b, a, 3 << 20, procs)
            assert b.proc is not None
            stats = await b.proc.stats()
            assert stats["tap_tx"] > 0 and stats["rx_bad"] == 0 and stats["tap_tx_bad"] == 0

    asyncio.run(scenario())


def test_three_host_chain_relays(make_ns: MakeNs, procs: list[subprocess.Popen[str]]) -> None:
    a, b, c = host(make_ns, "a", 1), host(make_ns, "b", 2), host(make_ns, "c", 3)
    veth(a.ns, b.ns, "198.18.1.1/24", "198.18.1.2/24", "ab")
    veth(b.ns, c.ns, "198.18.2.2/24", "198.18.2.3/24", "bc")  # b does not route the underlay

    async def scenario() -> None:
        async with running(a, b, c):
            configure(a, {b: "198.18.1.2"}, {b: b, c: b}, [b, c])
            configure(b, {a: "198.18.1.1", c: "198.18.2.3"}, {a: a, c: c}, [a, c])
            configure(c, {b: "198.18.2.2"}, {b: b, a: b}, [a, b])
            await until(lambda: heard(a, b) and heard(c, b))
            procs.append(echo_server(c.ns))
            assert echo(a.ns, c.overlay)
            await tcp_stream(a, c, 4 << 20, procs)
            assert b.proc is not None
            assert (await b.proc.stats())["relayed"] > 100

    asyncio.run(scenario())


def test_pmtu_discovery_under_a_silent_700_byte_limit(
    make_ns: MakeNs, procs: list[subprocess.Popen[str]]
) -> None:
    a, b = host(make_ns, "a", 1), host(make_ns, "b", 2)
    left, right = veth(a.ns, b.ns, "198.18.0.1/24", "198.18.0.2/24", "ab")
    for ns, dev in ((a.ns, left), (b.ns, right)):
        # A real NIC puts separate datagrams on the wire; veth would carry a UDP GSO batch as
        # one skb whose length nft sees, so make the kernel segment before the veth.
        in_ns(ns, "ip", "link", "set", dev, "gso_max_segs", "1")
        subprocess.run(["nsenter", f"--net={NETNS_DIR / ns}", "--", "nft", "-f", "-"],
                       input="table inet wsltest {\n chain in {\n"
                             "  type filter hook input priority 0;\n"
                             "  meta length > 700 udp dport 6783 drop\n }\n}\n",
                       text=True, check=True, capture_output=True)

    async def scenario() -> None:
        async with running(a, b):
            configure(a, {b: "198.18.0.2"}, {b: b}, [b])
            configure(b, {a: "198.18.0.1"}, {a: a}, [a])
            await until(lambda: pmtu(a, b) is not None and pmtu(b, a) is not None, 15)
            assert pmtu(a, b) == pmtu(b, a) == 700 - 66
            await tcp_stream(a, b, 10 << 10, procs)
            await tcp_stream(a, b, 1 << 20, procs)

    asyncio.run(scenario())


def test_forwarder_exits_when_its_ctl_socket_closes(make_ns: MakeNs) -> None:
    ns = make_ns("a")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        proc = subprocess.Popen(
            ["nsenter", f"--net={NETNS_DIR / ns}", "--", sys.executable, "-m",
             "weave_cli.sleeve.forwarder", "--ctl-fd", str(theirs.fileno()), "--port", "6783",
             "--host", ""], pass_fds=(theirs.fileno(),))
        theirs.close()
        try:
            ours.settimeout(10)
            assert control.decode_event(ours.recv(1 << 20)) == control.Ready(SLEEVE_IFNAME, PORT)
            assert in_ns(ns, "ip", "link", "show", SLEEVE_IFNAME).returncode == 0
            ours.close()
            assert proc.wait(timeout=5) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert in_ns(ns, "ip", "link", "show", SLEEVE_IFNAME, check=False).returncode != 0


PARENT = """
import socket, subprocess, sys, time
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
child = subprocess.Popen([sys.executable, "-m", "weave_cli.sleeve.forwarder", "--ctl-fd",
                          str(theirs.fileno()), "--port", "6783", "--host", ""],
                         pass_fds=(theirs.fileno(),))
theirs.close(); ours.recv(1 << 20); print(child.pid, flush=True); time.sleep(60)
"""


def test_forwarder_exits_when_the_router_is_killed(make_ns: MakeNs) -> None:
    ns = make_ns("a")
    parent = subprocess.Popen(nspy(ns, PARENT), stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        else:
            assert not os.path.exists(f"/proc/{child}"), "forwarder outlived its router"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


GARBAGE = """
import os, random, socket, struct, sys
rnd = random.Random(1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer = bytes.fromhex("020000000001"); me = bytes.fromhex("020000000002")
for i in range(3000):
    kind = i % 4
    if kind == 0:
        data = rnd.randbytes(rnd.randrange(0, 1400))
    else:  # well-formed headers with hostile fields
        data = struct.pack("!BBBB6s6sIII", 1, rnd.randrange(0, 6), rnd.randrange(0, 3), 0,
                           peer, me if kind != 3 else rnd.randbytes(6), rnd.getrandbits(32),
                           rnd.getrandbits(32) % 70000, rnd.getrandbits(32) % 70000)
        data += rnd.randbytes(rnd.randrange(0, 1400))
    s.sendto(data, (sys.argv[1], 6783))
print("sent", flush=True)
"""


def test_garbage_does_not_crash_it(make_ns: MakeNs, procs: list[subprocess.Popen[str]]) -> None:
    a, b = host(make_ns, "a", 1), host(make_ns, "b", 2)
    veth(a.ns, b.ns, "198.18.0.1/24", "198.18.0.2/24", "ab")

    async def scenario() -> None:
        async with running(a, b):
            configure(a, {b: "198.18.0.2"}, {b: b}, [b])
            configure(b, {a: "198.18.0.1"}, {a: a}, [a])
            assert b.proc is not None and b.proc._sock is not None
            for bad in (b"", b"junk", b'{"op":"config"}', b"\xff" * 1000):
                b.proc._sock.send(bad)  # hostile control messages too
            garbage = await asyncio.create_subprocess_exec(
                *nspy(a.ns, GARBAGE, "198.18.0.2"), stdout=subprocess.PIPE)
            await asyncio.wait_for(garbage.communicate(), 60)
            procs.append(echo_server(b.ns))
            assert echo(a.ns, b.overlay)
            stats = await b.proc.stats()
            assert b.proc.returncode is None
            assert stats["rx_bad"] + stats["tap_tx_bad"] + stats["reasm_dropped"] > 100
            assert stats["bad_control"] == 4

    asyncio.run(scenario())


def test_start_failure_is_reported(make_ns: MakeNs) -> None:
    a = host(make_ns, "a", 1)

    async def scenario() -> None:
        async with running(a):
            second = SleeveProcess(port=PORT, prefix=["nsenter", f"--net={NETNS_DIR / a.ns}",
                                                      "--"])
            with pytest.raises(DatapathError, match="cannot create TAP weave-sleeve"):
                await second.start()
            assert second.returncode == 1

    asyncio.run(scenario())
