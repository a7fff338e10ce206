"""Golden text for the status views, built from reports matching the reference examples (§1.6)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.render import (
    colorize,
    render_connections,
    render_peers,
    render_status,
    render_targets,
    style_for_state,
    version_check_text,
)

H1 = ("ce:31:e0:06:45:1a", "host1", "192.168.48.11")
H2 = ("ea:2d:b2:e6:e4:f5", "host2", "192.168.48.12")
H3 = ("ee:38:33:a7:d9:71", "host3", "192.168.48.13")


def _conn(peer: tuple[str, str, str], address: str, outbound: bool,
          established: bool = True) -> dict[str, Any]:
    return {"Name": peer[0], "NickName": peer[1], "Address": address, "Outbound": outbound,
            "Established": established}


def troubleshooting_report() -> dict[str, Any]:
    """The reference's `weave status` + `status connections` example, in current-code form."""
    conns = [
        {"Address": "192.168.48.12:33866", "Outbound": False, "State": "established",
         "Info": "unencrypted fastdp 7e:21:4a:70:2f:45(host2)",
         "Attrs": {"name": "fastdp", "mtu": 1410}},
        {"Address": "192.168.48.13:60773", "Outbound": False, "State": "pending",
         "Info": "encrypted   fastdp 7e:ae:cd:d5:23:8d(host3)", "Attrs": {"name": "fastdp"}},
        {"Address": "192.168.48.14:6783", "Outbound": True, "State": "retrying",
         "Info": "dial tcp4 192.168.48.14:6783: no route to host"},
        {"Address": "192.168.48.15:6783", "Outbound": True, "State": "failed",
         "Info": "dial tcp4 192.168.48.15:6783: no route to host, retry: "
                 "2015-08-06 18:55:38.246910357 +0000 UTC"},
        {"Address": "192.168.48.16:6783", "Outbound": True, "State": "connecting", "Info": ""},
    ]
    peers = [
        {"Name": "4a:0f:f6:ec:1c:93", "NickName": "host1", "Connections": [
            _conn(H2, "192.168.48.12:33866", False),
            _conn(H3, "192.168.48.13:60773", False, False)]},
        {"Name": H2[0], "NickName": H2[1], "Connections": [
            _conn(H1, "192.168.48.11:6783", True), _conn(H3, "192.168.48.13:1", False)]},
        {"Name": H3[0], "NickName": H3[1], "Connections": [
            _conn(H2, "192.168.48.12:6783", True), _conn(H1, "192.168.48.11:6783", True)]},
    ]
    return {
        "Ready": True,
        "Version": "1.1.0",
        "VersionCheck": {"Enabled": True, "Success": True, "NewVersion": "",
                         "NextCheckAt": "2016-04-06T12:30:00.123456789Z"},
        "Router": {
            "Protocol": "weave", "ProtocolMinVersion": 1, "ProtocolMaxVersion": 2,
            "Encryption": False, "PeerDiscovery": True, "Name": "4a:0f:f6:ec:1c:93",
            "NickName": "host1", "Port": 6783, "ConnLimit": 200, "Peers": peers,
            "Connections": conns, "TerminationCount": 0,
            "Targets": ["192.168.48.14", "192.168.48.15"], "TrustedSubnets": [],
        },
        "IPAM": {"Status": "ready", "Range": "10.32.0.0/12", "DefaultSubnet": "10.32.0.0/12"},
    }


STATUS_GOLDEN = """\
        Version: 1.1.0 (up to date; next check at 2016/04/06 12:30:00)

        Service: router
       Protocol: weave 1..2
           Name: 4a:0f:f6:ec:1c:93(host1)
     Encryption: disabled
  PeerDiscovery: enabled
        Targets: 2
    Connections: 5 (1 established, 1 pending, 1 retrying, 1 failed, 1 connecting)
          Peers: 3 (with 5 established, 1 pending connections)
 TrustedSubnets: none

        Service: ipam
         Status: ready
          Range: 10.32.0.0/12
  DefaultSubnet: 10.32.0.0/12
"""

CONNECTIONS_GOLDEN = """\
<- 192.168.48.12:33866   established unencrypted fastdp 7e:21:4a:70:2f:45(host2) mtu=1410
<- 192.168.48.13:60773   pending     encrypted   fastdp 7e:ae:cd:d5:23:8d(host3)
-> 192.168.48.14:6783    retrying    dial tcp4 192.168.48.14:6783: no route to host
-> 192.168.48.15:6783    failed      dial tcp4 192.168.48.15:6783: no route to host, retry: \
2015-08-06 18:55:38.246910357 +0000 UTC
-> 192.168.48.16:6783    connecting
"""

