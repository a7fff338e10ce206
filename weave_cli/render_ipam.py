"""The report's ``IPAM`` object → ``weave status ipam`` text and colour rules (pure functions).

Split from ``weave_cli.render`` for size; ``render.render_ipam`` is the public entry (the CLI and
the router's ``GET /status/ipam`` both call it) and imports this module lazily. This module
imports ``render``'s helpers, never the other way round at import time.

Input: the whole ``/report`` dict, of which it reads ``Router.Name`` (the local peer) and the
``IPAM`` object built by ``weave_cli/ipam/report.py``::

    {"Status": words, "RangeNumIPs": int, "ActiveIPs": int,
     "Entries": [{"Token", "Size", "Peer", "Nickname", "IsKnownPeer", ...}, ...],
     "Conflicts": [str, ...], ...}

Layout, as the original's ``printIPAMRanges`` (``prog/weaver/http.go``): one line per peer that
owns entries, ``%-37v %8d IPs (%04.1f%% of total) <info>`` with ``name(nickname)`` first and the
sum of that peer's entry sizes; the local peer first with info ``(N active)`` (N = ``ActiveIPs``),
then the others with ``- unreachable!`` when ``IsKnownPeer`` is false. Nickname and
reachability come from a peer's first entry. The percentage is computed in float32 as the
original does, so the rounding of the one decimal matches it exactly.

Deviations: the others are sorted by peer name (the original used Go map order, i.e. random);
an empty ring prints the status words (the original printed nothing); ``Conflicts`` follow after
a blank line, one ``conflict: ...`` line each. Partial reports never raise: a missing or
mistyped size counts 0, a missing name or nickname is ``-``, a missing ``RangeNumIPs`` gives a
``-`` percentage, and only an explicit ``IsKnownPeer: false`` marks a peer unreachable.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from weave_cli.render import _get, _lines, _list, _text

UNREACHABLE = "- unreachable!"

IPAM_STYLES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"- unreachable!$|^conflict: .*$|(?<=Conflicts: )\d+", re.M), "red"),
    (re.compile(r"(?<=Status: )all IP ranges owned by unreachable peers.*$", re.M), "red"),
    (re.compile(r"(?<=Status: )(?:awaiting consensus|priming|waiting for IP).*$", re.M), "yellow"),
    (re.compile(r"(?<=Status: )ready$", re.M), "green"),
)
"""(pattern, rich style) for IPAM text in ``status`` and ``status ipam``; see render.colorize."""


@dataclass
class PeerSpace:
    """One owner's share of the ring: the sum of its entries, as the first entry describes it."""

    name: str
    nickname: str
    reachable: bool
    ips: int = 0


def _size(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def peer_spaces(ipam: Any) -> dict[str, PeerSpace]:
    """Owner name → its share, in ring (token) order of first appearance."""
    spaces: dict[str, PeerSpace] = {}
    for entry in _list(_get(ipam, "Entries")):
        name = _text(_get(entry, "Peer"))
        space = spaces.get(name)
        if space is None:
            reachable = _get(entry, "IsKnownPeer") is not False
            space = spaces[name] = PeerSpace(name, _text(_get(entry, "Nickname")), reachable)
        space.ips += _size(_get(entry, "Size"))
    return spaces


def _f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (each Go float32 operation rounds like this)."""
    value: float = struct.unpack("f", struct.pack("f", x))[0]
    return value


def percentage(ips: int, total: Any) -> str:
    """``%04.1f`` of ``float32(ips) * 100 / float32(total)``; ``-`` without a usable total."""
    if _size(total) == 0:
        return "-"
    try:
        return f"{_f32(_f32(_f32(ips) * 100.0) / _f32(total)):04.1f}"
    except OverflowError:  # beyond float32: not a report a router makes
        return "-"


def _owned_line(space: PeerSpace, total: Any, info: str) -> str:
    shown = f"{space.name}({space.nickname})"
    return f"{shown:<37} {space.ips:8d} IPs ({percentage(space.ips, total)}% of total) {info}"


def render_ipam_view(report: dict[str, Any]) -> str:
    """``weave status ipam`` for ``report`` (``""`` when the report has no ``IPAM`` object)."""
    ipam = _get(report, "IPAM")
    if not isinstance(ipam, dict):
        return ""
    total = ipam.get("RangeNumIPs")
    spaces = peer_spaces(ipam)
    me = _text(_get(_get(report, "Router"), "Name"))
    lines = []
    if me in spaces:
        lines.append(_owned_line(spaces[me], total, f"({_text(ipam.get('ActiveIPs'))} active)"))
    for name in sorted(spaces):
        if name != me:
            space = spaces[name]
            lines.append(_owned_line(space, total, "" if space.reachable else UNREACHABLE))
    if not spaces:
        lines.append(_text(ipam.get("Status")))
    conflicts = _list(ipam.get("Conflicts"))
    if conflicts:
        lines += ["", *(f"conflict: {_text(c)}" for c in conflicts)]
    return _lines(lines)
