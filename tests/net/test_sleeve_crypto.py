"""The encrypted sleeve on a real kernel: two forwarders in namespaces joined by a veth
underlay, keyed like the router keys them (A's tx key for B is B's rx key for A).

* matching keys carry a TCP stream (and rekeying every 500 datagrams does not break it);
* mismatched keys, or a plaintext sender facing an encrypted receiver, carry nothing (S12);
* a raw AF_PACKET capture on the underlay of a stream full of a marker string never holds the
  marker when encrypted, and does when not (which proves the capture sees the traffic).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from netutil import NETNS_DIR, echo, echo_server
from test_sleeve_kernel import (
    SERVER,
    Host,
    MakeNs,
    heard,
    host,
    nspy,
    pmtu,
    running,
    until,
    veth,
)

from weave_cli.sleeve import control
from weave_cli.sleeve.control import SleeveKeys
from weave_cli.sleeve.seal import SecretKey

pytestmark = pytest.mark.lab
PORT = 6783
MARKER = "WEAVE-SLEEVE-MARKER-7f3a91"
CAPTURE = """
import select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
marker = sys.argv[2].encode()
udp = hits = 0
print("ready", flush=True)
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if sys.stdin in ready:
        break
    d = s.recv(1 << 17)
    if len(d) > 42 and d[12:14] == b"\\x08\\x00" and d[23] == 17:
        udp += 1
        hits += marker in d
print(udp, hits, flush=True)
"""
MARKER_CLIENT = """
import socket, sys, time
data = (sys.argv[2] + "-").encode() * (int(sys.argv[3]) // (len(sys.argv[2]) + 1))
for _ in range(100):
    try:
        c = socket.create_connection((sys.argv[1], 5211), timeout=30); break
    except OSError:
        time.sleep(0.1)
c.sendall(data); c.close()
print(len(data), flush=True)
"""


def keys(i: int, j: int, gen: int = 0) -> SecretKey:
    return SecretKey(bytes([i, j, gen]) * 10 + b"kk")


def configure(h: Host, other: Host, addr: str, encrypted: bool = True, gen: int = 0) -> None:
    assert h.proc is not None
    i, j = int(h.peer[-1]), int(other.peer[-1])
    pair = {other.peer: SleeveKeys(keys(i, j, gen), keys(j, i, gen))} if encrypted else {}
    h.proc.send_config(control.SleeveConfig(
        local=h.peer, neighbours={other.peer: (addr, PORT)}, routes={other.peer: other.peer},
        sleeve_peers=frozenset([other.peer]), encrypted=encrypted, keys=pair))


def pair_hosts(make_ns: MakeNs) -> tuple[Host, Host]:
    a, b = host(make_ns, "a", 1), host(make_ns, "b", 2)
    veth(a.ns, b.ns, "198.18.0.1/24", "198.18.0.2/24", "ab")
    return a, b


async def marker_stream(src: Host, dst: Host, size: int, procs: list[subprocess.Popen[str]]
                        ) -> None:
    server = subprocess.Popen(nspy(dst.ns, SERVER), stdout=subprocess.PIPE, text=True)
    procs.append(server)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    client = await asyncio.create_subprocess_exec(
        *nspy(src.ns, MARKER_CLIENT, dst.overlay, MARKER, str(size)), stdout=subprocess.PIPE)
    sent, _ = await asyncio.wait_for(client.communicate(), 60)
    got = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 30)
    assert int(got.split()[0]) == int(sent) > size // 2


@pytest.mark.parametrize("encrypted", [True, False])
def test_capture_shows_the_marker_only_in_plaintext(
    make_ns: MakeNs, procs: list[subprocess.Popen[str]], encrypted: bool
) -> None:
    a, b = pair_hosts(make_ns)
    capture = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR / b.ns}", "--", sys.executable, "-c", CAPTURE, "wslabb",
         MARKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(capture)
    assert capture.stdout is not None and capture.stdout.readline().strip() == "ready"

    async def scenario() -> None:
        async with running(a, b):
            configure(a, b, "198.18.0.2", encrypted)
            configure(b, a, "198.18.0.1", encrypted)
            await until(lambda: heard(a, b) and heard(b, a))
            await until(lambda: pmtu(a, b) is not None)
            assert pmtu(a, b) == 1500 - (94 if encrypted else 66)
            await marker_stream(a, b, 4 << 20, procs)
            assert b.proc is not None
            stats = await b.proc.stats()
            if encrypted:
                assert stats["rx_auth_failed"] == 0 and stats["rx_plaintext"] == 0
                assert stats["tap_tx"] > 20

    asyncio.run(scenario())
    out, _ = capture.communicate("stop\n", timeout=30)
    udp, hits = map(int, out.split())
    assert udp > 20  # GSO batches cross the veth as one skb each
    assert (hits == 0) if encrypted else (hits > 10)


def test_matching_keys_carry_a_stream_across_rekeys(
    make_ns: MakeNs, procs: list[subprocess.Popen[str]]
) -> None:
    a, b = pair_hosts(make_ns)
    extra = ["--rekey-messages", "500", "--rekey-seconds", "1"]

    async def scenario() -> None:
        async with running(a, b, extra_args=extra):
            configure(a, b, "198.18.0.2")
            configure(b, a, "198.18.0.1")
            await until(lambda: heard(a, b) and heard(b, a))
            procs.append(echo_server(b.ns))
            assert echo(a.ns, b.overlay)
            await marker_stream(a, b, 16 << 20, procs)
            await marker_stream(b, a, 4 << 20, procs)
            configure(a, b, "198.18.0.2", gen=1)  # the control connection was re-established
            configure(b, a, "198.18.0.1", gen=1)
            await marker_stream(a, b, 4 << 20, procs)
            assert a.proc is not None and b.proc is not None
            sa, sb = await a.proc.stats(), await b.proc.stats()
            assert sa["rekeys_tx"] > 10 and sb["rekeys_rx"] > 10
            assert sa["key_switches"] == sb["key_switches"] == 1
            assert sb["rx_auth_failed"] < 50 and sb["tap_tx_bad"] == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("case", ["mismatched", "plaintext"])
def test_wrong_keys_or_plaintext_carry_nothing(make_ns: MakeNs,
                                               procs: list[subprocess.Popen[str]],
                                               case: str) -> None:
    a, b = pair_hosts(make_ns)

    async def scenario() -> None:
        async with running(a, b):
            if case == "mismatched":
                configure(a, b, "198.18.0.2", gen=1)
            else:
                configure(a, b, "198.18.0.2", encrypted=False)
            configure(b, a, "198.18.0.1")
            procs.append(echo_server(b.ns))
            await asyncio.sleep(1.5)  # heartbeats, probes and (lost) discovery
            assert not echo(a.ns, b.overlay, seconds=2.0)
            assert not heard(b, a)
            assert b.proc is not None
            stats = await b.proc.stats()
            assert stats["tap_tx"] == 0 and stats["heartbeats_rx"] == 0
            key = "rx_auth_failed" if case == "mismatched" else "rx_plaintext"
            assert stats[key] > 0

    asyncio.run(scenario())
