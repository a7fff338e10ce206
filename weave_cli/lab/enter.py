"""Running commands inside a lab host: its network and UTS namespaces and its router's dirs.

A command "in host hK" runs under ``nsenter --net=/run/netns/wl-LAB-hK --uts=<hK.uts>`` (no
mount namespace, so it sees the same files as the caller) with the caller's environment plus
WEAVE_STATE_DIR / WEAVE_RUN_DIR of hK and the running interpreter's scripts directory appended
to PATH, so ``weave`` inside resolves to this installation.
"""

from __future__ import annotations

import os
import sys

from weave_cli.errors import LabError
from weave_cli.lab import build, system
from weave_cli.lab.topology import Host, host_env


def host_argv(host: Host, argv: list[str]) -> list[str]:
    """argv run inside the host's network and (if bound) UTS namespaces."""
    ns = [f"--net={system.netns_path(host.netns)}"]
    if build.uts_bound(host):
        ns.append(f"--uts={host.uts_file}")
    return [system.tool("nsenter"), *ns, "--", *argv]


def env_for(host: Host) -> dict[str, str]:
    return host_env(dict(os.environ), host, os.path.dirname(sys.executable))


def exec_in(host: Host, cmd: list[str]) -> None:
    """Replace this process with ``cmd`` inside the host: stdio and exit status pass through."""
    if not cmd:
        raise LabError("no command given", f"e.g. weave lab exec {host.name} -- hostname")
    argv = host_argv(host, cmd)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env_for(host))
    except OSError as err:
        raise LabError(f"cannot run nsenter: {err.strerror}", "is util-linux installed?") from None