# The reference's `status peers` example, with the current code's %-37v name column (the
# doc example predates it and pads to 32).
PEERS_GOLDEN = """\
ce:31:e0:06:45:1a(host1)
   <- 192.168.48.12:39634   ea:2d:b2:e6:e4:f5(host2)              established
   <- 192.168.48.13:49619   ee:38:33:a7:d9:71(host3)              established
ea:2d:b2:e6:e4:f5(host2)
   -> 192.168.48.11:6783    ce:31:e0:06:45:1a(host1)              established
   <- 192.168.48.13:58181   ee:38:33:a7:d9:71(host3)              established
ee:38:33:a7:d9:71(host3)
   -> 192.168.48.12:6783    ea:2d:b2:e6:e4:f5(host2)              established
   -> 192.168.48.11:6783    ce:31:e0:06:45:1a(host1)              established
"""


def peers_report() -> dict[str, Any]:
    def peer(p: tuple[str, str, str], *conns: dict[str, Any]) -> dict[str, Any]:
        return {"Name": p[0], "NickName": p[1], "UID": 1, "ShortID": 1, "Version": 3,
                "Connections": list(conns)}

    return {"Router": {"Peers": [
        peer(H1, _conn(H2, "192.168.48.12:39634", False), _conn(H3, "192.168.48.13:49619", False)),
        peer(H2, _conn(H1, "192.168.48.11:6783", True), _conn(H3, "192.168.48.13:58181", False)),
        peer(H3, _conn(H2, "192.168.48.12:6783", True), _conn(H1, "192.168.48.11:6783", True)),
    ]}}


def lab_report() -> dict[str, Any]:
    """What our router reports for a fresh two-host lab (the shape in the CLI brief)."""
    return {
        "Ready": True, "Version": "0.1.0", "VersionCheck": {"Enabled": False},
        "Router": {
            "Protocol": "weave", "ProtocolMinVersion": 1, "ProtocolMaxVersion": 1,
            "Encryption": False, "PeerDiscovery": True, "Name": "aa:bb:cc:dd:ee:ff",
            "NickName": "h1", "Port": 6783, "ConnLimit": 200,
            "Peers": [{"Name": "aa:bb:cc:dd:ee:ff", "NickName": "h1", "Connections": [
                {"Name": "aa:bb:cc:dd:ee:01", "NickName": "h2", "Address": "198.18.0.2:6783",
                 "Outbound": True, "Established": True}]}],
            "UnicastRoutes": [], "BroadcastRoutes": [],
            "Connections": [{"Address": "198.18.0.2:6783", "Outbound": True,
                             "State": "established", "Info": "none   aa:bb:cc:dd:ee:01(h2)",
                             "Attrs": {"mtu": 1376}}],
            "TerminationCount": 0, "Targets": ["198.18.0.2"], "TrustedSubnets": [],
        },
    }


def test_status_golden() -> None:
    assert render_status(troubleshooting_report()) == STATUS_GOLDEN


def test_status_lab_single_protocol_version_and_no_ipam() -> None:
    assert render_status(lab_report()) == """\
        Version: 0.1.0 (version check update disabled)

        Service: router
       Protocol: weave 1
           Name: aa:bb:cc:dd:ee:ff(h1)
     Encryption: disabled
  PeerDiscovery: enabled
        Targets: 1
    Connections: 1 (1 established)
          Peers: 1 (with 1 established connections)
 TrustedSubnets: none
"""


def test_status_no_connections_and_trusted_subnets() -> None:
    report = lab_report()
    report["Router"].update(Connections=[], Peers=[{"Name": "x", "NickName": "h1"}],
                            Targets=[], TrustedSubnets=["10.0.0.0/8", "192.168.0.0/16"],
                            Encryption=True, PeerDiscovery=False)
    text = render_status(report)
    assert "    Connections: 0\n" in text
    assert "          Peers: 1\n" in text
    assert "        Targets: 0\n" in text
    assert " TrustedSubnets: 10.0.0.0/8, 192.168.0.0/16\n" in text
    assert "     Encryption: enabled\n" in text
    assert "  PeerDiscovery: disabled\n" in text


def test_status_unlisted_state_counts_only_in_total() -> None:
    report = lab_report()
    report["Router"]["Connections"] = [{"State": "waiting"}, {"State": "failed"}]
    assert "    Connections: 2 (1 failed)\n" in render_status(report)


