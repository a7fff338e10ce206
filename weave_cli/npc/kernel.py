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


def read(ns: str | None = None) -> nftables.TableState | None:
    """What both tables hold now (``TableState``: the digests they agree on, their shape), or
    None when neither exists. One that is missing leaves no digest they agree on."""
    states: list[nftables.TableState] = []
    for family in ("inet", "bridge"):
        rc, out, err = run_program(ns, ["nft", "-j", "list", "table", family, NPC_TABLE])
        if rc == 0:
            try:
                states.append(nftables.read_listing(json.loads(out)))
            except ValueError:
                raise DatapathError("nft listed a table as something not JSON") from None
        elif "No such file" in err or "does not exist" in err:
            states.append(nftables.TableState(frozenset(), frozenset({("missing", family)})))
        else:
            raise DatapathError(f"nft could not list table {family} {NPC_TABLE}: "
                                f"{error_line(err)}")
    if all(not st.digests and ("missing", f) in st.shape
           for st, f in zip(states, ("inet", "bridge"), strict=True)):
        return None
    return states[0] + states[1]


def apply(rendered: nftables.Rendered, ns: str | None = None) -> nftables.TableState:
    """Replace both tables with a rendered ruleset in one transaction; what they hold then."""
    rc, _, err = run_program(ns, ["nft", "-f", "-"], stdin=rendered.script)
    if rc != 0:
        raise DatapathError(f"nft could not apply the policy tables: {error_line(err)}")
    state = read(ns)
    if state is None or rendered.digest not in state.digests:
        raise DatapathError("the policy tables are not what was just applied")
    return state


def remove(ns: str | None = None) -> bool:
    """Delete both tables (``weave reset``); False when there were none."""
    had = read(ns) is not None
    rc, _, err = run_program(ns, ["nft", "-f", "-"], stdin=nftables.delete_script())
    if rc != 0:
        raise DatapathError(f"nft could not delete the policy tables: {error_line(err)}")
    return had
