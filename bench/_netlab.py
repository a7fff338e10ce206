"""Shared helpers of the data-path benchmarks (``datapath_throughput.py``, ``attach_time.py``);
not a benchmark itself (``./run bench`` runs it too: it prints one line).

* ``Cleanup``: undo steps and started processes, run on exit, error, Ctrl-C or SIGTERM (made a
  ``KeyboardInterrupt`` so every ``finally`` runs). Processes are ended by their Popen handle,
  namespaces deleted by exact name: nothing by pattern.
* traffic inside namespaces (``nsenter --net``): iperf3 TCP bit/s (``end.sum_received``),
  received 64 B UDP datagrams/s, ``ping`` average RTT. Everything has a timeout; a failure is
  an ``Unavailable`` with a one-line reason, printed by the benchmarks instead of a crash.
* the lab, through ``python -m weave_cli lab ...`` of this interpreter;
* ``RefOverlay``: reference (b), the hand-built bridge+VXLAN overlay of
  /work/shared/reference/performance.md Part 2.2, built inside two existing host namespaces on
  their underlay device (so over exactly the lab's switch), all its devices named ``pl*``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

NETNS = Path("/run/netns")
REF_VNI, REF_PORT, REF_PREFIX = 42, 4789, "wbn-"


class Unavailable(Exception):
    """A measurement that cannot be made; the message says why (one line)."""


def run(argv: Sequence[str], timeout: float = 60.0, check: bool = True,
        cwd: str | None = None) -> str:
    """Run a command; its stdout. ``Unavailable`` with its stderr when it fails or hangs."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              cwd=cwd)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{' '.join(argv[:6])}... timed out after {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise Unavailable(f"{' '.join(argv[:8])}: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc.stdout


