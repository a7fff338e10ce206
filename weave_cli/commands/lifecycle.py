"""``weave stop``, ``weave reset`` and ``weave version``."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Annotated

import typer

from weave_cli import __version__
from weave_cli.errors import PrivilegeError
from weave_cli.names import Paths

STOP_GRACE = 10.0


def stop_router(paths: Paths) -> bool:
    """Stop the router (and its supervisor); True if one was running."""
    from weave_cli.router import state

    pids = [
        p
        for p in (state.read_pid(paths.launcher_pidfile), state.read_pid(paths.router_pidfile))
        if p
    ]
    if not pids:
        state.remove_quietly(paths.socket)
        return False
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and any(state.pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if state.pid_alive(pid):
            _signal(pid, signal.SIGKILL)
            _killpg(pid)  # the launcher leads its own session: take its router with it
    for path in (paths.socket, paths.router_pidfile, paths.launcher_pidfile):
        state.remove_quietly(path)
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise PrivilegeError(
            f"cannot stop the router (pid {pid}): permission denied", "run as root (sudo)"
        ) from None


def _killpg(pid: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop() -> None:
    """Stop the router on this host. Containers and the bridge stay as they are."""
    if not stop_router(Paths.from_env()):
        print("weave is not running", file=sys.stderr)


def reset(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Reset even if this host's IP ranges cannot be handed over to a live peer.",
        ),
    ] = False,
) -> None:
    """Hand this host's IP ranges to a live peer, then stop the router and remove its state
    and everything weave created on this host."""
    from weave_cli.commands.ipam import hand_over
    from weave_cli.router import state

    paths = Paths.from_env()
    hand_over(paths, force)
    stop_router(paths)  # first, so the data path keeper cannot put anything back
    _remove_datapath()
    for path in paths.owned_state_files() + paths.owned_run_files():
        state.remove_quietly(path)
    for directory in (paths.state_dir, paths.run_dir):
        try:
            directory.rmdir()  # only if empty: anything else there is not ours
        except OSError:
            pass


def version() -> None:
    """Print the CLI's version, and the router's if one answers within 0.2 s."""
    print(f"weave {__version__}")
    paths = Paths.from_env()
    if not paths.socket.exists():
        return
    from weave_cli.client import RouterClient
    from weave_cli.errors import NotRunningError, RouterError, TimeoutError_

    try:
        resp = RouterClient(paths, timeout=0.2).request("GET", "/report", timeout=0.2)
        if resp.status == 200:
            print(f"weave router {resp.json().get('Version', '?')}")
    except (NotRunningError, RouterError, TimeoutError_, ValueError):
        pass


def _remove_datapath() -> None:
    """Remove the bridge, veths, nft table and firewall rules weave made in this namespace.

    Only where weave's bridge exists: a host (or test) that never ran a data path is left
    entirely untouched, its firewall included.
    """
    import socket

    from weave_cli.names import BRIDGE

    try:
        socket.if_nametoindex(BRIDGE)
    except OSError:
        return
    if os.geteuid() != 0:
        raise PrivilegeError("removing the weave bridge needs root", "run 'sudo weave reset'")
    from weave_cli.net.datapath import remove_all

    remove_all()
