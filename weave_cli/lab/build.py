"""Building and removing a lab's namespaces, links and directories (see ``topology``).

``create`` makes, in this order: the per-host directories, every namespace (one ``ip -batch``),
the switch's bridge and one veth pair per host (created directly inside the switch and host
namespaces, so no link ever exists in the machine's own namespace), each host's address and
loopback, and each host's UTS namespace (``unshare --uts=FILE hostname hK``, which keeps the
namespace alive by bind-mounting it on FILE; no holder process).

``destroy`` trusts no metadata: it finds the lab from the ``wl-LAB-`` namespace prefix and the
lab directories, kills every process in those network and UTS namespaces (SIGTERM, then
SIGKILL after a short grace), unmounts the UTS files, deletes the namespaces (which removes the
veths and the bridge with them) and removes the directories. It is idempotent.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from weave_cli.errors import LabError
from weave_cli.lab import system
from weave_cli.lab.topology import BRIDGE, HOST_IFNAME, MTU, Host, Lab, host_index


def exists(lab: Lab) -> bool:
    """Anything of this lab left: a namespace or a directory."""
    return bool(lab_netns(lab)) or lab.run_root.exists() or lab.state_root.exists()


def lab_netns(lab: Lab) -> list[str]:
    return [netns for netns in system.list_netns() if lab.owns_netns(netns)]


def create(lab: Lab, hosts: list[Host]) -> None:
    """Build the lab's kernel objects; the caller removes them with ``destroy`` on failure."""
    for host in hosts:
        host.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        host.run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    names = [lab.switch_netns] + [host.netns for host in hosts]
    system.run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in names))
    switch = [
        "link set lo up\n",
        f"link add {BRIDGE} type bridge forward_delay 0 stp_state 0\n",
        f"link set {BRIDGE} up\n",
    ]
    for host in hosts:
        switch.append(
            f"link add {host.switch_port} mtu {MTU} type veth "
            f"peer name {HOST_IFNAME} mtu {MTU} netns {host.netns}\n"
        )
        switch.append(f"link set {host.switch_port} master {BRIDGE} up\n")
    system.run(["ip", "-n", lab.switch_netns, "-batch", "-"], input="".join(switch))
    for host in hosts:
        system.run(
            ["ip", "-n", host.netns, "-batch", "-"],
            input=(
                "link set lo up\n"
                f"addr add {host.cidr} dev {HOST_IFNAME}\n"
                f"link set {HOST_IFNAME} up\n"
            ),
        )
        host.uts_file.touch(mode=0o644)
        system.run(["unshare", f"--uts={host.uts_file}", "hostname", host.name])


def destroy(lab: Lab) -> None:
    """Remove everything of the lab, derived from its name; safe to repeat and after a crash."""
    namespaces = lab_netns(lab)
    net_inodes = [system.ns_inode(system.netns_path(n)) for n in namespaces]
    uts_inodes = [system.ns_inode(path) for path in _uts_files(lab)]

    def members() -> list[int]:
        pids: set[int] = set()
        for inode in net_inodes:
            if inode is not None:
                pids.update(system.pids_in("net", inode))
        for inode in uts_inodes:
            if inode is not None:
                pids.update(system.pids_in("uts", inode))
        return sorted(pids)

    system.terminate(members)
    for root in (lab.run_root, lab.state_root):
        for point in system.mounts_under(root):
            system.unmount(point)
    if namespaces:
        system.run(["ip", "-batch", "-"], input="".join(f"netns delete {n}\n" for n in namespaces))
    for root in (lab.run_root, lab.state_root):
        try:
            shutil.rmtree(root)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise LabError(
                f"cannot remove {root}: {err.strerror}", "is something mounted there?"
            ) from None


def _uts_files(lab: Lab) -> list[Path]:
    try:
        return sorted(lab.run_root.glob("h*.uts"))
    except OSError:
        return []


def existing_hosts(lab: Lab) -> list[Host]:
    """The lab's hosts whose network namespaces exist."""
    return lab.hosts_from_netns(system.list_netns())


def find_host(lab: Lab, name: str) -> Host:
    """The host called ``name`` in this lab, or a LabError naming the hosts that exist."""
    hosts = existing_hosts(lab)
    if not hosts:
        raise no_such_lab(lab.name)
    index = host_index(name)
    for host in hosts:
        if host.index == index:
            return host
    names = ", ".join(h.name for h in hosts)
    raise LabError(f"unknown host {name!r} in lab {lab.name!r}", f"hosts are: {names}")


def no_such_lab(name: str) -> LabError:
    return LabError(
        f"there is no lab named {name!r}", f"create it with 'weave lab up --name {name} --hosts 3'"
    )


def uts_bound(host: Host) -> bool:
    return system.ns_inode(host.uts_file) is not None


# --- metadata: what `up` was asked, so `restart` can replay it ---

def write_metadata(lab: Lab, hosts: list[Host], bare: bool, launch: dict[str, list[str]]) -> None:
    doc = {"lab": lab.name, "hosts": len(hosts), "bare": bare, "launch": launch}
    lab.run_root.mkdir(parents=True, exist_ok=True)
    tmp = lab.metadata_file.with_name(f".lab.json.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # argv may hold secrets
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, lab.metadata_file)


def read_metadata(lab: Lab) -> dict[str, Any]:
    """The metadata document, or {} when missing or unreadable (a crashed ``up``)."""
    try:
        doc = json.loads(lab.metadata_file.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
