"""The lab's operations, one function per ``weave lab`` command (the CLI only parses and prints).

Commands that change a lab (up, down, restart, partition, heal) hold the lab's lock file
(``/run/weave-lab/LAB.lock``) so two of them never interleave; ``exec``, ``status`` and ``kill``
take no lock, so commands run inside hosts never wait for each other.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Any

from weave_cli.client import RouterClient
from weave_cli.errors import LabError
from weave_cli.lab import build, routers, rules, system
from weave_cli.lab.topology import Host, Lab, launch_argv, validate_host_count

REQUIRED_TOOLS = ("ip", "nsenter", "unshare")


def up(name: str, count: int, bare: bool, options: list[str]) -> list[Host]:
    """Build the lab and, unless bare, start h1 with ``launch`` and the others with ``join``.

    On any failure (or Ctrl-C) everything built so far is removed before the error propagates.
    """
    lab = Lab(name)
    validate_host_count(count)
    for program in REQUIRED_TOOLS:
        system.tool(program)
    with system.locked(lab.lock_file):
        if build.exists(lab):
            raise LabError(
                f"lab {name!r} already exists", f"remove it first: weave lab down --name {name}"
            )
        hosts = lab.hosts(count)
        argvs = {} if bare else {h.name: launch_argv(sys.executable, h, options) for h in hosts}
        try:
            build.create(lab, hosts)
            build.write_metadata(lab, hosts, bare, argvs)
            if not bare:
                routers.start(hosts[:1], argvs)
                if len(hosts) > 1:
                    routers.start(hosts[1:], argvs)
                routers.wait_ready(hosts)
        except BaseException as err:
            with contextlib.suppress(LabError):
                build.destroy(lab)
                lab.lock_file.unlink(missing_ok=True)
            if isinstance(err, LabError) and not bare:
                raise LabError(err.message, f"the lab was removed again; to debug: weave lab up "
                               f"--name {name} --hosts {count} --bare, then weave lab exec h1 -- "
                               "weave launch") from None
            raise
    return hosts


def down(name: str) -> bool:
    """Remove the lab completely; False when there was nothing to remove."""
    lab = Lab(name)
    with system.locked(lab.lock_file):
        found = build.exists(lab)
        build.destroy(lab)
        lab.lock_file.unlink(missing_ok=True)
    return found


def host(name: str, host_name: str) -> Host:
    return build.find_host(Lab(name), host_name)


def status(name: str) -> dict[str, Any]:
    """The stable status document: {"lab", "hosts": [{name, netns, address, ...}]}."""
    lab = Lab(name)
    hosts = build.existing_hosts(lab)
    if not hosts and not build.exists(lab):
        raise build.no_such_lab(name)
    entries = []
    for h in hosts:
        pid = routers.router_pid(h)
        ready = h.paths.socket.exists() and RouterClient(h.paths, timeout=0.5).ready(timeout=0.5)
        entries.append({
            "name": h.name, "netns": h.netns, "address": h.address,
            "state_dir": str(h.state_dir), "run_dir": str(h.run_dir),
            "router_pid": pid, "ready": ready,
        })
    return {"lab": name, "hosts": entries}


def kill(name: str, host_name: str) -> int:
    return routers.kill(build.find_host(Lab(name), host_name))


def restart(name: str, host_name: str) -> None:
    lab = Lab(name)
    with system.locked(lab.lock_file):
        routers.restart(lab, build.find_host(lab, host_name))


def partition(name: str, a: str, b: str, mode: str | rules.Fault) -> None:
    """Drop traffic between two hosts on the switch, both ways, replacing the pair's old fault.

    ``mode`` is a ``rules.Fault`` (which packets: a protocol, a port, a size limit) or its spec
    (``all``, ``tcp``, ``udp``, ``udp/6784``, ``udp>700``; see ``weave_cli.lab.rules``).
    """
    lab = Lab(name)
    fault = mode if isinstance(mode, rules.Fault) else rules.parse_spec(mode)
    if fault is None:
        raise LabError(f"invalid partition spec {mode!r}", "e.g. all, tcp, udp/6784, udp>700")
    with system.locked(lab.lock_file):
        first, second = _pair(lab, a, b)
        _nft(lab, rules.partition_script(first, second, fault, _rules(lab)))


def heal(name: str, a: str | None, b: str | None) -> None:
    """Remove the partition between two hosts, or every partition when no hosts are given."""
    lab = Lab(name)
    if (a is None) != (b is None):
        raise LabError("heal takes two hosts or none", "e.g. weave lab heal h1 h2; weave lab heal")
    with system.locked(lab.lock_file):
        if a is None or b is None:
            if not build.existing_hosts(lab):
                raise build.no_such_lab(name)
            _nft(lab, rules.heal_all_script())
            return
        first, second = _pair(lab, a, b)
        script = rules.heal_script(first, second, _rules(lab))
        if script:
            _nft(lab, script)


def partitions(name: str) -> list[rules.RuleRef]:
    """The rules of the partitions in force (``mode`` is each one's spec); none when nftables
    is not installed (none can exist then)."""
    if shutil.which("nft") is None and not Path("/usr/sbin/nft").exists():
        return []
    return _rules(Lab(name))


def _pair(lab: Lab, a: str, b: str) -> tuple[Host, Host]:
    first, second = build.find_host(lab, a), build.find_host(lab, b)
    if first == second:
        raise LabError(f"cannot partition {a} from itself", "name two different hosts")
    return first, second


def _rules(lab: Lab) -> list[rules.RuleRef]:
    argv = system.in_netns(lab.switch_netns, [system.tool("nft"), *rules.list_argv()[1:]])
    try:
        return rules.parse_listing(system.run(argv))
    except LabError as err:
        if "No such file or directory" in err.message:
            return []  # no partition was ever made: the table does not exist yet
        raise


def _nft(lab: Lab, script: str) -> None:
    system.run(system.in_netns(lab.switch_netns, [system.tool("nft"), "-f", "-"]), input=script)
