"""Container death frees addresses: the router follows the Docker events stream.

``DockerWatcher.run()`` is one asyncio task of the router. It talks to the Docker API directly
over its unix socket (or plain ``tcp://``) with aiohttp, which the router has loaded anyway: no
worker thread blocked in the docker SDK's generator (that thread cannot be cancelled, so it
would outlive a router shutdown), no SDK import (0.4 s, megabytes) in a process that runs for
months. The address comes from ``weave_cli.net.docker.endpoint()``, as for ``weave attach``.

Each connection, in this order (the order is what makes it race-free):

1. open ``GET /events`` filtered to container ``die``/``destroy``: from now on no death is
   missed, the daemon buffers what happens while we reconcile;
2. reconcile: ``held()`` (the idents IPAM holds), *then* the running containers. An ident
   that looks like a container id (64 hex) and is not running is freed: the container died
   while the router or the stream was down. Reading ``held()`` first matters: an ident in it
   was attached while its container ran, so if the container is missing from the later list
   it really died (the other order could free a container attached in between);
3. follow the stream: every ``die`` or ``destroy`` of a container calls ``free(full id)``,
   the ident ``weave attach`` files Docker targets under. Freeing an ident IPAM does not hold
   is a no-op, so the events of containers weave never attached (and ``die`` followed by
   ``destroy``) cost one IPAM query each and change nothing.

No daemon, or the stream ends (dockerd restarted): it logs once, then retries with backoff
from ``MIN_BACKOFF`` doubling to ``MAX_BACKOFF`` (reset by every successful connection), so a
host without Docker pays one failed ``connect()`` every 30 s. ``run`` never returns and never
raises (only ``CancelledError``): a router must not stop because Docker did.

Caveat: every 64-hex ident IPAM holds is taken for a container of *this* daemon. Idents of
another runtime in the same format (CNI sandbox ids from containerd on a host that also runs
dockerd) would be freed by the reconcile; such hosts should not run the watcher.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from weave_cli.net.docker import Endpoint, endpoint

log = logging.getLogger("weave.docker")
MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
CONNECT_TIMEOUT = 10.0
DEATH_ACTIONS = frozenset({"die", "destroy"})
EVENT_FILTERS = json.dumps({"type": ["container"], "event": sorted(DEATH_ACTIONS)})
MAX_EVENT_BYTES = 1 << 20  # a longer line without a newline is not an event; dropped
CONTAINER_ID_RE = re.compile(r"[0-9a-f]{64}")

Free = Callable[[str], Awaitable[object]]
Held = Callable[[], Awaitable[list[str]]]


def is_container_id(ident: str) -> bool:
    """A full Docker container id: exactly 64 lower-case hex digits."""
    return CONTAINER_ID_RE.fullmatch(ident) is not None


def dead_container(event: Any) -> tuple[str, str] | None:
    """(full id, ``die`` or ``destroy``) of the container an event reports dead or removed.

    Only ``Type`` container and ``Action`` exactly ``die``/``destroy`` count (not
    ``exec_die``: a process exec'd into a container ending leaves the container running).
    API versions before 1.44 also send ``status``/``id``; both spellings are read."""
    if not isinstance(event, dict):
        return None
    kind = event.get("Type", "container" if "status" in event else None)
    action = event.get("Action", event.get("status"))
    actor = event.get("Actor")
    ident = (actor.get("ID") if isinstance(actor, dict) else None) or event.get("id")
    if kind != "container" or not isinstance(action, str) or action not in DEATH_ACTIONS:
        return None
    if not isinstance(ident, str):
        return None
    return (ident, action) if is_container_id(ident) else None


def stale(held: Iterable[str], running: Iterable[str]) -> list[str]:
    """The held idents that are container ids of no running container, in order, once each."""
    alive = set(running)
    out: list[str] = []
    for ident in held:
        if is_container_id(ident) and ident not in alive and ident not in out:
            out.append(ident)
    return out


class EventSplitter:
    """Newline-delimited JSON from a byte stream that arrives in arbitrary chunks."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, chunk: bytes) -> list[Any]:
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        if len(self.buf) > MAX_EVENT_BYTES:
            self.buf = b""
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # blank or garbled: skip, the next line is independent
        return out


class Backoff:
    """Delays MIN_BACKOFF, 2x, 4x, ... capped at MAX_BACKOFF; ``reset`` starts over."""

    def __init__(self, low: float = MIN_BACKOFF, high: float = MAX_BACKOFF) -> None:
        self.low, self.high, self.current = low, high, low

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.high)
        return delay

    def reset(self) -> None:
        self.current = self.low


