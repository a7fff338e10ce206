"""Lab containers: network namespaces attached to a host's weave bridge, exactly as a user would.

``weave lab run HOST NAME [ADDR...]`` creates the namespace ``wl-LAB-c-NAME`` (loopback up)
and then runs the real CLI inside HOST: ``python -m weave_cli attach [ADDR...]
ns:wl-LAB-c-NAME``, with HOST's environment (its router's socket and IPAM). So a lab container
goes through the very code path of ``weave attach ns:...``; the lab adds nothing of its own.
If the attach fails, the namespace is deleted again and the attach's message and exit code are
passed on unchanged.

Which host a container is attached to is read from the kernel (its ``vethwepl<inode>`` lives
in that host's namespace), never from a file, so ``status`` is right even after a manual
``weave detach`` or ``attach``. ``down`` removes containers with the rest of the lab: their
namespaces carry the lab's prefix (``topology.Lab.owns_netns``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from weave_cli.errors import LabError
from weave_cli.lab import build, system
from weave_cli.lab.enter import env_for, host_argv
from weave_cli.lab.topology import Host, Lab, validate_container_name

ATTACH_TIMEOUT = 90.0


def names(lab: Lab) -> list[str]:
    """The lab's containers whose namespaces exist, sorted."""
    found = [lab.container_from_netns(n) for n in system.list_netns()]
    return sorted(n for n in found if n is not None)


def run(lab: Lab, host_name: str, name: str, addrs: list[str]) -> tuple[Host, str, str]:
    """Create and attach container ``name`` on ``host_name``: (host, namespace, its IPs)."""
    validate_container_name(name)
    with system.locked(lab.lock_file):
        host = build.find_host(lab, host_name)
        netns = lab.container_netns(name)
        if netns in system.list_netns():
            raise LabError(
                f"container {name!r} already exists in lab {lab.name!r}",
                f"remove it first: weave lab rm --name {lab.name} {name}",
            )
        system.run(["ip", "netns", "add", netns])
        try:
            system.run(["ip", "-n", netns, "link", "set", "lo", "up"])
            ips = _weave_in(host, ["attach", *addrs, f"ns:{netns}"])
        except BaseException:
            system.run(["ip", "netns", "delete", netns])
            raise
    return host, netns, ips


def remove(lab: Lab, name: str) -> bool:
    """Detach container ``name`` in its host (freeing its addresses) and delete its namespace."""
    validate_container_name(name)
    with system.locked(lab.lock_file):
        netns = lab.container_netns(name)
        if netns not in system.list_netns():
            return False
        host = _host_of(lab, netns)
        if host is not None:
            _weave_in(host, ["detach", f"ns:{netns}"])
        inode = system.ns_inode(system.netns_path(netns))
        if inode is not None:
            system.terminate(lambda: system.pids_in("net", inode))
        system.run(["ip", "netns", "delete", netns])
    return True


def _weave_in(host: Host, args: list[str]) -> str:
    """Run ``weave ARGS`` inside the host; its stdout, or its own error and exit code."""
    argv = host_argv(host, [sys.executable, "-m", "weave_cli", *args])
    try:
        proc = subprocess.run(argv, env=env_for(host), capture_output=True, text=True,
                              timeout=ATTACH_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"weave {args[0]} in {host.name} timed out", "see its log") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        text = lines[-1] if lines else f"exit status {proc.returncode}"
        err = LabError(f"in {host.name}: {text.removeprefix('weave: ')}")
        err.exit_code = proc.returncode  # the attach's own code, so scripts can tell failures apart
        raise err
    return proc.stdout.strip()


def _host_of(lab: Lab, netns: str) -> Host | None:
    from weave_cli.net.ps import attachment_of

    path = system.netns_path(netns)
    inode = system.ns_inode(path)
    if inode is None:
        return None
    for host in build.existing_hosts(lab):
        if attachment_of(str(system.netns_path(host.netns)), str(path), inode) is not None:
            return host
    return None


def describe(lab: Lab) -> list[dict[str, Any]]:
    """One entry per container: name, netns, host (or None), mac and addresses of ethwe."""
    from weave_cli.net.ps import attachment_of

    hosts = build.existing_hosts(lab)
    out = []
    for name in names(lab):
        netns = lab.container_netns(name)
        path = system.netns_path(netns)
        inode = system.ns_inode(path)
        entry, where = None, None
        for host in hosts:
            if inode is None:
                break
            entry = attachment_of(str(system.netns_path(host.netns)), str(path), inode)
            if entry is not None:
                where = host.name
                break
        out.append({
            "name": name, "netns": netns, "host": where,
            "mac": entry.mac if entry else None,
            "addresses": [str(a) for a in entry.addrs] if entry else [],
        })
    return out


def exec_in(lab: Lab, name: str, cmd: list[str]) -> None:
    """Replace this process with ``cmd`` inside the container's network namespace."""
    netns = lab.container_netns(name)
    if netns not in system.list_netns():
        hosts = ", ".join(h.name for h in build.existing_hosts(lab)) or "none"
        known = ", ".join(names(lab)) or "none"
        raise LabError(f"no host or container {name!r} in lab {lab.name!r}",
                       f"hosts: {hosts}; containers: {known}")
    if not cmd:
        raise LabError("no command given", f"e.g. weave lab exec {name} -- ip addr")
    argv = [system.tool("nsenter"), f"--net={system.netns_path(netns)}", "--", *cmd]
    env = dict(os.environ)
    scripts = os.path.dirname(sys.executable)
    env["PATH"] = f"{env['PATH']}:{scripts}" if env.get("PATH") else scripts
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as err:
        raise LabError(f"cannot run nsenter: {err.strerror}", "is util-linux installed?") from None
