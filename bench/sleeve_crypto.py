"""The encrypted sleeve against the plain sleeve and the bare underlay, measured in the same run
(docs/sleeve.md, "Encryption").

    sudo .venv/bin/python bench/sleeve_crypto.py [--rounds 3] [--seconds 8] [--quick]

Two namespaces joined by one veth pair (198.18.0.1/2, MTU 1500), a forwarder in each (the argv
the router uses), their TAPs at 198.19.0.1/2 with gso_max_size 60000 and the MTU the ``pmtu``
event implies (1420 plain, 1392 sealed). Every round measures, interleaved so all three see the
same machine load: (a) the underlay, (p) the plain sleeve, (e) the sealed sleeve; the
forwarders switch between plain and sealed by a config message, as the router would. iperf3
TCP -P1, ``end.sum_received``; medians of the rounds. First, the per-datagram cost of the two
AEADs (1416-byte datagrams, ``encrypt_into``), which is why the sleeve uses AES-256-GCM.

Goals (issue): (e) >= 0.40x (p) (stretch 0.45x) and (e) >= 0.10x (a) (stretch 0.14x); exit 0
only when both goals pass. Everything made is removed at the end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import timeit

import _netlab as nl
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

PEERS = ("02:00:00:00:00:01", "02:00:00:00:00:02")
KEYS = (os.urandom(32).hex(), os.urandom(32).hex())  # 1 -> 2 and 2 -> 1, fresh every run


def cipher_costs() -> dict[str, float]:
    """µs per 1416-byte datagram sealed with ``encrypt_into``, 40-byte associated data."""
    out: dict[str, float] = {}
    for name, cls in (("AES-256-GCM", AESGCM), ("ChaCha20-Poly1305", ChaCha20Poly1305)):
        aead, data, aad = cls(os.urandom(32)), bytearray(1416), bytearray(40)
        buf, nonce = bytearray(1432), bytes(12)
        n = 50000
        out[name] = min(timeit.repeat(lambda: aead.encrypt_into(nonce, data, aad, buf),  # noqa: B023
                                      number=n, repeat=3)) / n * 1e6
    return out


class Forwarder:
    """One forwarder started like the router starts it, driven over its ctl socket."""

    def __init__(self, cleanup: nl.Cleanup, ns: str) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ctl = ours
        self.proc = subprocess.Popen(
            nl.ns_argv(ns, sys.executable, "-m", "weave_cli.sleeve.forwarder", "--ctl-fd",
                       str(theirs.fileno()), "--port", "6783", "--host", ""),
            pass_fds=(theirs.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            text=True)
        cleanup.procs.append(self.proc)
        cleanup.push("close a forwarder's ctl socket", ours.close)
        theirs.close()
        ours.settimeout(10)
        if json.loads(ours.recv(1 << 20)).get("ev") != "ready":
            raise nl.Unavailable(f"the forwarder in {ns} did not start")

    def configure(self, i: int, encrypted: bool) -> None:
        other = PEERS[1 - i]
        keys = {other: {"tx": KEYS[i], "rx": KEYS[1 - i]}} if encrypted else {}
        self.ctl.send(json.dumps({
            "op": "config", "local": PEERS[i], "neighbours": {other: [f"198.18.0.{2 - i}", 6783]},
            "routes": {other: other}, "sleeve_peers": [other], "macs": {},
            "encrypted": encrypted, "keys": keys}).encode())

    def stats(self) -> dict[str, int]:
        self.ctl.send(b'{"op":"stats"}')
        while True:
            ev = json.loads(self.ctl.recv(1 << 20))
            if ev.get("ev") == "stats":
                return {k: v for k, v in ev.items() if k != "ev"}


def setup(cleanup: nl.Cleanup) -> tuple[str, str, list[Forwarder]]:
    a, b = f"{nl.REF_PREFIX}sc{os.getpid()}a", f"{nl.REF_PREFIX}sc{os.getpid()}b"
    for ns in (a, b):
        nl.run(["ip", "netns", "add", ns])
        cleanup.push(f"delete namespace {ns}", lambda ns=ns: nl.run(["ip", "netns", "del", ns]))
        nl.run(["ip", "-n", ns, "link", "set", "lo", "up"])
    nl.run(["ip", "-n", a, "link", "add", "wscu1", "type", "veth", "peer", "name", "wscu2",
            "netns", b])
    for ns, dev, i in ((a, "wscu1", 1), (b, "wscu2", 2)):
        nl.run(["ip", "-n", ns, "addr", "add", f"198.18.0.{i}/24", "dev", dev])
        nl.run(["ip", "-n", ns, "link", "set", dev, "mtu", "1500", "up"])
    fwds = []
    for i, ns in enumerate((a, b)):
        fwds.append(Forwarder(cleanup, ns))
        nl.run(["ip", "-n", ns, "link", "set", "weave-sleeve", "gso_max_size", "60000", "up"])
        nl.run(["ip", "-n", ns, "addr", "add", f"198.19.0.{i + 1}/24", "dev", "weave-sleeve"])
    return a, b, fwds


def mode(a: str, b: str, fwds: list[Forwarder], encrypted: bool) -> None:
    for i, (ns, fwd) in enumerate(zip((a, b), fwds, strict=True)):
        fwd.configure(i, encrypted)
        nl.run(["ip", "-n", ns, "link", "set", "weave-sleeve", "mtu",
                "1392" if encrypted else "1420"])
    time.sleep(1.0)  # heartbeats (sealed ones, after a switch) and the PMTU/batch check
    if not nl.wait_reachable(a, "198.19.0.2", 10):
        raise nl.Unavailable(f"the {'sealed' if encrypted else 'plain'} sleeve does not carry")


def main() -> bool:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    args = parser.parse_args()
    rounds, seconds = (1, 3.0) if args.quick else (args.rounds, args.seconds)
    nl.need_tools()
    nl.interrupt_on_sigterm()
    costs = cipher_costs()
    print(json.dumps({"us_per_datagram": {k: round(v, 2) for k, v in costs.items()}}))
    cleanup = nl.Cleanup()
    try:
        a, b, fwds = setup(cleanup)
        got: dict[str, list[float]] = {"underlay": [], "plain": [], "sealed": []}
        for _ in range(rounds):
            got["underlay"].append(nl.tcp_bps(cleanup, b, a, "198.18.0.2", 1, seconds) / 1e9)
            for name, encrypted in (("plain", False), ("sealed", True)):
                mode(a, b, fwds, encrypted)
                got[name].append(nl.tcp_bps(cleanup, b, a, "198.19.0.2", 1, seconds) / 1e9)
        stats = [f.stats() for f in fwds]
    finally:
        cleanup.close()
    med = {k: nl.median(v) for k, v in got.items()}
    vs_plain, vs_underlay = med["sealed"] / med["plain"], med["sealed"] / med["underlay"]
    print(json.dumps({
        "rounds": rounds, "seconds": seconds, "runs_gbit": got,
        "median_gbit": {k: round(v, 3) for k, v in med.items()},
        "sealed_vs_plain": round(vs_plain, 3), "sealed_vs_underlay": round(vs_underlay, 3),
        "receiver": {k: v for k, v in stats[1].items()
                     if k.startswith(("rx_", "rekeys", "key_", "udp_rx", "tap_tx"))},
    }, indent=1))
    goals = [("sealed >= 0.40x plain (stretch 0.45x)", vs_plain, 0.40, 0.45),
             ("sealed >= 0.10x underlay (stretch 0.14x)", vs_underlay, 0.10, 0.14)]
    for what, value, goal, stretch in goals:
        verdict = "PASS" + (" (stretch met)" if value >= stretch else "") if value >= goal \
            else "FAIL"
        print(f"{what}: {value:.3f} {verdict}")
    return all(value >= goal for _, value, goal, _ in goals)


if __name__ == "__main__":
    nl.exit_with(main)