class DockerWatcher:
    """Frees the addresses of dead containers; see the module docstring for the protocol."""

    def __init__(
        self,
        free: Free,
        held: Held,
        *,
        where: Endpoint | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.free, self.held, self.sleep = free, held, sleep
        self.where = where if where is not None else endpoint()
        self.backoff = Backoff()
        self.connected = asyncio.Event()  # set while the stream is open (tests wait on it)
        self.last_error: str | None = None
        self.reconciles = 0

    async def run(self) -> None:
        if self.where is None:
            log.info("Docker events: DOCKER_HOST needs TLS or ssh, which the watcher does not "
                     "speak; addresses of dead containers are not freed automatically")
            await asyncio.Event().wait()  # never returns: the router treats that as failure
        while True:
            try:
                await self._follow()
                self._lost("the event stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - no Docker must never stop the router
                self._lost(_describe(err))
            finally:
                self.connected.clear()
            await self.sleep(self.backoff.next())

    def _lost(self, why: str) -> None:
        if self.last_error is None:
            log.info("Docker events: cannot follow %s (%s); retrying every <= %.0fs",
                     self.where, why, MAX_BACKOFF)
        else:
            log.debug("Docker events: still cannot follow %s (%s)", self.where, why)
        self.last_error = why

    async def _follow(self) -> None:
        import aiohttp

        assert self.where is not None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        if self.where.unix_path:
            conn: aiohttp.BaseConnector = aiohttp.UnixConnector(path=self.where.unix_path)
            base = "http://docker"
        else:
            conn = aiohttp.TCPConnector()
            base = f"http://{self.where.host}:{self.where.port}"
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            params = {"filters": EVENT_FILTERS}
            # Bounded until the headers arrive; the stream itself may then be quiet for days.
            async with asyncio.timeout(CONNECT_TIMEOUT):
                events = await session.get(f"{base}/events", params=params)
            async with events:
                events.raise_for_status()
                log.info("Docker events: following %s", self.where)
                self.last_error = None
                self.backoff.reset()
                self.connected.set()
                await self._reconcile(session, base)
                splitter = EventSplitter()
                async for chunk in events.content.iter_any():
                    for event in splitter.feed(chunk):
                        dead = dead_container(event)
                        if dead is not None:
                            await self._free(dead[0], "died" if dead[1] == "die" else "removed")

    async def _reconcile(self, session: Any, base: str) -> None:
        """Free what IPAM holds for containers that are not running (see step 2)."""
        import aiohttp

        self.reconciles += 1
        try:
            held = await self.held()
        except Exception as err:  # noqa: BLE001 - IPAM busy or failing: try at next connect
            log.warning("Docker events: cannot list IPAM's idents: %s", _describe(err))
            return
        if not any(is_container_id(h) for h in held):
            return  # nothing to check: spare the daemon the listing
        limit = aiohttp.ClientTimeout(total=3 * CONNECT_TIMEOUT)
        async with session.get(f"{base}/containers/json", timeout=limit) as resp:
            resp.raise_for_status()
            running = [str(c.get("Id", "")) for c in await resp.json() if isinstance(c, dict)]
        for ident in stale(held, running):
            await self._free(ident, "is not running (it died while weave was not watching)")

    async def _free(self, ident: str, why: str) -> None:
        try:
            result = await self.free(ident)
        except Exception as err:  # noqa: BLE001 - one failed free must not stop the watcher
            log.warning("Docker events: freeing container %s failed: %s", ident[:12],
                        _describe(err))
            return
        if isinstance(result, int) and not isinstance(result, bool) and result > 0:
            log.info("container %s %s: freed %d address%s", ident[:12], why, result,
                     "" if result == 1 else "es")


def _describe(err: BaseException) -> str:
    text = getattr(err, "message", None) or getattr(err, "strerror", None) or str(err)
    return f"{text or type(err).__name__}"[:200]
