"""Routers inside lab hosts: start them with the real CLI, wait for ready, kill, restart.

Every router is started exactly the way an operator would start it on a real host, by running
``python -m weave_cli launch|join ...`` inside the host's network and UTS namespaces with the
host's WEAVE_STATE_DIR / WEAVE_RUN_DIR. The argv used is recorded in the lab metadata so
``restart`` replays it unchanged. Readiness is asked over the router's unix socket, which lives
on the shared filesystem, so it is checked from here without entering the namespace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from weave_cli.client import RouterClient
from weave_cli.errors import LabError
from weave_cli.lab import build, system
from weave_cli.lab.enter import env_for, host_argv
from weave_cli.lab.topology import Host, Lab

READY_TIMEOUT = 60.0
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


def start(hosts: list[Host], argvs: dict[str, list[str]]) -> None:
    """Run each host's start command in parallel; LabError naming the first host that failed."""
    procs = [
        (host, subprocess.Popen(
            host_argv(host, argvs[host.name]), env=env_for(host), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
        for host in hosts
    ]
    failures = []
    for host, proc in procs:
        try:
            _, err = proc.communicate(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            failures.append(f"{host.name}: timed out after {START_TIMEOUT:.0f}s")
            continue
        if proc.returncode != 0:
            lines = err.strip().splitlines() or [f"exit {proc.returncode}"]
            failures.append(f"{host.name}: {lines[-1]}")
    if failures:
        cmd = " ".join(os.path.basename(a) for a in argvs[hosts[0].name][:4])
        raise LabError(
            f"starting the router failed ({'; '.join(failures)})", f"command was: {cmd} ..."
        )


def wait_ready(hosts: list[Host], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    pending = list(hosts)
    while pending:
        pending = [h for h in pending if not RouterClient(h.paths, timeout=1.0).ready(timeout=1.0)]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(h.name for h in pending)
            raise LabError(f"routers on {names} not ready after {timeout:.0f}s",
                           f"see {pending[0].paths.log_file}")
        time.sleep(0.1)


def router_pid(host: Host) -> int | None:
    """The router's pid from $RUN_DIR/router.pid if that process lives in the host's netns."""
    try:
        pid = int(host.paths.router_pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    inode = system.ns_inode(system.netns_path(host.netns))
    if inode is None or not system.pid_alive(pid):
        return None
    try:
        if os.readlink(f"/proc/{pid}/ns/net") != f"net:[{inode}]":
            return None  # stale pid file: that number now belongs to someone else
    except OSError:
        return None
    return pid


def kill(host: Host) -> int:
    """SIGKILL the host's router and wait until that process is gone; its pid."""
    pid = router_pid(host)
    if pid is None:
        raise LabError(
            f"no router is running on {host.name}", f"start one: weave lab restart {host.name}"
        )
    system.signal_pids([pid], signal.SIGKILL)
    if not system.wait_gone(pid, STOP_TIMEOUT):
        raise LabError(f"router pid {pid} on {host.name} survived SIGKILL", "look at it with ps")
    return pid


def restart(lab: Lab, host: Host) -> None:
    """Stop the host's router (``weave stop``, else SIGKILL), replay its launch argv, wait ready."""
    argv = build.read_metadata(lab).get("launch", {}).get(host.name)
    if not argv:
        raise LabError(
            f"no recorded launch command for {host.name} (lab made with --bare?)",
            f"start it yourself: weave lab exec {host.name} -- weave launch",
        )
    stop = host_argv(host, [sys.executable, "-m", "weave_cli", "stop"])
    try:
        stopped = subprocess.run(stop, env=env_for(host), capture_output=True,
                                 timeout=STOP_TIMEOUT, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        stopped = False
    if not stopped or _weave_pids(host):
        system.terminate(lambda: _weave_pids(host), grace=0.0)
        for path in (host.paths.socket, host.paths.router_pidfile, host.paths.launcher_pidfile):
            path.unlink(missing_ok=True)
    start([host], {host.name: list(argv)})
    wait_ready([host])


def _weave_pids(host: Host) -> list[int]:
    """Processes in the host's netns that belong to weave (the router and its supervisor)."""
    inode = system.ns_inode(system.netns_path(host.netns))
    if inode is None:
        return []
    return [p for p in system.pids_in("net", inode)
            if "weave_cli" in system.cmdline(p) or "weave-router" in system.cmdline(p)]
