"""The control plane stays responsive while the sleeve carries full load.

The sleeve forwarder is its own process, so the router's event loop (heartbeats, gossip, the
HTTP API) must not notice a bulk TCP stream through the sleeve. Two hosts with ``--no-fastdp``;
c1 on h1 streams to c2 on h2 as fast as it can for ``LOAD_SECONDS``; meanwhile, from the test
process, the h1 router's API answers ``GET /status`` quickly on every try, the link never
leaves ``established sleeve``, and a container attached on h2 during the load is announced by
gossip and reaches c1 through the same loaded sleeve.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import subprocess
import time
from collections.abc import Callable

import pytest
from dputil import FAST, PY, TCP_PORT, both_ways, lab_run, link_mode, serving, udp, until
from labutil import lab, weave_cmd

pytestmark = pytest.mark.lab
LOAD_SECONDS = 8.0
API_LIMIT = 1.0  # seconds; a loop blocked by the data path would take far longer

BLAST = r"""
import socket, sys, time
addr, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((addr, port), timeout=10)
chunk = b"x" * 65536
end = time.monotonic() + seconds
sent = 0
while time.monotonic() < end:
    s.sendall(chunk)
    sent += len(chunk)
s.shutdown(socket.SHUT_WR)
reply = s.recv(200).decode()
print(f"sent {sent} reply {reply}")
sys.exit(0 if reply.split()[0] == str(sent) else 1)
"""


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("weave", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def api_latency(sock_path: str) -> float:
    start = time.monotonic()
    conn = _UnixHTTP(sock_path)
    try:
        conn.request("GET", "/status")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    return time.monotonic() - start


def test_api_heartbeats_and_gossip_stay_responsive_under_sleeve_load(
    lab_names: Callable[[str], str],
) -> None:

    name = lab_names("sl")
    with lab(name, 2, "--no-fastdp", *FAST) as net:
        addr1 = lab_run(net, "h1", "c1")
        addr2 = lab_run(net, "h2", "c2")
        until("h1-h2 on the sleeve", both_ways(net, "h1", "h2", "sleeve"))
        sock_path = str(net.host_dirs("h1")[1] / "weave.sock")
        quiet = [api_latency(sock_path) for _ in range(5)]
        with serving(net, "c2", "c1"):
            blast = subprocess.Popen(
                [*weave_cmd(), "lab", "exec", "--name", name, "c1", "--", PY, "-c", BLAST,
                 addr2, str(TCP_PORT), str(LOAD_SECONDS)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(1.0)  # the stream is under way
                loaded, modes = [], []
                lab_run(net, "h2", "c3")  # attached while the sleeve is busy
                deadline = time.monotonic() + LOAD_SECONDS - 2.0
                while time.monotonic() < deadline:
                    loaded.append(api_latency(sock_path))
                    modes.append(link_mode(net, "h1", "h2", "sleeve"))
                    time.sleep(0.2)
                reached = udp(net, "c3", addr1, seconds=4.0)  # c1 serves; c3 asks
                out, err = blast.communicate(timeout=LOAD_SECONDS + 30)
            finally:
                if blast.poll() is None:
                    blast.kill()
                    blast.communicate()
        assert blast.returncode == 0, f"the bulk stream failed: {out} {err[-300:]}"
        sent = int(out.split()[1])
        print(f"sleeve load: {sent * 8 / LOAD_SECONDS / 1e9:.2f} Gbit/s; API max "
              f"{max(loaded) * 1000:.0f} ms, median {statistics.median(loaded) * 1000:.1f} ms "
              f"(quiet {statistics.median(quiet) * 1000:.1f} ms), {len(loaded)} calls")
        assert sent > 10 << 20, f"hardly any load went through the sleeve: {out}"
        assert max(loaded) < API_LIMIT, (
            f"API latency under load: max {max(loaded):.3f}s, median "
            f"{statistics.median(loaded):.3f}s (quiet median {statistics.median(quiet):.3f}s)")
        assert all(modes), f"the link left 'established sleeve' under load: {modes}"
        assert reached, f"a container attached during the load was not reachable: {reached.line}"
