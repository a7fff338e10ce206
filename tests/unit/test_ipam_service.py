"""The IPAM task against a real SQLite file and a recording mesh; the gossip channel's checks."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from weave_cli.errors import (
    IPAMDisabledError,
    IPAMUnavailableError,
    ProtocolError,
    UsageError,
)
from weave_cli.ipam import service as service_module
from weave_cli.ipam.address import CIDR
from weave_cli.ipam.allocator import Allocator
from weave_cli.ipam.allocator_wire import (
    Consensus,
    Gossip,
    Observer,
    Seed,
    Unicast,
    UnicastKind,
    decode_unicast,
    encode_gossip,
)
from weave_cli.ipam.channel import DIGEST, REPLY, IPAMChannel
from weave_cli.ipam.ring import Ring
from weave_cli.ipam.service import IPAMService
from weave_cli.ipam.store import IPAMStore
from weave_cli.router.peer import PeerName

A, B, C = PeerName(0x0A0000000001), PeerName(0x0A0000000002), PeerName(0x0A0000000003)
U = CIDR.parse("10.32.0.0/28")


class RecordingMesh:
    def __init__(self, peers: dict[PeerName, tuple[str, bool]] | None = None) -> None:
        self.sent: list[tuple[str, PeerName | None, bytes]] = []
        self.known = peers or {A: ("a", True)}
        self.flushed = 0

    def broadcast(self, payload: bytes) -> None:
        self.sent.append(("broadcast", None, payload))

    def unicast(self, dst: PeerName, payload: bytes) -> None:
        self.sent.append(("unicast", dst, payload))

    async def peers(self) -> dict[PeerName, tuple[str, bool]]:
        return dict(self.known)

    async def flush(self) -> None:
        self.flushed += 1


def run_with(
    tmp_path: Path,
    alloc: Allocator,
    body: Callable[[IPAMService, IPAMStore, RecordingMesh], Awaitable[Any]],
    mesh: RecordingMesh | None = None,
    timeout: float = 5.0,
) -> Any:
    async def main() -> Any:
        store = IPAMStore.open(tmp_path / "ipam.db", create=True)
        loop = asyncio.get_running_loop()
        m = mesh or RecordingMesh()
        svc = IPAMService(alloc, store, m, clock=loop.time, timeout=timeout)
        task = asyncio.ensure_future(svc.run())
        try:
            return await body(svc, store, m)
        finally:
            task.cancel()
            store.close()

    return asyncio.run(main())


def test_an_address_is_on_disk_before_it_is_returned(tmp_path: Path) -> None:
    alloc = Allocator(A, U, Consensus(1), random.Random(1))

    async def body(svc: IPAMService, store: IPAMStore, _m: RecordingMesh) -> None:
        cidr = await svc.allocate("c1", None)
        assert cidr == "10.32.0.1/28"
        assert store.load().owned == {"c1": ["10.32.0.1/28"]}
        assert await svc.lookup("c1", None) == ["10.32.0.1/28"]
        assert await svc.free("c1") == 1 and store.load().owned == {}

    run_with(tmp_path, alloc, body)


def test_waiting_past_the_timeout_answers_the_status_words(tmp_path: Path) -> None:
    alloc = Allocator(A, U, Consensus(3), random.Random(1))

    async def body(svc: IPAMService, _s: IPAMStore, _m: RecordingMesh) -> None:
        words = r"awaiting consensus \(quorum: 2, known: 1\)"
        with pytest.raises(IPAMUnavailableError, match=words):
            await svc.allocate("c1", None)
        assert (await svc.report())["PendingAllocates"] == []  # the request was withdrawn

    run_with(tmp_path, alloc, body, timeout=0.3)


def test_a_timed_out_allocation_gets_the_words_of_its_own_wait(tmp_path: Path) -> None:
    """The words are read before the request is withdrawn: our space is used up and the only
    other owner is unreachable, which is what the client waited for (not 'ready')."""
    alloc = Allocator(A, U, Seed((A, B)), random.Random(1))
    mesh = RecordingMesh({A: ("a", True), B: ("b", False)})

    async def body(svc: IPAMService, _s: IPAMStore, _m: RecordingMesh) -> None:
        while alloc.space.num_free(U.host_range()):
            await svc.allocate(f"c{alloc.space.num_free(U.host_range())}", None)
        words = "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead"
        with pytest.raises(IPAMUnavailableError, match=words):
            await svc.allocate("late", None)
        assert (await svc.report())["PendingAllocates"] == []

    run_with(tmp_path, alloc, body, mesh=mesh, timeout=0.3)


def test_a_tick_asks_a_peer_that_came_back_before_that_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reachability is refreshed before the allocator ticks: a waiting allocation asks a peer
    that is up again on the first tick after it came back, not one tick later."""
    monkeypatch.setattr(service_module, "TICK", 0.05)
    alloc = Allocator(A, U, Seed((A, B)), random.Random(1))
    mesh = RecordingMesh({A: ("a", True), B: ("b", False)})
    refreshes, ticks = [0], [0]
    peers, tick = mesh.peers, alloc.tick

    async def counted_peers() -> dict[PeerName, tuple[str, bool]]:
        refreshes[0] += 1
        return await peers()

    def counted_tick(now: float) -> None:
        ticks[0] += 1
        tick(now)

    mesh.peers = counted_peers  # type: ignore[method-assign]
    alloc.tick = counted_tick  # type: ignore[method-assign]

    def asked_b() -> bool:
        return any(
            kind == "unicast"
            and dst == B
            and decode_unicast(data).kind == UnicastKind.SPACE_REQUEST
            for kind, dst, data in mesh.sent
        )

    async def body(svc: IPAMService, _s: IPAMStore, _m: RecordingMesh) -> None:
        while alloc.space.num_free(U.host_range()):
            await svc.allocate(f"c{alloc.space.num_free(U.host_range())}", None)
        waiting = asyncio.ensure_future(svc.allocate("late", None))
        await asyncio.sleep(0.2)
        assert not asked_b()  # B is unreachable: nobody to ask
        seen = refreshes[0]
        while refreshes[0] == seen:  # a turn has just refreshed and ticked
            await asyncio.sleep(0.001)
        mesh.known[B] = ("b", True)
        after = ticks[0]
        while ticks[0] == after:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)
        assert asked_b()
        waiting.cancel()

    run_with(tmp_path, alloc, body, mesh=mesh, timeout=5.0)


