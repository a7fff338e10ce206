"""``weave lab demo``: a short scripted tour on a lab of its own, named ``demo``.

It builds 3 hosts, launches the router on h1, joins h2 and h3 to it, shows ``weave status`` and
``weave status peers`` as seen from h1, then starts container c1 on h1 and c2 on h2 (``weave lab
run``), waits for the h1-h2 link's data path to be confirmed, shows ``weave status
connections`` (the link and its transport: fastdp, or sleeve with the reason) and sends a UDP
echo probe from c1 to c2 across the hosts. Every step is the CLI a user would type, run
through ``weave lab exec`` / ``weave lab run``, and is printed as such.

What happens is reported as it is: when the link is not confirmed in time or the probe gets no
answer, the demo says so, shows the connection line and the end of both routers' logs, and
``run`` returns False (``weave lab demo`` then exits 1). The lab is removed again unless
``keep`` is set; a ``demo`` lab left by an earlier ``--keep`` is replaced.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from weave_cli.lab import ops

DEMO_LAB = "demo"
DEMO_HOSTS = 3
LINK_TIMEOUT = 20.0  # seconds for the h1-h2 link to be established (its data path confirmed)
PROBE_SECONDS = 10.0


def run(keep: bool) -> bool:
    """The tour; True when c1 on h1 reached c2 on h2."""
    from rich.console import Console

    console = Console(highlight=False)
    console.rule(f"weave lab demo: {DEMO_HOSTS} hosts on one machine")
    ops.down(DEMO_LAB)
    console.print("building hosts h1..h3 (198.18.0.1-3), launching h1, joining h2 and h3 to it")
    try:
        hosts = ops.up(DEMO_LAB, DEMO_HOSTS, bare=False, options=[])
        for host in hosts:
            console.print(f"  {host.name}  netns {host.netns}  address {host.address}  ready")
        console.print("waiting for h1's links to be established (their data path confirmed)")
        link = {peer: _wait_link("h1", peer) for peer in ("h2", "h3")}
        for args in (["status"], ["status", "peers"]):
            _show(console, f"weave {' '.join(args)}  (on h1)", "h1", args)
        crossed = _cross_host(console, link["h2"])
    finally:
        if not keep:
            ops.down(DEMO_LAB)
    if keep:
        console.rule("kept")
        console.print(f"the lab stays: try 'weave lab exec --name {DEMO_LAB} c2 -- ip addr', "
                      f"'weave lab exec --name {DEMO_LAB} h2 -- weave status connections', "
                      f"then 'weave lab down --name {DEMO_LAB}'")
    else:
        console.rule("done: lab removed")
    return crossed


def _cross_host(console: Any, link: str | None) -> bool:
    console.rule("containers on two hosts: c1 on h1, c2 on h2")
    ips = {}
    for host, name in (("h1", "c1"), ("h2", "c2")):
        console.print(f"$ weave lab run --name {DEMO_LAB} {host} {name}")
        proc = _lab(["run", "--name", DEMO_LAB, host, name])
        console.print(f"  {proc.stdout.strip() or proc.stderr.strip()}", markup=False)
        if proc.returncode != 0:
            console.print(f"[red]could not start {name} on {host}[/red]")
            return False
        ips[name] = proc.stdout.split()[-1]
    _show(console, "weave status connections  (on h1)", "h1", ["status", "connections"])
    if link is None:
        console.print(f"[red]the h1-h2 link is not established after {LINK_TIMEOUT:.0f}s: its "
                      "data path was not confirmed (see the line above)[/red]")
        _log_tails(console)
        return False
    console.rule(f"c1 ({ips['c1']} on h1) -> c2 ({ips['c2']} on h2), a UDP echo probe")
    probe = [sys.executable, "-m", "weave_cli.lab.probe"]
    server = subprocess.Popen(
        [*_lab_argv(["exec", "--name", DEMO_LAB, "c2", "--"]), *probe, "serve", "--seconds",
         str(PROBE_SECONDS + 10)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready = server.stdout.readline().strip() if server.stdout else ""
        if ready != "ready":
            console.print(f"[red]the echo server in c2 did not start: {ready!r}[/red]")
            return False
        console.print(f"$ weave lab exec --name {DEMO_LAB} c2 -- python -m weave_cli.lab.probe "
                      "serve &")
        console.print(f"$ weave lab exec --name {DEMO_LAB} c1 -- python -m weave_cli.lab.probe "
                      f"ask {ips['c2']}")
        start = time.monotonic()
        asked = _lab(["exec", "--name", DEMO_LAB, "c1", "--", *probe, "ask", ips["c2"],
                      "--seconds", str(PROBE_SECONDS)])
        took = time.monotonic() - start
        console.print(f"  {asked.stdout.strip() or asked.stderr.strip()}", markup=False)
    finally:
        server.kill()
        server.communicate()
    if asked.returncode == 0:
        console.print(f"[green]c1 on h1 reached c2 on h2 over {link} ({took:.1f}s)[/green]")
        return True
    console.print(f"[red]no answer from c2 within {PROBE_SECONDS:.0f}s although the link is "
                  f"established ({link}): traffic between hosts did not get through[/red]")
    _log_tails(console)
    return False


def _wait_link(host: str, peer: str) -> str | None:
    """The transport of ``host``'s link to ``peer`` once established ("fastdp", "sleeve ...")."""
    from weave_cli.client import RouterClient
    from weave_cli.errors import WeaveError

    paths = ops.host(DEMO_LAB, host).paths
    deadline = time.monotonic() + LINK_TIMEOUT
    while time.monotonic() < deadline:
        try:
            report = RouterClient(paths, timeout=2.0).call("GET", "/report").json()
        except WeaveError:
            report = {}
        for conn in (report.get("Router") or {}).get("Connections") or []:
            info = str(conn.get("Info") or "")
            if conn.get("State") == "established" and info.endswith(f"({peer})"):
                attrs = conn.get("Attrs") or {}
                mtu = f" mtu={attrs['mtu']}" if isinstance(attrs, dict) and "mtu" in attrs else ""
                return f"{info.split()[0]}{mtu}"
        time.sleep(0.3)
    return None


def _log_tails(console: Any) -> None:
    for name in ("h1", "h2"):
        log = ops.host(DEMO_LAB, name).paths.log_file
        try:
            lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()][-5:]
        except OSError as err:
            lines = [f"(cannot read {log}: {err.strerror})"]
        console.print(f"last lines of {name}'s {log}:")
        for line in lines:
            console.print(f"  {line}", markup=False)


def _show(console: Any, title: str, host: str, args: list[str]) -> None:
    console.rule(title)
    sys.stdout.flush()
    subprocess.run(
        [*_lab_argv(["exec", "--name", DEMO_LAB, host, "--"]), sys.executable, "-m",
         "weave_cli", *args],
        check=False,
    )


def _lab_argv(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "weave_cli", "lab", *args]


def _lab(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_lab_argv(args), capture_output=True, text=True, timeout=120,
                          check=False)