def ns_argv(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net={NETNS / ns}", "--", *argv]


def netns_exists(ns: str) -> bool:
    return (NETNS / ns).exists()


def read_mtus(devs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The MTU of each (namespace, device)."""
    return {(ns, dev): int(json.loads(run(["ip", "-n", ns, "-j", "link", "show", dev]))[0]
                           ["mtu"]) for ns, dev in devs}


def set_mtus(mtus: dict[tuple[str, str], int]) -> None:
    for (ns, dev), mtu in mtus.items():
        run(["ip", "-n", ns, "link", "set", dev, "mtu", str(mtu)])


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


class Cleanup:
    """Undo steps, run last-in first-out by ``close`` (each one even if another fails)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []
        self.procs: list[subprocess.Popen[str]] = []

    def push(self, what: str, step: Callable[[], object]) -> None:
        self.steps.append((what, step))

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        self.procs.append(proc)
        return proc

    def reap(self, proc: subprocess.Popen[str], wait: float = 5.0) -> None:
        """End one process we started (by its handle) and forget it."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        """Run every step; Ctrl-C and SIGTERM are ignored meanwhile, so cleaning finishes."""
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        saved = [signal.signal(sig, signal.SIG_IGN) for sig in signals]
        try:
            for proc in list(self.procs):
                self.reap(proc, wait=2.0)
            while self.steps:
                what, step = self.steps.pop()
                try:
                    step()
                except Exception as err:  # noqa: BLE001 - keep cleaning, say what is left
                    print(f"cleanup: {what} failed: {err}", file=sys.stderr)
        finally:
            for sig, handler in zip(signals, saved, strict=True):
                signal.signal(sig, handler)


def interrupt_on_sigterm() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, as Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def exit_with(body: Callable[[], bool]) -> None:
    """Run a benchmark's body (which cleans up in its own ``finally``) and exit: 0 when it
    returns True (goals met), 1 when False, 2 on an ``Unavailable`` it did not handle, 130 when
    interrupted (Ctrl-C, SIGTERM)."""
    try:
        code = 0 if body() else 1
    except KeyboardInterrupt:
        print("interrupted; everything this benchmark made was removed", file=sys.stderr)
        code = 130
    except Unavailable as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    sys.exit(code)


def need_tools() -> None:
    """iperf3 and ping, installed with apt-get when missing (Debian names)."""
    missing = [pkg for tool, pkg in (("iperf3", "iperf3"), ("ping", "iputils-ping"))
               if shutil.which(tool) is None]
    if missing:
        print(f"installing {' '.join(missing)} ...", flush=True)
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], capture_output=True, env=env)
    for tool in ("iperf3", "ping"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install -y iperf3 iputils-ping")


# -- traffic ------------------------------------------------------------------------------------


def _iperf(cleanup: Cleanup, server_ns: str, client_ns: str, args: list[str],
           seconds: float) -> dict[str, object]:
    """One iperf3 test: a one-shot server in ``server_ns``, the client's JSON result."""
    server = cleanup.popen(ns_argv(server_ns, "iperf3", "-s", "-1", "--forceflush"))
    try:
        assert server.stdout is not None
        fd, deadline, seen = server.stdout.fileno(), time.monotonic() + 5.0, b""
        while b"listening" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise Unavailable(f"iperf3 server in {server_ns} did not start: {seen!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise Unavailable(f"iperf3 server in {server_ns} exited: {seen.decode().strip()}")
            seen += chunk
        out = run(ns_argv(client_ns, "iperf3", "-J", *args), timeout=seconds + 20, check=False)
    finally:
        cleanup.reap(server)
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        raise Unavailable(f"iperf3 client gave no JSON: {out.strip()[:100]}") from None
    if not isinstance(doc, dict) or "error" in doc:
        raise Unavailable(f"iperf3: {doc.get('error') if isinstance(doc, dict) else doc}")
    end = doc.get("end")
    if not isinstance(end, dict) or "sum_received" not in end:
        raise Unavailable("iperf3 JSON has no end.sum_received")
    got = end["sum_received"]
    assert isinstance(got, dict)
    return got


def tcp_bps(cleanup: Cleanup, server_ns: str, client_ns: str, addr: str, streams: int,
            seconds: float) -> float:
    """TCP throughput in bit/s received, ``streams`` parallel streams for ``seconds``."""
    got = _iperf(cleanup, server_ns, client_ns,
                 ["-c", addr, "-t", f"{seconds:g}", "-P", str(streams)], seconds)
    return float(got["bits_per_second"])  # type: ignore[arg-type]


def udp_pps(cleanup: Cleanup, server_ns: str, client_ns: str, addr: str, seconds: float,
            length: int = 64) -> float:
    """Received packets per second of ``length``-byte UDP datagrams sent at an unlimited rate."""
    got = _iperf(cleanup, server_ns, client_ns,
                 ["-c", addr, "-u", "-b", "0", "-l", str(length), "-t", f"{seconds:g}"], seconds)
    return float(got["bytes"]) / length / float(got["seconds"])  # type: ignore[arg-type]


_RTT = re.compile(r"= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms")


def ping_us(client_ns: str, addr: str, count: int = 100, interval: float = 0.01) -> float:
    """Average ICMP echo RTT in µs (``ping -c COUNT -i INTERVAL -q``)."""
    out = run(ns_argv(client_ns, "ping", "-c", str(count), "-i", f"{interval:g}", "-q", "-W", "1",
                      addr), timeout=count * interval + 15, check=False)
    found = _RTT.search(out)
    if not found:
        raise Unavailable(f"no ping answers from {addr}: {out.strip().splitlines()[-1:]}")
    return float(found.group(1)) * 1000


def wait_reachable(client_ns: str, addr: str, seconds: float) -> bool:
    """True once one ping from ``client_ns`` to ``addr`` is answered within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        argv = ns_argv(client_ns, "ping", "-c", "1", "-W", "1", "-q", addr)
        if subprocess.run(argv, capture_output=True, timeout=10).returncode == 0:
            return True
        time.sleep(0.2)
    return False


# -- the lab ------------------------------------------------------------------------------------


def weave(*args: str, timeout: float = 120.0) -> str:
    """``weave ARGS`` of this interpreter's installation (``python -m weave_cli`` run from /, so
    a source tree in the current directory is not picked up; PYTHONPATH still is), as the
    in-process imports of the benchmarks; stdout or ``Unavailable``."""
    return run([sys.executable, "-m", "weave_cli", *args], timeout=timeout, cwd="/")


def lab_up(cleanup: Cleanup, lab: str, launch: Sequence[str] = ()) -> None:
    """A fresh 2-host lab (an old one of that name is removed first); down again on cleanup."""
    weave("lab", "down", "--name", lab)
    cleanup.push(f"weave lab down --name {lab}", lambda: weave("lab", "down", "--name", lab))
    extra = ["--", *launch] if launch else []
    weave("lab", "up", "--hosts", "2", "--name", lab, *extra, timeout=180)


def lab_container(lab: str, host: str, name: str) -> tuple[str, str]:
    """``weave lab run``: (the container's namespace, its address)."""
    words = weave("lab", "run", "--name", lab, host, name).split()
    return words[1], words[3]


def lab_host_ns(lab: str, host: str) -> str:
    return f"wl-{lab}-{host}"


def connection_mode(lab: str) -> str:
    """The data path of h1's first connection in ``weave status connections``: the word after
    its state (``<- ADDR established fastdp PEER ...``), e.g. fastdp, sleeve or none."""
    out = weave("lab", "exec", "--name", lab, "h1", "--", "weave", "status", "connections",
                timeout=30)
    words = out.split()
    return words[3] if len(words) > 3 else f"no connection ({out.strip()!r})"


# -- reference (b): hand-built bridge + VXLAN ---------------------------------------------------


class RefOverlay:
    """Reference (b) inside host namespaces ``hosts`` whose underlay device is ``dev``, host K
    at ``198.18.0.K``; ``addr(K)`` is container K's address. Several may share the hosts when
    each has its own ``vni`` and ``port`` (device names carry the VNI: ``plbr42-1``...).
    ``udpcsum``: outer UDP checksums on (the kernel's default for IPv4 VXLAN is off)."""

    def __init__(self, cleanup: Cleanup, tag: str, hosts: Sequence[str], dev: str = "eth0",
                 mtu: int = 1450, udpcsum: bool = False, vni: int = REF_VNI,
                 port: int = REF_PORT) -> None:
        self.hosts, self.dev, self.mtu, self.udpcsum = list(hosts), dev, mtu, udpcsum
        self.vni, self.port = vni, port
        self.ctrs = [f"{REF_PREFIX}{tag}-{vni}-{k}" for k in range(1, len(hosts) + 1)]
        for ns in self.ctrs:
            if netns_exists(ns):
                run(["ip", "netns", "del", ns])
        for ns in self.ctrs:
            run(["ip", "netns", "add", ns])
            cleanup.push(f"ip netns del {ns}", functools.partial(run, ["ip", "netns", "del", ns]))
        self._build()

    @staticmethod
    def addr(k: int) -> str:
        return f"198.19.0.{k}"

    @staticmethod
    def mac(k: int) -> str:
        return f"02:50:4c:00:00:{k:02x}"

    def _build(self) -> None:
        m, csum = str(self.mtu), "udpcsum" if self.udpcsum else "noudpcsum"
        for k, (h, c) in enumerate(zip(self.hosts, self.ctrs, strict=True), start=1):
            br, vx, cv, ce = (f"pl{d}{self.vni}-{k}" for d in ("br", "vx", "cv", "ce"))
            for argv in (
                ["ip", "-n", h, "link", "add", br, "type", "bridge"],
                ["ip", "-n", h, "link", "set", br, "mtu", m, "addrgenmode", "none", "up"],
                ["ip", "-n", h, "link", "add", vx, "type", "vxlan", "id", str(self.vni),
                 "dstport", str(self.port), "local", f"198.18.0.{k}", "dev", self.dev,
                 "nolearning", csum],
                ["ip", "-n", h, "link", "set", vx, "mtu", m, "addrgenmode", "none", "master",
                 br, "up"],
                ["ip", "-n", h, "link", "add", cv, "type", "veth", "peer", "name", ce, "netns", c],
                ["ip", "-n", h, "link", "set", cv, "mtu", m, "addrgenmode", "none", "master",
                 br, "up"],
                ["ip", "netns", "exec", c, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1"],
                ["ip", "-n", c, "link", "set", "lo", "up"],
                ["ip", "-n", c, "link", "set", ce, "address", self.mac(k), "mtu", m, "up"],
                ["ip", "-n", c, "addr", "add", f"{self.addr(k)}/16", "dev", ce],
            ):
                run(argv)
            for j in range(1, len(self.hosts) + 1):
                if j == k:
                    continue
                dst, flood = f"198.18.0.{j}", "00:00:00:00:00:00"
                run(["bridge", "-n", h, "fdb", "append", flood, "dev", vx, "dst", dst])
                run(["bridge", "-n", h, "fdb", "add", self.mac(j), "dev", vx, "dst", dst, "self",
                     "permanent"])
                run(["bridge", "-n", h, "fdb", "add", self.mac(j), "dev", vx, "master", "static"])


if __name__ == "__main__":
    print("bench/_netlab.py: helpers for datapath_throughput.py and attach_time.py; nothing to run")
