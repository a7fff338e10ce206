"""The IPAM task: the one asyncio task that owns the allocator and its database.

Everything else — HTTP handlers, the ``ipam`` gossip channel in the mesh task — only appends
closures to ``inbox`` (``submit``/``query``) and awaits futures. ``run`` applies them in order,
ticks the allocator every ``TICK`` seconds, then carries out what the allocator asked for:

1. every ``Persist`` is written to SQLite, one transaction per logical change, *before*
2. any ``Broadcast``/``Unicast`` goes to the mesh and any waiting client is answered.

So an address is never returned, and ring or Paxos state never leaves this host, before it is
durable. A failed write stops the task (the router exits and its supervisor restarts it from the
database, which holds either the old or the new state).

After each turn it publishes an immutable ``PublishedState`` (a ring copy and the full gossip
payload) for the channel's checks and anti-entropy, and refreshes which peers are reachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from weave_cli.errors import IPAMDisabledError, IPAMUnavailableError, UsageError, WeaveError
from weave_cli.ipam.address import CIDR
from weave_cli.ipam.allocator import Allocator
from weave_cli.ipam.allocator_wire import (
    Broadcast,
    Conflict,
    Failed,
    Pending,
    Persist,
    Reply,
    Result,
    Unicast,
    UnicastKind,
    decode_unicast,
)
from weave_cli.ipam.channel import PublishedState
from weave_cli.ipam.report import ipam_report
from weave_cli.ipam.store import IPAMStore
from weave_cli.router.peer import PeerName

log = logging.getLogger("weave.ipam")
T = TypeVar("T")
TICK = 2.0  # allocator timer: re-propose, re-ask for space, report free counts
RMPEER_SETTLE = 1.0  # after rmpeer, wait this long for a concurrent takeover to show up


class MeshPort(Protocol):
    """What the IPAM task needs from the mesh (implemented by the daemon over the driver)."""

    def broadcast(self, payload: bytes) -> None: ...

    def unicast(self, dst: PeerName, payload: bytes) -> None: ...

    async def peers(self) -> dict[PeerName, tuple[str, bool]]:
        """Every peer the topology knows: name -> (nickname, reachable now)."""
        ...

    async def flush(self) -> None:
        """Return once what was handed to the mesh so far has been written to the sockets."""
        ...


class IPAMService:
    def __init__(
        self,
        alloc: Allocator,
        store: IPAMStore,
        mesh: MeshPort,
        *,
        clock: Callable[[], float],
        timeout: float,
    ) -> None:
        self.alloc, self.store, self.mesh = alloc, store, mesh
        self.clock, self.timeout = clock, timeout
        self.inbox: deque[Callable[[float], None]] = deque()
        self.wakeup = asyncio.Event()
        self.waiting: dict[int, asyncio.Future[str]] = {}
        self.answers: list[tuple[asyncio.Future[Any], Any]] = []  # resolved after persisting
        self.ring_waiters: list[asyncio.Future[None]] = []
        self.nicknames: dict[PeerName, str] = {alloc.me: ""}
        for text, nick in store.load_nicknames().items():  # peers seen before a restart
            try:
                self.nicknames[PeerName.parse(text)] = nick
            except ValueError:
                continue
        self.reachable: set[PeerName] = set()
        self.published = PublishedState(alloc.ring.copy(), alloc.full_state())

    # -- the owner task ------------------------------------------------------------------------

    def submit(self, fn: Callable[[float], None]) -> None:
        self.inbox.append(fn)
        self.wakeup.set()

    async def query(self, fn: Callable[[float], T]) -> T:
        """Run ``fn`` inside the IPAM task; its result is handed over after the turn's writes."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def apply(now: float) -> None:
            try:
                self.answers.append((fut, fn(now)))
            except WeaveError as err:
                if not fut.done():
                    fut.set_exception(err)

        self.submit(apply)
        return await fut

    def deliver(self, kind: str, src: PeerName, payload: bytes) -> None:
        """From the gossip channel (mesh task): hand a checked payload to the allocator."""

        def apply(_now: float) -> None:
            if kind == "gossip":
                self.alloc.on_gossip(src, payload)
            else:
                self.alloc.on_unicast(src, payload)

        self.submit(apply)

    async def run(self) -> None:
        await self._refresh_peers()
        next_tick = self.clock()
        while True:
            now = self.clock()
            if not self.inbox and now < next_tick:
                self.wakeup.clear()
                try:
                    await asyncio.wait_for(self.wakeup.wait(), next_tick - now)
                except asyncio.TimeoutError:
                    pass
            now = self.clock()
            while self.inbox:
                try:
                    self.inbox.popleft()(now)
                except WeaveError as err:  # a refused ring or message: the allocator is unchanged
                    log.warning("IPAM: %s", err.message)
            ticked = now >= next_tick
            if ticked:
                next_tick = now + TICK
                # Reachability first: a tick then asks peers that are up now for space, and what
                # peer_gone queues goes out in this turn (not one tick late).
                await self._refresh_peers()
                self.alloc.tick(now)
            self._carry_out()

    def _carry_out(self) -> None:
        actions = self.alloc.actions()
        for action in actions:
            if isinstance(action, Persist):
                self.store.apply(action.change)  # raises: the task fails before anything leaves
        for action in actions:
            if isinstance(action, Broadcast):
                self.mesh.broadcast(action.payload)
            elif isinstance(action, Unicast):
                self.mesh.unicast(action.dst, action.payload)
                self._unseen_donor(action)
            elif isinstance(action, Reply):
                fut = self.waiting.pop(action.request_id, None)
                if fut is not None and not fut.done():
                    if isinstance(action.result, Failed):
                        fut.set_exception(UsageError(action.result.message))
                    else:
                        fut.set_result(action.result)
            elif isinstance(action, Conflict):
                for message in action.messages:
                    log.error("IPAM conflict: %s", message)
                if action.idents:
                    log.error("IPAM conflict affects addresses of: %s", ", ".join(action.idents))
        answers, self.answers = self.answers, []
        for fut, value in answers:
            if not fut.done():
                fut.set_result(value)
        if not self.alloc.ring.is_empty():
            for waiter in self.ring_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self.ring_waiters.clear()
        state = self.alloc.full_state()
        if state != self.published.full_state:
            self.published = PublishedState(self.alloc.ring.copy(), state)

    def _unseen_donor(self, action: Unicast) -> None:
        """A space request to a peer the last refresh did not see reachable (one that entered
        the ring since) may have no route: the mesh drops it silently and the allocator would
        wait SPACE_RETRY for an answer. Count that peer gone until the next refresh, so the
        allocator asks a donor we know we reach at once."""
        if action.dst in self.reachable:
            return
        if decode_unicast(action.payload).kind is UnicastKind.SPACE_REQUEST:
            self.submit(lambda _now: self.alloc.peer_gone(action.dst))

    async def _refresh_peers(self) -> None:
        self._apply_peers(await self.mesh.peers())

    def _apply_peers(self, known: dict[PeerName, tuple[str, bool]]) -> None:
        learned = {
            n: nick for n, (nick, _) in known.items() if nick and self.nicknames.get(n) != nick
        }
        if learned:
            self.nicknames.update(learned)
            self.store.save_nicknames({str(n): v for n, v in self.nicknames.items() if v})
        self.reachable = {name for name, (_, up) in known.items() if up}
        for name in {e.peer for e in self.alloc.ring.entries} - {self.alloc.me}:
            if name in self.reachable:
                self.alloc.peer_back(name)
            else:
                self.alloc.peer_gone(name)

    # -- requests (any task) ---------------------------------------------------------------------

    def _track(self, result: Result) -> str | Failed | tuple[int, asyncio.Future[str]]:
        """In the owner task: register a waiting request at once, before this turn's replies
        are carried out (a request can be answered in the very turn that queued it)."""
        if not isinstance(result, Pending):
            return result
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[result.request_id] = fut
        return result.request_id, fut

    async def _outcome(self, tracked: str | Failed | tuple[int, asyncio.Future[str]]) -> str:
        if isinstance(tracked, Failed):
            raise UsageError(tracked.message)
        if isinstance(tracked, str):
            return tracked
        rid, fut = tracked
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except asyncio.TimeoutError:
            # The words describe what this request waited for: read them before withdrawing it
            # (without it, a peer with nothing else pending would say 'ready').
            words = await self.query(lambda _now: (self._words(), self.alloc.cancel(rid))[0])
            self.waiting.pop(rid, None)
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                return fut.result()  # answered while we were withdrawing it
            raise IPAMUnavailableError(words) from None

    def _words(self) -> str:
        return self.alloc.status_words(self.reachable)

    async def allocate(self, ident: str, subnet: CIDR | None) -> str:
        return await self._outcome(
            await self.query(lambda now: self._track(self.alloc.allocate(ident, subnet, now)))
        )

    async def claim(self, ident: str, cidr: CIDR, no_error_on_unknown: bool = False) -> str:
        def apply(now: float) -> str | Failed | tuple[int, asyncio.Future[str]]:
            if no_error_on_unknown and self.alloc.ring.is_empty():
                return str(cidr)  # the original: a pre-claim before any ring is not an error
            return self._track(self.alloc.claim(ident, cidr, now))

        return await self._outcome(await self.query(apply))

    async def free(self, ident: str, addr: str | None = None) -> int:
        return await self.query(lambda _now: self.alloc.free(ident, addr))

    async def lookup(self, ident: str, subnet: CIDR | None) -> list[str]:
        return await self.query(lambda _now: self.alloc.lookup(ident, subnet))

    async def owned(self) -> dict[str, list[str]]:
        return await self.query(
            lambda _now: {i: [str(c) for c in cs] for i, cs in self.alloc.owned.items()}
        )

    async def wait_ring(self) -> None:
        """``weave prime``: start forming the ring; wait (at most the timeout) until it exists."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def apply(now: float) -> None:
            if not self.alloc.prime(now):
                self.ring_waiters.append(waiter)
            elif not waiter.done():
                waiter.set_result(None)

        self.submit(apply)
        try:
            await asyncio.wait_for(waiter, self.timeout)
        except asyncio.TimeoutError:
            raise IPAMUnavailableError(await self.query(lambda _now: self._words())) from None

    async def report(self) -> dict[str, Any]:
        return await self.query(
            lambda _now: ipam_report(self.alloc, self.nicknames, self.reachable)
        )

    async def rmpeer(self, who: str) -> tuple[int, str, list[str]]:
        """Take over the ranges of the dead peer ``who`` (name or nickname): (addresses taken,
        the peer's name, conflicts over ranges we hold that appeared meanwhile)."""
        await self._refresh_peers_now()

        def apply(_now: float) -> tuple[int, PeerName, int]:
            name = self._resolve(who)
            if name in self.reachable:
                raise UsageError(
                    f"peer {who} is connected; rmpeer is only for peers that are dead",
                    "stop weave there with 'weave reset', which hands its ranges over",
                )
            seen = len(self.alloc.own_conflicts)
            count, _ = self.alloc.rmpeer(name)
            return count, name, seen

        count, name, seen = await self.query(apply)
        await asyncio.sleep(RMPEER_SETTLE)
        conflicts = await self.query(lambda _now: self.alloc.own_conflicts[seen:])
        return count, str(name), list(dict.fromkeys(conflicts))

    def _resolve(self, who: str) -> PeerName:
        name: PeerName | None
        try:
            name = PeerName.parse(who)
        except ValueError:
            matches = [n for n, nick in self.nicknames.items() if nick == who]
            name = matches[0] if len(matches) == 1 else None
            if len(matches) > 1:
                raise UsageError(
                    f"nickname {who} is used by several peers", "give the peer name"
                ) from None
        if name is None:
            raise IPAMDisabledError(f"unknown peer {who}")
        if name == self.alloc.me:
            raise UsageError("cannot rmpeer ourselves", "use 'weave reset' on this host")
        if name not in self.nicknames and all(e.peer != name for e in self.alloc.ring.entries):
            raise IPAMDisabledError(f"unknown peer {who}")
        return name

    async def handoff(self) -> tuple[int, str]:
        """``weave reset``: give all our ranges to a live peer if there is one, then refuse
        everything; returns (addresses moved, 'name(nickname)' of the heir or '')."""
        await self._refresh_peers_now()

        def apply(_now: float) -> tuple[int, PeerName | None]:
            owners = {e.peer for e in self.alloc.ring.entries}
            live = sorted(self.reachable - {self.alloc.me})
            dead = sorted(owners - self.reachable - {self.alloc.me})
            heirs = [p for p in live if p in owners] + [p for p in live if p not in owners] + dead
            return self.alloc.handoff(heirs)

        moved, heir = await self.query(apply)
        await self.mesh.flush()
        return moved, f"{heir}({self.nicknames.get(heir, '')})" if heir is not None else ""

    async def _refresh_peers_now(self) -> None:
        known = await self.mesh.peers()
        self.submit(lambda _now: self._apply_peers(known))
