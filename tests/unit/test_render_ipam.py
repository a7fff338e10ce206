"""Golden text for ``weave status ipam`` and the ipam section of ``weave status``, over
hand-written reports in the shape ``weave_cli/ipam/report.py`` produces."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.render import colorize, render_ipam, render_status
from weave_cli.render_ipam import peer_spaces, percentage

ONE, TWO, THREE = "00:00:00:00:00:01", "00:00:00:00:00:02", "00:00:00:00:00:03"
CONFLICT = ("IP range from 10.32.0.0 to 10.39.255.255 claimed by both 00:00:00:00:00:02 and "
            "00:00:00:00:00:03 (was rmpeer run on more than one host?)")


def _entry(token: str, size: int, peer: str, nick: str, known: bool = True) -> dict[str, Any]:
    return {"Token": token, "Size": size, "Peer": peer, "Nickname": nick,
            "IsKnownPeer": known, "Version": 3, "Free": 0}


def report(entries: list[dict[str, Any]], me: str = ONE, **ipam: Any) -> dict[str, Any]:
    """A report whose local peer is ``me``; ``ipam`` overrides fields of the IPAM object."""
    body = {
        "Status": "ready", "Range": "10.32.0.0/12", "RangeNumIPs": 1048576, "ActiveIPs": 2,
        "DefaultSubnet": "10.32.0.0/12", "Entries": entries, "PendingClaims": [],
        "PendingAllocates": [], "Paxos": None, "Conflicts": [],
    }
    body.update(ipam)
    return {"Version": "0.1.0", "Ready": True,
            "Router": {"Name": me, "NickName": "one", "Peers": [], "Connections": []},
            "IPAM": body}


# The reference's example (§1.6), one in three unreachable; "one" holds two entries.
THIRDS = [
    _entry("10.32.0.0", 174763, ONE, "one"),
    _entry("10.34.170.171", 349525, TWO, "two"),
    _entry("10.37.85.86", 349525, THREE, "three", known=False),
    _entry("10.42.170.171", 174763, ONE, "one"),
]
THIRDS_GOLDEN = """\
00:00:00:00:00:01(one)                  349526 IPs (33.3% of total) (2 active)
00:00:00:00:00:02(two)                  349525 IPs (33.3% of total)
00:00:00:00:00:03(three)                349525 IPs (33.3% of total) - unreachable!
"""


def test_status_ipam_reference_example() -> None:
    assert render_ipam(report(THIRDS)) == THIRDS_GOLDEN


def test_local_first_others_sorted_by_name_and_percentages_zero_padded() -> None:
    entries = [
        _entry("10.32.0.0", 52429, THREE, "c"),
        _entry("10.32.204.205", 943947, TWO, "b", known=False),
        _entry("10.47.255.0", 52200, ONE, "a"),
    ]
    assert render_ipam(report(entries, me=TWO, ActiveIPs=0)) == (
        "00:00:00:00:00:02(b)                    943947 IPs (90.0% of total) (0 active)\n"
        "00:00:00:00:00:01(a)                     52200 IPs (05.0% of total)\n"
        "00:00:00:00:00:03(c)                     52429 IPs (05.0% of total)\n"
    )


def test_whole_range_and_a_peer_that_owns_nothing_here() -> None:
    whole = [_entry("10.32.0.0", 1048576, ONE, "one")]
    assert render_ipam(report(whole, ActiveIPs=7)) == (
        "00:00:00:00:00:01(one)                 1048576 IPs (100.0% of total) (7 active)\n")
    # The local peer owns no entry: as the original, it gets no line.
    assert render_ipam(report(whole, me=TWO)) == (
        "00:00:00:00:00:01(one)                 1048576 IPs (100.0% of total)\n")


def test_long_name_nickname_overflows_the_column_like_go() -> None:
    nick = "a-very-long-nickname-of-a-host"
    out = render_ipam(report([_entry("10.32.0.0", 1048576, ONE, nick)], me=TWO))
    assert out == f"{ONE}({nick})  1048576 IPs (100.0% of total)\n"


@pytest.mark.parametrize(("status"), [
    "idle",
    "priming",
    "awaiting consensus (quorum: 2, known: 1)",
])
def test_empty_ring_prints_the_status_words(status: str) -> None:
    assert render_ipam(report([], Status=status)) == status + "\n"


def test_conflicts_follow_after_a_blank_line() -> None:
    entries = [_entry("10.32.0.0", 524288, ONE, "one"), _entry("10.40.0.0", 524288, TWO, "two")]
    out = render_ipam(report(entries, Conflicts=[CONFLICT, "second"]))
    assert out == (
        "00:00:00:00:00:01(one)                  524288 IPs (50.0% of total) (2 active)\n"
        "00:00:00:00:00:02(two)                  524288 IPs (50.0% of total)\n"
        "\n"
        f"conflict: {CONFLICT}\n"
        "conflict: second\n"
    )
    assert render_ipam(report([], Status="idle", Conflicts=["x"])) == "idle\n\nconflict: x\n"


def test_no_ipam_object_renders_nothing() -> None:
    no_ipam = report(THIRDS)
    no_ipam["IPAM"] = None
    assert render_ipam(no_ipam) == ""
    del no_ipam["IPAM"]
    assert render_ipam(no_ipam) == ""
    assert render_ipam({}) == ""


def test_percentage_rounds_a_float32_as_the_original() -> None:
    # float64 would say 65.5 and 00.1: Go computes in float32 (see render_ipam's docstring).
    assert percentage(686293, 1048576) == "65.4"
    assert percentage(1500, 1000000) == "00.2"
    assert percentage(0, 1048576) == "00.0"
    assert percentage(1, 1048576) == "00.0"
    assert percentage(5, 0) == percentage(5, None) == percentage(5, True) == "-"


def test_partial_entries_never_raise() -> None:
    entries: list[Any] = [
        {}, "junk", {"Peer": TWO, "Size": "big"}, {"Peer": TWO, "Size": 4, "IsKnownPeer": None},
    ]
    out = render_ipam(report(entries, RangeNumIPs=None, ActiveIPs=None, Conflicts="junk"))
    assert out == (
        "-(-)                                         0 IPs (-% of total)\n"
        "00:00:00:00:00:02(-)                         4 IPs (-% of total)\n"
    )
    spaces = peer_spaces({"Entries": [{"Peer": ONE, "IsKnownPeer": False, "Size": 2},
                                      {"Peer": ONE, "IsKnownPeer": True, "Size": 3}]})
    assert [(s.name, s.ips, s.reachable) for s in spaces.values()] == [(ONE, 5, False)]


JUNK = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
        | st.lists(st.integers(), max_size=2))
ENTRY = st.dictionaries(st.sampled_from(["Peer", "Size", "Nickname", "IsKnownPeer"]), JUNK) | JUNK
IPAM = st.fixed_dictionaries({}, optional={
    "Entries": st.lists(ENTRY, max_size=4) | JUNK, "RangeNumIPs": JUNK, "ActiveIPs": JUNK,
    "Status": JUNK, "Conflicts": st.lists(JUNK, max_size=2) | JUNK,
})
REPORTS = st.fixed_dictionaries({}, optional={
    "IPAM": IPAM | JUNK, "Router": st.fixed_dictionaries({}, optional={"Name": JUNK}) | JUNK,
})


@given(REPORTS)
def test_any_report_renders_without_raising(data: dict[str, Any]) -> None:
    for text in (render_ipam(data), render_status(data)):
        assert all(line == line.rstrip() for line in text.splitlines())
        assert text == "" or text.endswith("\n")


SECTION = """
        Service: ipam
         Status: ready
          Range: 10.32.0.0/12
  DefaultSubnet: 10.32.0.0/12