def test_refusals_are_usage_errors(tmp_path: Path) -> None:
    alloc = Allocator(A, U, Seed((A, B)), random.Random(1))

    async def body(svc: IPAMService, _s: IPAMStore, _m: RecordingMesh) -> None:
        with pytest.raises(UsageError, match="owned by other peer"):
            await svc.claim("c1", CIDR.parse("10.32.0.9/28"))
        assert await svc.claim("c2", CIDR.parse("192.168.1.1/24")) == "192.168.1.1/24"

    run_with(tmp_path, alloc, body)


def test_rmpeer_refuses_live_and_unknown_peers_and_takes_over_dead_ones(tmp_path: Path) -> None:
    alloc = Allocator(A, U, Seed((A, B)), random.Random(1))
    mesh = RecordingMesh({A: ("a", True), B: ("b", True), C: ("c", True)})

    async def body(svc: IPAMService, store: IPAMStore, m: RecordingMesh) -> None:
        with pytest.raises(UsageError, match="connected"):
            await svc.rmpeer("b")
        with pytest.raises(IPAMDisabledError, match="unknown peer nobody"):
            await svc.rmpeer("nobody")
        with pytest.raises(UsageError, match="ourselves"):
            await svc.rmpeer(str(A))
        m.known[B] = ("b", False)
        count, name, conflicts = await svc.rmpeer("b")
        assert (count, name, conflicts) == (8, str(B), [])
        assert Ring.from_bytes(store.load().ring or b"").owned_ranges(B) == []
        assert any(kind == "broadcast" for kind, _, _ in m.sent)

    run_with(tmp_path, alloc, body, mesh=mesh)


def test_handoff_prefers_a_live_peer_with_ranges_and_flushes(tmp_path: Path) -> None:
    alloc = Allocator(A, U, Seed((A, B)), random.Random(1))
    mesh = RecordingMesh({A: ("a", True), B: ("b", False), C: ("c", True)})

    async def body(svc: IPAMService, _s: IPAMStore, m: RecordingMesh) -> None:
        moved, heir = await svc.handoff()
        assert (moved, heir) == (8, f"{C}(c)")  # B owns space but is unreachable
        assert m.flushed == 1
        with pytest.raises(UsageError, match="leaving"):
            await svc.allocate("c1", None)

    run_with(tmp_path, alloc, body, mesh=mesh)


def test_prime_waits_for_the_ring(tmp_path: Path) -> None:
    alloc = Allocator(A, U, Consensus(1), random.Random(1))

    async def body(svc: IPAMService, _s: IPAMStore, _m: RecordingMesh) -> None:
        await svc.wait_ring()
        assert (await svc.report())["Status"] == "ready"

    run_with(tmp_path, alloc, body)
    observer = Allocator(A, U, Observer(), random.Random(1))

    async def lonely(svc: IPAMService, _s: IPAMStore, _m: RecordingMesh) -> None:
        with pytest.raises(IPAMUnavailableError, match="priming"):
            await svc.wait_ring()

    run_with(tmp_path / "..", observer, lonely, timeout=0.3)


