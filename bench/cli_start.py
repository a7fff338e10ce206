"""CLI start-up: `weave version` and `weave status` against `python -c 'import typer, rich'`.

Goal: each ratio <= 1.5. The router runs on a one-host lab so `weave status` does its real work
(HTTP over the control socket, rendering). Every command runs inside that host's network
namespace through nsenter, the reference too, interleaved, and the median of ROUNDS is taken.

    sudo .venv/bin/python bench/cli_start.py [--rounds 21]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
LAB = "bench"


def weave(*args: str) -> str:
    return subprocess.run(
        [str(BIN / "weave"), *args], check=True, capture_output=True, text=True
    ).stdout


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    weave("lab", "down", "--name", LAB)
    weave("lab", "up", "--name", LAB, "--hosts", "1")
    try:
        host = json.loads(weave("lab", "status", "--name", LAB, "--json"))["hosts"][0]
        env = dict(os.environ, WEAVE_STATE_DIR=host["state_dir"], WEAVE_RUN_DIR=host["run_dir"])
        enter = ["nsenter", f"--net=/run/netns/{host['netns']}", "--"]
        cases = {
            "reference": [*enter, sys.executable, "-c", "import typer, rich"],
            "weave version": [*enter, str(BIN / "weave"), "version"],
            "weave status": [*enter, str(BIN / "weave"), "status"],
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for argv in cases.values():  # warm the page cache
            timed(argv, env)
        for _ in range(args.rounds):
            for name, argv in cases.items():
                samples[name].append(timed(argv, env))
        ref = statistics.median(samples["reference"])
        print(f"{'command':<16} {'median ms':>10} {'ratio':>7}  (goal <= 1.5)")
        ok = True
        for name, values in samples.items():
            med = statistics.median(values)
            ratio = med / ref
            ok &= ratio <= 1.5 or name == "reference"
            print(f"{name:<16} {med * 1000:>10.1f} {ratio:>7.2f}")
        print("goal met" if ok else "goal NOT met")
        return 0
    finally:
        weave("lab", "down", "--name", LAB)


if __name__ == "__main__":
    sys.exit(main())
