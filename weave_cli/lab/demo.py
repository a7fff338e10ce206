"""``weave lab demo``: a short scripted tour on a lab of its own, named ``demo``.

It builds 3 hosts, launches the router on h1, joins h2 and h3 to it, shows ``weave status`` and
``weave status peers`` as seen from h1 (run through ``weave lab exec``, as a user would), and
removes the lab again unless ``keep`` is set. A ``demo`` lab left by an earlier ``--keep`` is
replaced.
"""

from __future__ import annotations

import subprocess
import sys

from weave_cli.lab import ops

DEMO_LAB = "demo"
DEMO_HOSTS = 3


def run(keep: bool) -> None:
    from rich.console import Console

    console = Console()
    console.rule(f"weave lab demo: {DEMO_HOSTS} hosts on one machine")
    ops.down(DEMO_LAB)
    console.print("building hosts h1..h3 (198.18.0.1-3), launching h1, joining h2 and h3 to it")
    try:
        hosts = ops.up(DEMO_LAB, DEMO_HOSTS, bare=False, options=[])
        for host in hosts:
            console.print(f"  {host.name}  netns {host.netns}  address {host.address}  ready")
        for args in (["status"], ["status", "peers"]):
            console.rule(f"weave {' '.join(args)}  (on h1)")
            sys.stdout.flush()
            subprocess.run(
                [sys.executable, "-m", "weave_cli", "lab", "exec", "--name", DEMO_LAB, "h1", "--",
                 sys.executable, "-m", "weave_cli", *args],
                check=False,
            )
    finally:
        if not keep:
            ops.down(DEMO_LAB)
    if keep:
        console.rule("kept")
        console.print(f"the lab stays: try 'weave lab exec --name {DEMO_LAB} h2 -- weave status', "
                      f"then 'weave lab down --name {DEMO_LAB}'")
    else:
        console.rule("done: lab removed")
