"""The controller's effects on the kernel: br_netfilter's switch and the two nft tables.

Everything runs in the controller's own network namespace (the node's; the lab enters a host's
namespace before starting the controller), or in ``ns`` when given (tests). Calls block; the
controller runs them in a worker thread. Failures are ``DatapathError`` with nft's own line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from weave_cli.names import NPC_TABLE
from weave_cli.net.errors import DatapathError
from weave_cli.net.firewall import error_line, run_program, which
from weave_cli.npc import nftables
from weave_cli.npc.ir import Ruleset

BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def ensure_bridge_netfilter(switch: Path = BRIDGE_NF) -> str | None:
    """Make bridged IPv4 frames pass the inet hooks (the policy sees pod-to-pod traffic only
    then); what was changed, or None. Without br_netfilter every bridged frame would bypass
    the policy, so its absence is an error, never a warning."""
    if not switch.exists() and (modprobe := which("modprobe")) is not None:
        subprocess.run([modprobe, "br_netfilter"], capture_output=True, check=False,
                       timeout=20)
    try:
        if switch.read_text().strip() == "1":
            return None
        switch.write_text("1\n")
    except OSError as err:
        raise DatapathError(
            f"cannot turn on {switch.name}: {err.strerror or err}",
            "load br_netfilter (modprobe br_netfilter) and run weave-npc as root",
        ) from None
    return f"{switch.name} turned on: bridged pod traffic now passes the policy"


def present_digests(ns: str | None = None) -> set[str] | None:
    """The ruleset digests both tables carry now (empty when they disagree or were edited),
    or None when the inet table does not exist."""
    found: list[set[str]] = []
    for family, chain in (("inet", "forward"), ("bridge", "prerouting")):
        rc, out, err = run_program(ns, ["nft", "-j", "list", "chain", family, NPC_TABLE, chain])
        if rc != 0:
            if "No such file" in err or "does not exist" in err:
                if family == "inet":
                    return None
                found.append(set())
                continue
            raise DatapathError(f"nft could not list {family} {chain}: {error_line(err)}")
        try:
            found.append(nftables.digests_in_listing(json.loads(out)))
        except ValueError:
            raise DatapathError("nft listed a chain as something not JSON") from None
    return found[0] & found[1]


def apply(rs: Ruleset, ns: str | None = None) -> str:
    """Replace both tables with ``rs`` in one transaction; the digest now in the kernel."""
    rc, _, err = run_program(ns, ["nft", "-f", "-"], stdin=nftables.script(rs))
    if rc != 0:
        raise DatapathError(f"nft could not apply the policy tables: {error_line(err)}")
    return nftables.digest(rs)


def remove(ns: str | None = None) -> bool:
    """Delete both tables (``weave reset``); False when there were none."""
    had = present_digests(ns) is not None
    rc, _, err = run_program(ns, ["nft", "-f", "-"], stdin=nftables.delete_script())
    if rc != 0:
        raise DatapathError(f"nft could not delete the policy tables: {error_line(err)}")
    return had
