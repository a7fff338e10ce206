"""The bridge's plans (weave_cli/net/bridge.py): create, repair, leave alone, refuse."""

from __future__ import annotations

import pytest

from weave_cli.net.bridge import BridgeSpec, plan_bridge, plan_ports, random_mac
from weave_cli.net.errors import DatapathError
from weave_cli.net.links import Link


def link(name: str = "weave", kind: str | None = "bridge", mtu: int = 1376, up: bool = True,
         master: int | None = None, index: int = 5, gen: int | None = 1) -> Link:
    return Link(index, name, kind, mtu, up, master, "02:00:00:00:00:01", None, gen)


def test_absent_bridge_is_created() -> None:
    assert plan_bridge(BridgeSpec(), None) == ["create", "addrgen", "up"]


def test_good_bridge_needs_nothing() -> None:
    assert plan_bridge(BridgeSpec(), link()) == []


def test_drift_is_repaired() -> None:
    assert plan_bridge(BridgeSpec(), link(mtu=1500, up=False, gen=0)) == ["mtu", "addrgen", "up"]


def test_a_foreign_device_is_refused() -> None:
    with pytest.raises(DatapathError, match="is a dummy, not a bridge"):
        plan_bridge(BridgeSpec(), link(kind="dummy"))


def test_bad_mtu() -> None:
    with pytest.raises(ValueError):
        BridgeSpec(mtu=100)


def test_ports_are_plugged_back_and_brought_up() -> None:
    br = link()
    devices = [
        br,
        link("vethwepl0000001", "veth", master=5, index=6),
        link("vethwepl0000002", "veth", master=None, up=False, index=7),
        link("vethwepl0000003", "dummy", master=None, index=8),
        link("eth0", "veth", master=None, index=9),
    ]
    fixes = plan_ports(br, devices)
    assert [(d.name, todo) for d, todo in fixes] == [("vethwepl0000002", ["master", "up"])]


def test_random_mac_is_local_unicast() -> None:
    first = int(random_mac().split(":")[0], 16)
    assert first & 0x02 and not first & 0x01
