"""N routers over real ConnectionProtocol byte streams on a virtual clock (see harness.py)."""

from __future__ import annotations

import random

import pytest
from harness import SimNet, addr, name

from weave_cli.router.mesh import Close, MeshCore
from weave_cli.router.protocol import MessageTag, encode_frame


def star(n: int, **kw: object) -> SimNet:
    """Everyone is launched with peer 1 as its only target."""
    return SimNet(n, targets=lambda i: [addr(1)] if i != 1 else [], **kw)  # type: ignore[arg-type]


def closes(net: SimNet) -> list[tuple[int, str]]:
    """Record every Close action a router emits, as (router, reason)."""
    seen: list[tuple[int, str]] = []
    carry = net._carry_out

    def spy(i: int, actions: list[object], t: float) -> None:
        seen.extend((i, a.reason) for a in actions if isinstance(a, Close))
        carry(i, actions, t)

    net._carry_out = spy  # type: ignore[method-assign]
    return seen


def assert_consistent(net: SimNet) -> None:
    """Status of every router lists the same peers, self first, and routes to all of them."""
    for i in sorted(net.alive):
        st = net.cores[i].status(net.now)
        peers = st["Peers"]
        assert peers[0]["Name"] == str(name(i))  # type: ignore[index]
        assert {p["Name"] for p in peers} == {str(name(j)) for j in net.alive}  # type: ignore[union-attr]
        dests = {r["Dest"] for r in st["UnicastRoutes"]}  # type: ignore[union-attr]
        assert dests == {str(name(j)) for j in net.alive}
        for conn in st["Connections"]:  # type: ignore[union-attr]
            assert conn["State"] == "established" or conn["Info"] or conn["State"] == "connecting"


@pytest.mark.parametrize("n", [3, 8, 16])
def test_seed_star_becomes_a_full_mesh_with_identical_views(n: int) -> None:
    net = star(n)
    assert net.run_until(30, lambda: net.converged(full_mesh=True))
    net.run_for(1)
    assert net.converged(full_mesh=True)
    assert sorted(net.links()) == sorted((i, j) for i in range(1, n + 1)
                                         for j in range(1, n + 1) if i != j)
    assert_consistent(net)
    assert net.cores[2].status(net.now)["Targets"] == [addr(1)]


def test_without_discovery_a_star_stays_a_star_and_routes_go_via_the_hub() -> None:
    net = star(6, configure=lambda i: {"discovery": False})
    assert net.run_until(30, lambda: net.converged())
    net.run_for(60)
    assert [len(net.cores[i].active) for i in range(1, 7)] == [5, 1, 1, 1, 1, 1]
    routes = {r["Dest"]: r["Via"] for r in net.cores[2].status(net.now)["UnicastRoutes"]}  # type: ignore[union-attr]
    assert routes[str(name(5))] == str(name(1))
    hub = {r["Source"]: r["Via"] for r in net.cores[1].status(net.now)["BroadcastRoutes"]}  # type: ignore[union-attr]
    assert sorted(hub[str(name(3))]) == sorted(str(name(j)) for j in (2, 4, 5, 6))
    assert_consistent(net)


def test_killing_the_seed_keeps_the_rest_connected_and_gcs_it() -> None:
    net = star(8)
    assert net.run_until(30, lambda: net.converged(full_mesh=True))
    net.kill(1)
    rest = set(range(2, 9))
    assert net.run_for(30, lambda: net.converged(rest, full_mesh=True))
    net.run_for(5)
    for i in rest:
        assert name(1) not in net.cores[i].topology
        st = net.cores[i].status(net.now)
        target = [c for c in st["Connections"] if c["Address"] == f"{addr(1)}:6783"]  # type: ignore[union-attr, index]
        assert target and target[0]["State"] in {"failed", "retrying", "connecting"}
    assert_consistent(net)


def test_partition_then_heal_reconverges() -> None:
    net = star(8, configure=lambda i: {"gossip_interval": 10.0})
    assert net.run_until(30, lambda: net.converged(full_mesh=True))
    left, right = {1, 2, 3, 4}, {5, 6, 7, 8}
    net.partition(left, right)
    assert net.run_for(120, lambda: net.converged(left) and net.converged(right))
    assert all(name(5) not in net.cores[i].topology for i in left)
    net.heal()
    assert net.run_for(300, lambda: net.converged(full_mesh=True))
    assert_consistent(net)


