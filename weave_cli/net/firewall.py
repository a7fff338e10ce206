"""Running ``nft`` and ``iptables`` in the router's namespace: the effect side of nft/iptables.

Programs run with list argv (no shell); for a namespace other than our own (the tests) they
run under ``nsenter --net=PATH``. A failed run becomes a ``DatapathError`` carrying the
program's own error line. nftables is required (``./run`` installs it); iptables is optional:
without the binary there is no Docker-style FORWARD chain to open, and nothing is done.

``ensure_table`` costs one ``nft -j list`` when the table is right, plus one ``nft -f`` when it
is not; ``ensure_forward_rules`` one ``iptables -S`` plus one run per missing rule.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from ipaddress import IPv4Interface

from weave_cli.names import BRIDGE, NFT_FAMILY, NFT_TABLE
from weave_cli.net import iptables, nft
from weave_cli.net.errors import DatapathError

TIMEOUT = 20.0
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"


def which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path=SBIN)


def run_program(ns: str | None, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    exe = which(argv[0])
    if exe is None:
        raise DatapathError(f"{argv[0]} not found", "install nftables (and iptables with Docker)")
    full = [exe, *argv[1:]]
    if ns is not None:
        nsenter = which("nsenter")
        if nsenter is None:
            raise DatapathError("nsenter not found", "install util-linux")
        full = [nsenter, f"--net={ns}", "--", *full]
    try:
        proc = subprocess.run(
            full, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise DatapathError(f"{argv[0]} did not finish within {TIMEOUT:.0f}s") from None
    except OSError as err:
        raise DatapathError(f"cannot run {argv[0]}: {err.strerror}") from None
    return proc.returncode, proc.stdout, proc.stderr


def error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "no reason given"


def _apply(ns: str | None, text: str) -> None:
    rc, _, err = run_program(ns, ["nft", "-f", "-"], stdin=text)
    if rc != 0:
        raise DatapathError(f"nft could not apply table {NFT_TABLE}: {error_line(err)}")


def current_table(ns: str | None) -> nft.Canonical | None:
    """The table as it is (reduced by ``nft.canonical_listing``), or None when it is absent."""
    rc, out, err = run_program(ns, ["nft", "-j", "list", "table", NFT_FAMILY, NFT_TABLE])
    if rc != 0:
        if "No such file" in err or "does not exist" in err:
            return None
        raise DatapathError(f"nft could not list table {NFT_TABLE}: {error_line(err)}")
    try:
        return nft.canonical_listing(json.loads(out))
    except ValueError:
        raise DatapathError(f"nft listed table {NFT_TABLE} as something not JSON") from None


def ensure_table(ns: str | None, exposed: list[IPv4Interface], bridge: str = BRIDGE,
                 ports: nft.LocalPorts | None = None) -> list[str]:
    """Make ``table inet weave`` match the exposed addresses; one line per repair.

    ``ports``: the router's ports to guard; None (expose and hide, which do not know the
    router's options) keeps those the table guards now, else the defaults."""
    have = current_table(ns)
    if ports is None:
        ports = nft.ports_of(have) or nft.LocalPorts()
    chains = nft.desired(exposed, bridge, ports)
    if have == nft.canonical(chains):
        return []
    _apply(ns, nft.script(chains))
    return [f"nft table {NFT_FAMILY} {NFT_TABLE} {'created' if have is None else 'rewritten'}"]


def remove_table(ns: str | None) -> bool:
    """Delete the table; False when there was none."""
    if current_table(ns) is None:
        return False
    _apply(ns, nft.delete_script())
    return True


def _filter_state(ns: str | None) -> iptables.FilterState | None:
    if which("iptables") is None:
        return None
    rc, out, err = run_program(ns, ["iptables", "-w", "5", "-S"])
    if rc != 0:
        raise DatapathError(f"iptables could not list the filter table: {error_line(err)}")
    return iptables.parse_listing(out)


def _iptables(ns: str | None, args: list[str]) -> None:
    rc, _, err = run_program(ns, ["iptables", "-w", "5", *args])
    if rc != 0:
        raise DatapathError(f"iptables {' '.join(args[:2])} failed: {error_line(err)}")


def ensure_forward_rules(ns: str | None, bridge: str = BRIDGE) -> list[str]:
    """Our ACCEPT rules in DOCKER-USER (or a DROP-policy FORWARD); one line per change."""
    state = _filter_state(ns)
    if state is None:
        return []
    done = []
    for args in iptables.plan(state, bridge):
        _iptables(ns, args)
        verb = "removed from" if args[0] == "-D" else "inserted into"
        done.append(f"iptables rule {args[-3]} {verb} {args[1]}")
    return done


def remove_forward_rules(ns: str | None) -> int:
    """Delete every iptables rule of ours; how many there were."""
    state = _filter_state(ns)
    if state is None:
        return 0
    steps = iptables.removal(state)
    for args in steps:
        _iptables(ns, args)
    return len(steps)
