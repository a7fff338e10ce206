"""The router's ``/report`` dict → the original's ``weave status`` text layouts (pure functions).

Every ``render_*`` function returns text whose lines each end in ``\\n`` (so an empty view is
``""``), with trailing spaces stripped from every line. ``render_status`` returns the block
*without* the blank line the original prints before and after it: the CLI adds those.

Layouts are the ones of the original's ``prog/weaver/http.go`` templates:

* ``render_status``: labels right-aligned to 15 columns, then ``": "``; sections separated by
  one blank line; the ipam section only when the report has an ``IPAM`` object;
* ``render_connections``: ``{->|<-} %-21s(address) %-11s(state) {info}`` then the attributes;
* ``render_peers``: ``name(nick)``, then per connection three spaces, arrow, ``%-21s`` address,
  ``%-37s`` ``name(nick)``, ``established|pending`` (the troubleshooting doc's example predates
  the 37-column padding and shows 32);
* ``render_targets``: one target per line;
* ``render_ipam`` (``weave status ipam``, also served by the router at ``/status/ipam``): see
  ``weave_cli.render_ipam``. The ipam section of ``render_status`` adds, when the report's
  ``Conflicts`` list is not empty, ``Conflicts: N (see 'weave status ipam')``.

Partial or older reports never raise. The rule: a missing or mistyped string/number renders
as ``-``; a missing list counts as ``-`` in the summary and as empty in the per-line views;
a missing ``Outbound`` renders the arrow as ``--``; a missing ``Established`` renders ``-`` and is
not counted; a missing ``VersionCheck`` drops the parenthesis after the version.

Deviation: ``status connections`` separates attributes with spaces (`` mtu=1376 encrypted=true``,
sorted, ``name`` omitted, a value with spaces in double quotes); the original concatenated them
with no separator.

``colorize`` is for terminals only and imports rich lazily, so importing this module stays fast.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from weave_cli.gofmt import format_value

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["CONNECTION_STATES", "STATE_STYLES", "colorize", "render_connections", "render_ipam",
           "render_peers", "render_status", "render_targets", "style_for_state",
           "version_check_text"]

CONNECTION_STATES = ("established", "pending", "retrying", "failed", "connecting")
"""The order in which the summary lists connection states (others count only in the total)."""

STATE_STYLES = {
    "established": "green",
    "pending": "yellow",
    "retrying": "yellow",
    "connecting": "yellow",
    "waiting": "yellow",
    "failed": "red",
}
"""rich style per connection state; see ``style_for_state``."""

_MISSING = "-"
_LABEL_WIDTH = 15


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _text(v: Any) -> str:
    """A scalar as the original prints it; missing (None) or a container is ``-``."""
    if v is None or isinstance(v, (list, dict)):
        return _MISSING
    return format_value(v)


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _count(v: Any) -> str:
    return str(len(v)) if isinstance(v, list) else _MISSING


def _state(v: Any) -> str:
    return _MISSING if not isinstance(v, bool) else "enabled" if v else "disabled"


def _arrow(outbound: Any) -> str:
    return "--" if not isinstance(outbound, bool) else "->" if outbound else "<-"


def _name_nick(obj: Any) -> str:
    return f"{_text(_get(obj, 'Name'))}({_text(_get(obj, 'NickName'))})"


def _line(label: str, value: str) -> str:
    return f"{label:>{_LABEL_WIDTH}}: {value}".rstrip()


def _lines(lines: list[str]) -> str:
    return "".join(line.rstrip() + "\n" for line in lines)


_GO_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})")


def _check_time(v: Any) -> str:
    """An RFC 3339 time as Go's ``2006/01/02 15:04:05`` (wall clock of the time's own zone)."""
    m = _GO_TIME.match(v) if isinstance(v, str) else None
    if m is None:
        return _text(v)
    y, mo, d, h, mi, s = m.groups()
    return f"{y}/{mo}/{d} {h}:{mi}:{s}"


def version_check_text(check: Any) -> str:
    """The original's ``VersionCheck.String()`` for the report's ``VersionCheck`` object."""
    if not _get(check, "Enabled"):
        return "version check update disabled"
    next_check = _check_time(_get(check, "NextCheckAt"))
    if not _get(check, "Success"):
        return f"failed to check latest version - see logs; next check at {next_check}"
    new = _get(check, "NewVersion")
    if new:
        return f"version {_text(new)} available - please upgrade!"
    return f"up to date; next check at {next_check}"


def _protocol(router: Any) -> str:
    lo, hi = _get(router, "ProtocolMinVersion"), _get(router, "ProtocolMaxVersion")
    if lo is not None and hi is not None:
        versions = _text(hi) if lo == hi else f"{_text(lo)}..{_text(hi)}"
    else:
        versions = _text(hi if hi is not None else lo)
    return f"{_text(_get(router, 'Protocol'))} {versions}"


def _counts(counts: dict[str, int], order: tuple[str, ...]) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


def _connections_summary(conns: Any) -> str:
    if not isinstance(conns, list):
        return _MISSING
    counts: dict[str, int] = {}
    for conn in conns:
        state = _get(conn, "State")
        if isinstance(state, str):
            counts[state] = counts.get(state, 0) + 1
    detail = _counts(counts, CONNECTION_STATES)
    return f"{len(conns)} ({detail})" if detail else str(len(conns))


def _peers_summary(peers: Any) -> str:
    """``N (with x established, y pending connections)``.

    As the original does, every entry in every peer's ``Connections`` list is counted (our own
    and the ones other peers report via gossip), so a link between two known peers is usually
    counted twice, once from each end: ``Established`` true counts as established, false as
    pending; entries without a boolean ``Established`` are not counted.
    """
    if not isinstance(peers, list):
        return _MISSING
    counts = {"established": 0, "pending": 0}
    for peer in peers:
        for conn in _list(_get(peer, "Connections")):
            est = _get(conn, "Established")
            if isinstance(est, bool):
                counts["established" if est else "pending"] += 1
    detail = _counts(counts, ("established", "pending"))
    return f"{len(peers)} (with {detail} connections)" if detail else str(len(peers))


def _subnets(v: Any) -> str:
    if not isinstance(v, list):
        return _MISSING
    return ", ".join(_text(s) for s in v) if v else "none"


# A password rotation's phase (``Router.PasswordRotation``), as status and the CLI say it.
ROTATION_TEXT = {
    "begun": "begun (sending with the current password, accepting the next one too)",
    "switched": "switched (sending with the new password, accepting the previous one too)",
}


def render_status(report: dict[str, Any]) -> str:
    """The ``weave status`` summary (router section, then ipam when ``IPAM`` is present).

    Without the surrounding blank lines the original prints; the CLI adds them.
    """
    version = _text(_get(report, "Version"))
    if "VersionCheck" in report and report["VersionCheck"] is not None:
        version += f" ({version_check_text(report['VersionCheck'])})"
    router = _get(report, "Router")
    lines = [
        _line("Version", version),
        "",
        _line("Service", "router"),
        _line("Protocol", _protocol(router)),
        _line("Name", _name_nick(router)),
        _line("Encryption", _state(_get(router, "Encryption"))),
        _line("PeerDiscovery", _state(_get(router, "PeerDiscovery"))),
        _line("Targets", _count(_get(router, "Targets"))),
        _line("Connections", _connections_summary(_get(router, "Connections"))),
        _line("Peers", _peers_summary(_get(router, "Peers"))),
        _line("TrustedSubnets", _subnets(_get(router, "TrustedSubnets"))),
    ]
    rotation = router.get("PasswordRotation") if isinstance(router, dict) else None
    if rotation in ROTATION_TEXT:
        lines.insert(6, _line("Rotation", ROTATION_TEXT[rotation]))
    ipam = _get(report, "IPAM")
    if isinstance(ipam, dict):
        lines += [
            "",
            _line("Service", "ipam"),
            _line("Status", _text(ipam.get("Status"))),
            _line("Range", _text(ipam.get("Range"))),
            _line("DefaultSubnet", _text(ipam.get("DefaultSubnet"))),
        ]
        conflicts = _list(ipam.get("Conflicts"))
        if conflicts:
            lines.append(_line("Conflicts", f"{len(conflicts)} (see 'weave status ipam')"))
    return _lines(lines)


def _attrs(attrs: Any) -> str:
    if not isinstance(attrs, dict):
        return ""
    return "".join(f" {k}={_quoted(format_value(attrs[k]))}"
                   for k in sorted(attrs, key=str) if k != "name")


def _quoted(text: str) -> str:
    """A value with spaces (a reason) in double quotes, so the line still splits on spaces."""
    return f'"{text}"' if " " in text else text


def render_connections(report: dict[str, Any]) -> str:
    """``weave status connections``: one line per ``Router.Connections`` entry."""
    lines = []
    for conn in _list(_get(_get(report, "Router"), "Connections")):
        info = _get(conn, "Info")
        lines.append(
            f"{_arrow(_get(conn, 'Outbound'))} {_text(_get(conn, 'Address')):<21} "
            f"{_text(_get(conn, 'State')):<11} {'' if info is None else _text(info)}"
            + _attrs(_get(conn, "Attrs"))
        )
    return _lines(lines)


def render_peers(report: dict[str, Any]) -> str:
    """``weave status peers``: every known peer (self first), each followed by its connections."""
    lines = []
    for peer in _list(_get(_get(report, "Router"), "Peers")):
        lines.append(_name_nick(peer))
        for conn in _list(_get(peer, "Connections")):
            est = _get(conn, "Established")
            state = _MISSING if not isinstance(est, bool) else "established" if est else "pending"
            lines.append(f"   {_arrow(_get(conn, 'Outbound'))} {_text(_get(conn, 'Address')):<21} "
                         f"{_name_nick(conn):<37} {state}")
    return _lines(lines)


def render_targets(report: dict[str, Any]) -> str:
    """``weave status targets``: one target per line, as given to launch or connect."""
    return _lines([_text(t) for t in _list(_get(_get(report, "Router"), "Targets"))])


def render_ipam(report: dict[str, Any]) -> str:
    """``weave status ipam``: who owns how much of the range (``""`` without an ``IPAM`` object).

    Pure over ``report``; the layout is described in ``weave_cli.render_ipam``.
    """
    from weave_cli.render_ipam import render_ipam_view

    return render_ipam_view(report)


def style_for_state(state: str) -> str:
    """The rich style for a connection state (``""`` for an unknown state: no colour)."""
    return STATE_STYLES.get(state, "")


_STATE_WORDS = re.compile(r"\b(" + "|".join(STATE_STYLES) + r")\b")


def colorize(text: str) -> Text:
    """``text`` (a rendered block) as rich ``Text`` with every state word styled.

    Whole words only; a state word inside an error message or nickname is coloured too, which
    is harmless. IPAM text follows ``render_ipam.IPAM_STYLES`` (unreachable owners and conflicts
    red, status words by meaning). rich is imported here, not at module import.
    """
    from rich.text import Text

    from weave_cli.render_ipam import IPAM_STYLES

    styled = Text(text)
    for m in _STATE_WORDS.finditer(text):
        styled.stylize(STATE_STYLES[m.group(1)], m.start(), m.end())
    for pattern, style in IPAM_STYLES:
        for m in pattern.finditer(text):
            styled.stylize(style, m.start(), m.end())
    return styled