def test_conn_limit_is_never_exceeded() -> None:
    limit = 3
    net = SimNet(8, targets=lambda i: [addr(i - 1)] if i > 1 else [],
                 configure=lambda i: {"conn_limit": limit})
    peak = {i: 0 for i in range(1, 9)}

    def watch(i: int, _t: float) -> None:
        core = net.cores[i]
        peak[i] = max(peak[i], len(core.conns) + len(core.dialling))

    net.observers.append(watch)
    seen = closes(net)
    assert net.run_until(60, lambda: net.converged())
    net.run_for(120)
    assert net.converged()
    assert max(peak.values()) <= limit
    assert any(reason == f"Connection limit reached ({limit})" for _, reason in seen)
    assert all(net.cores[i].status(net.now)["ConnLimit"] == limit for i in net.alive)


def test_simultaneous_dials_collapse_to_one_connection_on_both_sides() -> None:
    everyone = [addr(j) for j in range(1, 7)]
    net = SimNet(6, targets=lambda i: [a for a in everyone if a != addr(i)])
    seen = closes(net)
    assert net.run_until(30, lambda: net.converged(full_mesh=True))
    net.run_for(10)
    assert len(net.links()) == 6 * 5
    for i in net.alive:
        assert len(net.cores[i].conns) == 5
        states = [c["State"] for c in net.cores[i].status(net.now)["Connections"]]  # type: ignore[union-attr, index]
        assert states == ["established"] * 5
    assert any("duplicate connection" in reason for _, reason in seen)
    # the survivor of each pair was dialled by the lower name
    for i in net.alive:
        for peer, cid in net.cores[i].active.items():
            assert net.cores[i].conns[cid].outbound == (name(i) < peer)


def test_lossy_links_still_converge_via_anti_entropy() -> None:
    net = star(8, loss=0.2, seed=3, configure=lambda i: {"gossip_interval": 5.0})
    assert net.run_until(600, lambda: net.converged(full_mesh=True))
    assert_consistent(net)


def test_random_resets_heal() -> None:
    net = star(8, seed=5)
    assert net.run_until(30, lambda: net.converged(full_mesh=True))
    rng = random.Random(9)
    for _ in range(10):
        i, j = rng.choice(net.links())
        net.reset(i, j)
        net.run_for(rng.uniform(0, 0.01))
    assert net.run_for(200, lambda: net.converged(full_mesh=True))


@pytest.mark.parametrize("garbage", [
    b"\xff" * 16,  # an absurd frame length
    encode_frame(MessageTag.GOSSIP, b"\x05abc"),  # a truncated gossip header
    encode_frame(MessageTag.GOSSIP, b"\x08topology" + bytes(6) + b"\x01\xff\xff"),  # bad entries
])
def test_garbage_on_one_connection_closes_only_that_one(garbage: bytes) -> None:
    net = star(5)
    assert net.run_until(30, lambda: net.converged(full_mesh=True))
    seen = closes(net)
    before = net.cores[2].termination_count
    assert net.inject(3, 2, garbage)
    net.run_for(0.0005)
    assert [i for i, _ in seen] == [2]
    assert net.cores[2].termination_count == before + 1
    assert len(net.cores[2].active) == 3 and len(net.cores[4].active) == 4
    assert net.run_for(60, lambda: net.converged(full_mesh=True))


def test_a_restarted_peer_rejoins_and_wins_over_its_old_incarnation() -> None:
    net = star(5)
    assert net.run_until(30, lambda: net.converged(full_mesh=True))
    old: MeshCore = net.cores[3]
    old_version = net.cores[2].topology.entries[name(3)].version
    net.kill(3)
    net.run_for(0.002)
    new = net.start(3)  # same name, new uid, version starts at 1; peers still hold the old
    net.call(3, lambda c, now: c.connect([addr(1)], now))
    assert net.run_for(60, lambda: net.converged(full_mesh=True))
    assert all(net.cores[i].topology.entries[name(3)].uid == new.config.uid for i in net.alive)
    assert new.topology.local.version > old_version and new.config.uid != old.config.uid