"""


def test_status_section_after_the_router_section() -> None:
    out = render_status(report(THIRDS))
    assert out.endswith(" TrustedSubnets: -\n" + SECTION)


def test_status_section_counts_conflicts() -> None:
    out = render_status(report(THIRDS, Conflicts=[CONFLICT, "b"], Status="ready"))
    assert out.endswith(SECTION + "      Conflicts: 2 (see 'weave status ipam')\n")


def test_status_section_shows_the_status_words() -> None:
    words = "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"
    out = render_status(report(THIRDS, Status=words))
    assert f"         Status: {words}\n" in out


def test_status_without_ipam_has_no_section() -> None:
    for value in (None, "junk"):
        r = report(THIRDS)
        r["IPAM"] = value
        assert "Service: ipam" not in render_status(r)
    r = copy.deepcopy(report(THIRDS))
    del r["IPAM"]
    assert render_status(r).endswith(" TrustedSubnets: -\n")


def test_colorize_marks_unreachable_conflicts_and_status() -> None:
    text = render_ipam(report(THIRDS, Conflicts=["c"])) + render_status(report(THIRDS))
    styled = {(text[s.start:s.end], str(s.style)) for s in colorize(text).spans}
    assert ("- unreachable!", "red") in styled
    assert ("conflict: c", "red") in styled
    assert ("ready", "green") in styled
    bad = render_status(report([], Status="awaiting consensus (quorum: 2, known: 1)",
                               Conflicts=["c"]))
    styled = {(bad[s.start:s.end], str(s.style)) for s in colorize(bad).spans}
    assert ("awaiting consensus (quorum: 2, known: 1)", "yellow") in styled
    assert ("1", "red") in styled


def test_render_ipam_loads_neither_rich_nor_the_ipam_package() -> None:
    code = ("import sys, weave_cli.render as r; r.render_ipam({'IPAM': {}}); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'rich' "
            "or m.startswith('weave_cli.ipam') or m.startswith('weave_cli.router')], 'heavy'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
