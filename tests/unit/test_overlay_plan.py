"""Forwarding plans: fastdp peers in the VXLAN FDB, the rest pinned to the sleeve."""

from __future__ import annotations

from weave_cli.overlay import plan
from weave_cli.router.peer import PeerName

A, B, C, ME = (PeerName(n) for n in (0x020000000001, 0x020000000002, 0x020000000003, 0x2A))
M1, M2, M3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def test_fastdp_peers_in_vxlan_fdb_and_others_on_the_sleeve() -> None:
    links = {A: ("fastdp", "198.18.0.1"), B: ("sleeve", "198.18.0.2")}
    owner = {M1: A, M2: B, M3: C}
    want = plan.forwarding(links, owner, reachable={A, B, C})
    assert want.vxlan == {plan.FLOOD_MAC: frozenset({"198.18.0.1"}),
                          M1: frozenset({"198.18.0.1"})}
    assert want.bridge == {M1: "vxlan", M2: "sleeve", M3: "sleeve"}


def test_unreachable_owners_and_pending_links_get_no_entries() -> None:
    links = {A: ("none", "198.18.0.1")}
    want = plan.forwarding(links, {M1: A, M3: C}, reachable=set())
    assert want.vxlan == {} and want.bridge == {}


def test_diff_round_trip() -> None:
    links = {A: ("fastdp", "198.18.0.1"), B: ("fastdp", "198.18.0.2")}
    want = plan.forwarding(links, {M1: A, M2: B}, {A, B})
    changes = plan.diff(plan.Forwarding(), want)
    assert (plan.FLOOD_MAC, "198.18.0.2") in changes.vxlan_add
    assert not plan.diff(want, want)
    moved = plan.forwarding({A: ("fastdp", "198.18.0.1"), B: ("sleeve", "198.18.0.2")},
                            {M1: A, M2: B}, {A, B})
    change = plan.diff(want, moved)
    assert change.vxlan_del == [(plan.FLOOD_MAC, "198.18.0.2"), (M2, "198.18.0.2")]
    assert change.bridge_set == [(M2, "sleeve")]
    gone = plan.diff(want, plan.Forwarding())
    assert {m for m, _ in gone.bridge_del} == {M1, M2}


def test_sleeve_config_names_relayed_and_sleeve_peers_only() -> None:
    links = {A: ("fastdp", "198.18.0.1"), B: ("sleeve", "198.18.0.2")}
    routes = {A: A, B: B, C: B}
    cfg = plan.sleeve_config(ME, links, routes, {M1: A, M3: C}, 6783)
    assert cfg["sleeve_peers"] == sorted([str(B), str(C)])
    assert cfg["routes"] == {str(A): str(A), str(B): str(B), str(C): str(B)}
    assert cfg["neighbours"] == {str(A): ["198.18.0.1", 6783], str(B): ["198.18.0.2", 6783]}
    assert cfg["macs"] == {M1: str(A), M3: str(C)}
