"""Helpers for the kernel tier: namespaces made and removed by the tests, an in-memory IPAM,
and the lab's UDP echo probe (``weave_cli.lab.probe``) run inside namespaces (no ping binary).

Every namespace is named ``wnt-<pid>-<n>`` (weave net test): nothing else uses that prefix,
so the fixture can remove exactly what the test made, and ``leftovers`` can prove it did.
"""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from weave_cli.errors import RouterError
from weave_cli.net.addrspec import IPAMView

PREFIX = "wnt-"
NETNS_DIR = Path("/run/netns")

def run(
    *argv: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def in_ns(name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("nsenter", f"--net={NETNS_DIR / name}", "--", *argv, check=check)


def ns_names() -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(PREFIX))
    except FileNotFoundError:
        return []


def ns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def echo_server(ns: str, seconds: float = 20.0) -> subprocess.Popen[str]:
    """The lab's UDP echo probe serving inside ``ns``; returns once it is bound."""
    proc = subprocess.Popen(
        ["nsenter", f"--net={NETNS_DIR / ns}", "--", sys.executable, "-m", "weave_cli.lab.probe",
         "serve", "--seconds", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def echo(ns: str | None, addr: str, seconds: float = 3.0) -> bool:
    """True when a datagram sent from ``ns`` (None: here) to the probe at ``addr`` comes back."""
    argv = [sys.executable, "-m", "weave_cli.lab.probe", "ask", addr, "--seconds", str(seconds)]
    if ns is not None:
        argv = ["nsenter", f"--net={NETNS_DIR / ns}", "--", *argv]
    return run(*argv, check=False).returncode == 0


class MemoryBook:
    """IPAM in memory with the router's rules: lowest free address, one owner per address."""

    def __init__(self, range_: str = "10.32.0.0/12", enabled: bool = True) -> None:
        net = IPv4Network(range_)
        self._view = IPAMView(enabled, net if enabled else None, net if enabled else None)
        self.owned: dict[str, list[IPv4Interface]] = {}
        self.fail_allocate_after: int | None = None
        self.calls: list[str] = []

    def view(self) -> IPAMView:
        return self._view

    def lookup(self, ident: str) -> list[IPv4Interface]:
        return list(self.owned.get(ident, []))

    def _holder(self, ip: IPv4Address) -> str | None:
        for ident, addrs in self.owned.items():
            if any(a.ip == ip for a in addrs):
                return ident
        return None

    def allocate(self, ident: str, subnet: IPv4Network | None) -> IPv4Interface:
        self.calls.append(f"allocate {ident} {subnet}")
        if self.fail_allocate_after is not None:
            if self.fail_allocate_after <= 0:
                raise RouterError("no free address in the subnet (test)")
            self.fail_allocate_after -= 1
        net = subnet or self._view.default_subnet
        assert net is not None
        for addr in self.owned.get(ident, []):
            if addr.ip in net and addr.network.prefixlen == net.prefixlen:
                return addr
        for host in net.hosts():
            if self._holder(host) is None:
                got = IPv4Interface(f"{host}/{net.prefixlen}")
                self.owned.setdefault(ident, []).append(got)
                return got
        raise RouterError("subnet full (test)")

    def claim(self, ident: str, addr: IPv4Interface) -> None:
        self.calls.append(f"claim {ident} {addr}")
        holder = self._holder(addr.ip)
        if holder == ident:
            return
        if holder is not None:
            raise RouterError(f"address {addr.ip} already in use by {holder}")
        self.owned.setdefault(ident, []).append(addr)

    def free(self, ident: str, ip: IPv4Address | None = None) -> None:
        self.calls.append(f"free {ident} {ip}")
        left = [a for a in self.owned.get(ident, []) if ip is not None and a.ip != ip]
        if left:
            self.owned[ident] = left
        else:
            self.owned.pop(ident, None)
