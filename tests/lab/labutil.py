"""Helpers for lab tests: run `weave lab ...` and read routers' reports inside lab hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def weave_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("weave")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "weave_cli"]


def weave(
    *args: str, check: bool = True, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*weave_cmd(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        input=input,
        env=dict(os.environ),
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"weave {' '.join(args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


class Lab:
    """One lab by name; every call goes through the real CLI."""

    def __init__(self, name: str) -> None:
        self.name = name

    def up(self, hosts: int, *launch_opts: str) -> None:
        weave("lab", "up", "--name", self.name, "--hosts", str(hosts), *launch_opts, timeout=180)

    def down(self) -> None:
        weave("lab", "down", "--name", self.name, check=False, timeout=120)

    def exec(
        self, host: str, *cmd: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return weave(
            "lab", "exec", "--name", self.name, host, "--", *cmd, check=check, timeout=timeout
        )

    def weave(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.exec(host, *weave_cmd(), *args, check=check)

    def report(self, host: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.weave(host, "report").stdout)
        return out

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(
            weave("lab", "status", "--name", self.name, "--json").stdout
        )
        return out

    def host_dirs(self, host: str) -> tuple[Path, Path]:
        for entry in self.status()["hosts"]:
            if entry["name"] == host:
                return Path(entry["state_dir"]), Path(entry["run_dir"])
        raise KeyError(host)


@contextmanager
def lab(name: str, hosts: int, *launch_opts: str) -> Iterator[Lab]:
    the_lab = Lab(name)
    the_lab.down()
    try:
        the_lab.up(hosts, *launch_opts)
        yield the_lab
    finally:
        the_lab.down()


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 45.0, interval: float = 0.5
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as err:
            last = err
        if last and not isinstance(last, AssertionError):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def established_peers(report: dict[str, Any]) -> set[str]:
    """Nicknames of peers we have an established connection with."""
    router = report["Router"]
    names = set()
    for conn in router["Connections"]:
        if conn["State"] == "established":
            names.add(conn["Info"].split("(")[-1].rstrip(")"))
    return names


def known_peers(report: dict[str, Any]) -> set[str]:
    return {p["NickName"] for p in report["Router"]["Peers"]}


def full_mesh(the_lab: Lab, hosts: list[str]) -> bool:
    for host in hosts:
        rep = the_lab.report(host)
        others = set(hosts) - {host}
        if established_peers(rep) != others or known_peers(rep) != set(hosts):
            return False
    return True