def test_a_donor_not_seen_reachable_is_not_waited_on(tmp_path: Path) -> None:
    """A ring that arrives between two peer refreshes can name a donor the mesh has no route
    to yet; the mesh drops that space request silently. The task must not wait SPACE_RETRY
    (5 s) for it: it asks a donor it knows it reaches at once."""
    from weave_cli.ipam.allocator_wire import UnicastKind, decode_unicast

    seeded = Allocator(C, U, Seed((B, C)), random.Random(1))
    mesh = RecordingMesh({A: ("a", True), C: ("c", True)})  # B: not (yet) in our topology

    def asked(m: RecordingMesh) -> list[PeerName]:
        return [dst for kind, dst, payload in m.sent if kind == "unicast" and dst is not None
                and decode_unicast(payload).kind is UnicastKind.SPACE_REQUEST]  # fmt: skip

    async def body(svc: IPAMService, _s: IPAMStore, m: RecordingMesh) -> None:
        pending = asyncio.ensure_future(svc.allocate("c1", None))
        await asyncio.sleep(0.05)
        svc.deliver("gossip", C, seeded.full_state())  # the ring: B and C own everything
        for _ in range(20):
            await asyncio.sleep(0.01)
            if C in asked(m):
                break
        assert asked(m)[:2] == [B, C]
        pending.cancel()

    for seed in range(20):  # a seed whose first pick is B, the donor we cannot reach
        alloc = Allocator(A, U, Observer(), random.Random(seed))
        probe = Allocator(A, U, Observer(), random.Random(seed))
        probe.allocate("c1")
        probe.on_gossip(C, seeded.full_state())
        if [a.dst for a in probe.actions() if isinstance(a, Unicast)][-1:] == [B]:
            break
    run_with(tmp_path, alloc, body, mesh=mesh)


# -- the channel -----------------------------------------------------------------------------


def channel_for(alloc: Allocator) -> tuple[IPAMChannel, list[tuple[str, PeerName, bytes]]]:
    from weave_cli.ipam.channel import PublishedState

    got: list[tuple[str, PeerName, bytes]] = []
    state = PublishedState(alloc.ring.copy(), alloc.full_state())
    return IPAMChannel(lambda: state, lambda k, s, p: got.append((k, s, p))), got


def test_channel_refuses_garbage_and_rings_seeded_by_others() -> None:
    ours = Allocator(A, U, Seed((A, B)), random.Random(1))
    channel, got = channel_for(ours)
    with pytest.raises(ProtocolError):
        channel.on_broadcast(B, b"garbage")
    with pytest.raises(ProtocolError):
        channel.on_unicast(B, b"WAU1\x07")
    other = Allocator(C, U, Seed((C,)), random.Random(1))
    with pytest.raises(ProtocolError, match="seeded by different peers"):
        channel.on_broadcast(C, other.full_state())
    with pytest.raises(ProtocolError):
        channel.on_gossip(C, b"X" + ours.full_state())
    assert got == []


def test_channel_relays_broadcasts_and_answers_only_differing_digests() -> None:
    ours = Allocator(A, U, Seed((A, B)), random.Random(1))
    channel, got = channel_for(ours)
    same = ours.full_state()
    assert channel.on_broadcast(B, same) == same and got == [("gossip", B, same)]
    assert channel.on_gossip(B, DIGEST + same) == ([], None)
    empty = encode_gossip(Gossip(False, b"", b""))
    assert channel.on_gossip(C, DIGEST + empty) == ([REPLY + same], None)
    assert channel.on_gossip(C, REPLY + empty) == ([], None)  # a reply is never answered
    assert channel.digest() == DIGEST + same


def test_channel_logs_why_it_refuses_a_ring(caplog: pytest.LogCaptureFixture) -> None:
    """The mesh drops the connection silently: the reason must reach the router log."""
    channel, _ = channel_for(Allocator(A, U, Seed((A, B)), random.Random(1)))
    other = Allocator(C, U, Seed((C,)), random.Random(1))
    with caplog.at_level(logging.ERROR, "weave.ipam"), pytest.raises(ProtocolError):
        channel.on_gossip(C, DIGEST + other.full_state())
    assert f"refusing gossip from {C}" in caplog.text
    assert "seeded by different peers" in caplog.text


def test_converged_neighbours_do_not_answer_each_others_digests() -> None:
    """The ring bytes name the replica's holder; equal content must still count as equal."""
    ours = Allocator(A, U, Seed((A, B)), random.Random(1))
    theirs = Allocator(B, U, Seed((A, B)), random.Random(1))
    assert ours.full_state() != theirs.full_state()
    channel, got = channel_for(ours)
    assert channel.on_gossip(B, DIGEST + theirs.full_state()) == ([], None)
    assert got == []


def test_nicknames_survive_a_restart_so_rmpeer_by_nickname_still_works(tmp_path: Path) -> None:
    mesh = RecordingMesh({A: ("a", True), B: ("b", True)})

    async def learn(svc: IPAMService, _s: IPAMStore, _m: RecordingMesh) -> None:
        await svc.report()  # one turn after the first refresh

    run_with(tmp_path, Allocator(A, U, Seed((A, B)), random.Random(1)), learn, mesh=mesh)
    alone = RecordingMesh({A: ("a", True)})  # after the restart B is gone from the topology

    async def takeover(svc: IPAMService, _s: IPAMStore, _m: RecordingMesh) -> None:
        count, name, _ = await svc.rmpeer("b")
        assert (count, name) == (8, str(B))

    run_with(tmp_path, Allocator(A, U, Seed((A, B)), random.Random(1)), takeover, mesh=alone)
