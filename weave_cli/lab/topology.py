"""What a lab is made of: every name, address and path, decided without touching the kernel.

A lab called LAB with N hosts is, by construction (mininet's ``h1..hN`` scheme)::

    namespace        wl-LAB-sw        the underlay switch: Linux bridge ``br0``
    namespace        wl-LAB-hK        host K (1 <= K <= N), hostname ``hK`` (own UTS namespace)
    namespace        wl-LAB-c-NAME    container NAME (``weave lab run``), attached to one host's
                                      bridge by ``weave attach ns:wl-LAB-c-NAME`` run in that host
    veth pair        hK (in the switch, enslaved to br0)  <->  eth0 (in host K), MTU 1500
    address          198.18.0.K/24 on host K's eth0 (the benchmarking range 198.18.0.0/15)
    state dir        /var/lib/weave-lab/LAB/hK    WEAVE_STATE_DIR of host K's router
    run dir          /run/weave-lab/LAB/hK        WEAVE_RUN_DIR of host K's router
    UTS file         /run/weave-lab/LAB/hK.uts    bind mount that keeps host K's UTS namespace
    metadata         /run/weave-lab/LAB/lab.json  host count, bare flag, launch argv per host
    lock             /run/weave-lab/LAB.lock      serialises up/down/restart/partition/heal

LAB matches ``[a-z0-9]{1,8}`` so namespace names stay short; a container NAME matches
``[a-z][a-z0-9]{0,11}`` and is never a host name (``hK``) or ``sw``, so ``weave lab exec`` takes
either. Nothing but a lab uses the ``wl-`` prefix (``names.LAB_PREFIX``), so ``down`` can find
a crashed lab's leftovers, containers included, from the name alone. This module is pure: no
I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from weave_cli.errors import LabError
from weave_cli.names import (
    LAB_BRIDGE,
    LAB_HOST_IFNAME,
    LAB_PREFIX,
    LAB_RUN_ROOT,
    LAB_STATE_ROOT,
    Paths,
)

DEFAULT_LAB = "default"
LAB_NAME_RE = re.compile(r"[a-z0-9]{1,8}")
HOST_RE = re.compile(r"h([1-9][0-9]{0,2})")
MAX_HOSTS = 254  # one /24 of host addresses
SUBNET_PREFIX = "198.18.0."
PREFIX_LEN = 24
MTU = 1500
BRIDGE = LAB_BRIDGE
HOST_IFNAME = LAB_HOST_IFNAME
SWITCH_NODE = "sw"
CONTAINER_NODE_PREFIX = "c-"
CONTAINER_RE = re.compile(r"[a-z][a-z0-9]{0,11}")
SEED_HOST = "h1"


def validate_lab_name(name: str) -> str:
    """The name itself, or a LabError saying what a lab name may be."""
    if not LAB_NAME_RE.fullmatch(name):
        raise LabError(
            f"invalid lab name {name!r}: use 1 to 8 lowercase letters or digits",
            "e.g. --name t1 (namespace names are built from it and must stay short)",
        )
    return name


def validate_host_count(count: int) -> int:
    if not 1 <= count <= MAX_HOSTS:
        raise LabError(f"--hosts must be between 1 and {MAX_HOSTS}, not {count}", "e.g. --hosts 3")
    return count


def validate_container_name(name: str) -> str:
    """The name itself, or a LabError saying what a container name may be."""
    if not CONTAINER_RE.fullmatch(name) or HOST_RE.fullmatch(name) or name == SWITCH_NODE:
        raise LabError(
            f"invalid container name {name!r}: use 1 to 12 lowercase letters or digits, "
            "starting with a letter, not a host name (hK) or 'sw'",
            "e.g. weave lab run h1 web",
        )
    return name


def host_index(host: str) -> int | None:
    """K for a host name ``hK``, else None."""
    match = HOST_RE.fullmatch(host)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Host:
    """One simulated host of a lab: every name and path follows from (lab, index)."""

    lab: str
    index: int

    @property
    def name(self) -> str:
        return f"h{self.index}"

    @property
    def netns(self) -> str:
        return f"{LAB_PREFIX}{self.lab}-{self.name}"

    @property
    def address(self) -> str:
        return f"{SUBNET_PREFIX}{self.index}"

    @property
    def cidr(self) -> str:
        return f"{self.address}/{PREFIX_LEN}"

    @property
    def switch_port(self) -> str:
        """The veth end inside the switch namespace (named after the host it leads to)."""
        return self.name

    @property
    def state_dir(self) -> Path:
        return LAB_STATE_ROOT / self.lab / self.name

    @property
    def run_dir(self) -> Path:
        return LAB_RUN_ROOT / self.lab / self.name

    @property
    def uts_file(self) -> Path:
        return LAB_RUN_ROOT / self.lab / f"{self.name}.uts"

    @property
    def paths(self) -> Paths:
        return Paths(state_dir=self.state_dir, run_dir=self.run_dir)


@dataclass(frozen=True)
class Lab:
    """A lab by name; host objects are made on demand, the kernel decides which exist."""

    name: str

    def __post_init__(self) -> None:
        validate_lab_name(self.name)

    @property
    def prefix(self) -> str:
        """Every namespace of this lab starts with this (the trailing dash keeps labs apart)."""
        return f"{LAB_PREFIX}{self.name}-"

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}{SWITCH_NODE}"

    @property
    def state_root(self) -> Path:
        return LAB_STATE_ROOT / self.name

    @property
    def run_root(self) -> Path:
        return LAB_RUN_ROOT / self.name

    @property
    def metadata_file(self) -> Path:
        return self.run_root / "lab.json"

    @property
    def lock_file(self) -> Path:
        return LAB_RUN_ROOT / f"{self.name}.lock"

    def host(self, index: int) -> Host:
        return Host(self.name, index)

    def hosts(self, count: int) -> list[Host]:
        return [self.host(k) for k in range(1, count + 1)]

    def owns_netns(self, netns: str) -> bool:
        """True for exactly the namespace names this lab creates (switch and hK)."""
        if not netns.startswith(self.prefix):
            return False
        node = netns[len(self.prefix):]
        return (
            node == SWITCH_NODE
            or host_index(node) is not None
            or self.container_from_netns(netns) is not None
        )

    def container_netns(self, name: str) -> str:
        return f"{self.prefix}{CONTAINER_NODE_PREFIX}{name}"

    def container_from_netns(self, netns: str) -> str | None:
        """The container NAME of a namespace ``wl-LAB-c-NAME``, else None."""
        head = f"{self.prefix}{CONTAINER_NODE_PREFIX}"
        name = netns[len(head):] if netns.startswith(head) else ""
        return name if CONTAINER_RE.fullmatch(name) else None

    def hosts_from_netns(self, namespaces: list[str]) -> list[Host]:
        """The hosts whose namespaces exist, in index order."""
        found = []
        for netns in namespaces:
            if netns.startswith(self.prefix):
                index = host_index(netns[len(self.prefix):])
                if index is not None:
                    found.append(self.host(index))
        return sorted(found, key=lambda h: h.index)


def launch_argv(python: str, host: Host, options: list[str]) -> list[str]:
    """The router start command for a host: h1 launches, the others join through h1."""
    base = [python, "-m", "weave_cli"]
    if host.name == SEED_HOST:
        return [*base, "launch", *options]
    return [*base, "join", Host(host.lab, 1).address, *options]


def host_env(base: dict[str, str], host: Host, scripts_dir: str) -> dict[str, str]:
    """The caller's environment for a command inside a host: its router's dirs, weave on PATH."""
    env = dict(base)
    env["WEAVE_STATE_DIR"] = str(host.state_dir)
    env["WEAVE_RUN_DIR"] = str(host.run_dir)
    path = env.get("PATH", "")
    env["PATH"] = f"{path}:{scripts_dir}" if path else scripts_dir
    return env