@pytest.mark.parametrize(
    ("check", "text"),
    [
        ({"Enabled": False}, "version check update disabled"),
        ({}, "version check update disabled"),
        ({"Enabled": True, "Success": False, "NextCheckAt": "2016-04-06T12:30:00Z"},
         "failed to check latest version - see logs; next check at 2016/04/06 12:30:00"),
        ({"Enabled": True, "Success": True, "NewVersion": "2.8.1"},
         "version 2.8.1 available - please upgrade!"),
        ({"Enabled": True, "Success": True, "NewVersion": "",
          "NextCheckAt": "2024-01-02T03:04:05+02:00"},
         "up to date; next check at 2024/01/02 03:04:05"),
    ],
)
def test_version_check_text(check: dict[str, Any], text: str) -> None:
    assert version_check_text(check) == text


def test_connections_golden() -> None:
    assert render_connections(troubleshooting_report()) == CONNECTIONS_GOLDEN


def test_connections_lab_and_attrs_sorted_space_separated() -> None:
    report = lab_report()
    assert render_connections(report) == (
        "-> 198.18.0.2:6783       established none   aa:bb:cc:dd:ee:01(h2) mtu=1376\n")
    report["Router"]["Connections"][0]["Attrs"] = {"mtu": 1376, "encrypted": True, "name": "x"}
    assert render_connections(report).endswith("(h2) encrypted=true mtu=1376\n")


def test_peers_golden() -> None:
    text = render_peers(peers_report())
    assert text == PEERS_GOLDEN
    second = text.splitlines()[1]
    assert second.index("ea:2d") == 28 and second.index("established") == 28 + 37 + 1


def test_peers_pending() -> None:
    text = render_peers(troubleshooting_report())
    assert text.splitlines()[2] == (
        "   <- 192.168.48.13:60773   ee:38:33:a7:d9:71(host3)              pending")


def test_targets() -> None:
    assert render_targets(troubleshooting_report()) == "192.168.48.14\n192.168.48.15\n"
    assert render_targets({"Router": {"Targets": []}}) == ""


def test_empty_report_never_raises() -> None:
    assert render_status({}) == """\
        Version: -

        Service: router
       Protocol: - -
           Name: -(-)
     Encryption: -
  PeerDiscovery: -
        Targets: -
    Connections: -
          Peers: -
 TrustedSubnets: -
"""
    assert render_connections({}) == render_peers({}) == render_targets({}) == ""


def test_partial_entries_render_dashes() -> None:
    report: dict[str, Any] = {"Router": {
        "Connections": [{}, {"Address": "1.2.3.4:6783", "Outbound": True, "Attrs": "junk"}],
        "Peers": [{"Connections": [{}]}, "junk", {"Name": "n", "Connections": None}],
        "Targets": ["a", None, 3],
        "ProtocolMaxVersion": 2,
    }, "IPAM": {}}
    assert render_connections(report) == "-- -                     -\n-> 1.2.3.4:6783          -\n"
    assert render_peers(report) == (
        "-(-)\n   -- -                     -(-)                                  -\n-(-)\nn(-)\n")
    assert render_targets(report) == "a\n-\n3\n"
    status = render_status(report)
    assert "       Protocol: - 2\n" in status
    assert "          Peers: 3\n" in status
    assert status.endswith("""
        Service: ipam
         Status: -
          Range: -
  DefaultSubnet: -
""")


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["Router", "Peers", "Connections", "Targets", "Name", "IPAM", "Attrs",
                         "Outbound", "Established", "State", "Address", "VersionCheck"]),
        inner, max_size=4),
    max_leaves=20,
))
def test_arbitrary_shapes_never_raise(report: Any) -> None:
    data = report if isinstance(report, dict) else {"Router": report}
    for fn in (render_status, render_connections, render_peers, render_targets):
        text = fn(data)
        assert all(line == line.rstrip() for line in text.splitlines())
        assert text == "" or text.endswith("\n")


def test_style_for_state() -> None:
    assert style_for_state("established") == "green"
    assert style_for_state("pending") == style_for_state("retrying") == "yellow"
    assert style_for_state("connecting") == "yellow"
    assert style_for_state("failed") == "red"
    assert style_for_state("bogus") == ""


def test_colorize_styles_state_words() -> None:
    text = colorize(CONNECTIONS_GOLDEN)
    assert text.plain == CONNECTIONS_GOLDEN
    styled = {(CONNECTIONS_GOLDEN[s.start:s.end], str(s.style)) for s in text.spans}
    assert ("established", "green") in styled
    assert ("pending", "yellow") in styled
    assert ("failed", "red") in styled
    assert ("connecting", "yellow") in styled


def test_import_does_not_load_rich() -> None:
    code = ("import sys, weave_cli.render, weave_cli.template; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'rich'], 'rich imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
