"""Lists and watches the Kubernetes API server: an ``Informer`` per resource kind, and
``KubeWatch``, the policy controller's three informers over one ``ApiSession``.

Protocol (one informer, forever): LIST ``?limit=500``, following ``continue`` tokens to the
last page, and take the list's ``metadata.resourceVersion`` (RV); then WATCH
``?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N``, reading its
newline-delimited JSON events and moving RV to each event object's resourceVersion (BOOKMARK
events included). Then:

* the watch ends normally (the server's timeout): watch again from RV, no relist;
* an ERROR event with code 410, or HTTP 410 (RV compacted away, ``continue`` token expired):
  relist at once (a second 410 in a row first waits a backoff delay);
* anything else (connection refused or reset, a timeout, a status other than 200, bad JSON, an
  event line over 4 MiB, a list page over 64 MiB, a field missing or of the wrong type): the
  request failed; log it (once per outage), wait a backoff delay, relist.

Messages: ``emit`` is called synchronously with each, in the order things happen, and must not
block (``queue.put_nowait`` of an ``asyncio.Queue`` is the usual ``emit``):

* ``Synced(kind, objects)`` after each complete LIST: every object of the kind by key, and the
  consumer REPLACES its view of the kind with it. A LIST that fails on any page delivers
  nothing, and nothing else ever removes what the consumer holds: a failure only delays news.
* ``Upsert(kind, key, obj)`` for ADDED and MODIFIED, ``Delete(kind, key)`` for DELETED.
* ``Health(kind, ok, reason)`` when the state changes: ok False when a request failed, with a
  short reason of our own making (a Status ``reason`` word at most from the server, never its
  free text, never the token); ok True right after the ``Synced`` of the next complete LIST
  (and after the first).

Keys are ``namespace/name`` for pods and networkpolicies, ``name`` for namespaces. Objects are
the decoded dicts as the server sent them (list items usually lack kind/apiVersion); only
``metadata.name``, ``metadata.namespace`` and ``metadata.resourceVersion`` are checked
(non-empty strings of at most 1 KiB; a ``continue`` token may have 16 KiB). The informer
keeps no copy of the objects, only the last RV. Resource versions are opaque and never
compared: ordering comes from the single watch stream (the API server sends a key's changes in
order) and no reordering is done.
An exception raised by ``emit`` is the consumer's bug and ends ``run`` (``KubeWatch.run``: in an
``ExceptionGroup``).

Backoff: ``min_backoff`` (0.5 s) doubling to ``max_backoff`` (30 s), each delay stretched by up
to half of itself at random (``rand``), never above ``max_backoff``; it starts over once a watch
delivers an event or runs its course. A watch that ends normally within ``SHORT_WATCH`` of its
start with no event also waits a delay, so a server that closes every watch is not spun on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from weave_cli.errors import KubeRequestError
from weave_cli.npc.kubeconf import (
    ApiConfig,
    ApiSession,
    LineSplitter,
    check_status,
    decode_json,
    describe,
    status_reason,
)

log = logging.getLogger("weave.npc")
Kind = Literal["pods", "namespaces", "networkpolicies"]
KINDS: tuple[Kind, ...] = ("pods", "namespaces", "networkpolicies")
PATHS: dict[Kind, str] = {"pods": "/api/v1/pods", "namespaces": "/api/v1/namespaces",
                          "networkpolicies": "/apis/networking.k8s.io/v1/networkpolicies"}
PAGE_LIMIT = 500
MAX_PAGES = 10_000  # 5 million objects at 500 a page: a server cannot page us forever
MAX_EVENT_BYTES = 4 << 20
MAX_PAGE_BYTES = 64 << 20
WATCH_TIMEOUT = 120  # seconds the server keeps a watch open; re-watching costs nothing
READ_SLACK = 15.0  # the watch's socket read timeout is WATCH_TIMEOUT + this
SHORT_WATCH = 1.0
MIN_BACKOFF, MAX_BACKOFF = 0.5, 30.0
MAX_FIELD = 1024  # a name, namespace or resourceVersion (names: 253, RVs: 20 digits)
MAX_CONTINUE = 16 * 1024  # a continue token is sent back in a URL
EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
# What a failed request can raise; anything else is a bug (or the consumer's) and propagates.
FAILURES = (KubeRequestError, aiohttp.ClientError, OSError, TimeoutError, ValueError)
Obj = dict[str, Any]


@dataclass(frozen=True)
class Synced:
    kind: Kind
    objects: dict[str, Obj]


@dataclass(frozen=True)
class Upsert:
    kind: Kind
    key: str
    obj: Obj


@dataclass(frozen=True)
class Delete:
    kind: Kind
    key: str


@dataclass(frozen=True)
class Health:
    kind: Kind
    ok: bool
    reason: str


Message = Synced | Upsert | Delete | Health
Emit = Callable[[Message], None]


@dataclass(frozen=True)
class Tuning:
    """The informer's numbers; tests shrink them."""

    page_limit: int = PAGE_LIMIT
    watch_timeout: int = WATCH_TIMEOUT
    min_backoff: float = MIN_BACKOFF
    max_backoff: float = MAX_BACKOFF
    max_event_bytes: int = MAX_EVENT_BYTES
    max_page_bytes: int = MAX_PAGE_BYTES


class Backoff:
    """Delays ``low``, 2x, 4x, ... capped at ``high``, each times 1 + rand()/2 (capped too)."""

    def __init__(self, low: float, high: float, rand: Callable[[], float]) -> None:
        self.low, self.high, self.rand, self.current = low, high, rand, low

    def next(self) -> float:
        delay = min(self.high, self.current * (1 + self.rand() / 2))
        self.current = min(self.current * 2, self.high)
        return delay

    def reset(self) -> None:
        self.current = self.low


def _text(meta: Any, field: str) -> str:
    """``meta[field]``: a non-empty string of at most ``MAX_FIELD`` characters."""
    value = meta.get(field) if isinstance(meta, dict) else None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD:
        raise KubeRequestError(f"an object without a valid metadata.{field}")
    return value


def object_key(kind: Kind, obj: Obj) -> str:
    """``namespace/name``, or ``name`` for namespaces; ``KubeRequestError`` when missing."""
    meta = obj.get("metadata")
    name = _text(meta, "name")
    return name if kind == "namespaces" else f"{_text(meta, 'namespace')}/{name}"


class Informer:
    """Lists then watches one kind through ``api``, forever; see the module docstring."""

    def __init__(self, api: ApiSession, kind: Kind, emit: Emit, tuning: Tuning | None = None, *,
                 rand: Callable[[], float] = random.random,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if kind not in PATHS:
            raise ValueError(f"unknown resource kind {kind!r}")
        tuning = tuning or Tuning()
        self.api, self.kind, self.emit, self.tuning = api, kind, emit, tuning
        self.sleep, self.clock = sleep, clock
        self.backoff = Backoff(tuning.min_backoff, tuning.max_backoff, rand)
        self.rv: str | None = None  # of the last list or event delivered
        self.healthy: bool | None = None  # None until the first list or failure
        self.gone = 0  # 410s in a row, with no event in between
        self.lists = self.watches = self.failures = 0
        self._doing = "list"

    async def run(self) -> None:
        relist = True
        while True:
            try:
                if relist:
                    await self._list()
                    relist = False
                await self._watch()
            except FAILURES as err:
                relist = True
                if isinstance(err, KubeRequestError) and err.status == 410:
                    self.gone += 1
                    log.info("%s: resource version %r is gone; relisting", self.kind,
                             (self.rv or "")[:40])
                    if self.gone > 1:
                        await self.sleep(self.backoff.next())
                    continue
                self._failed(f"{self._doing}: {describe(err)}")
                await self.sleep(self.backoff.next())

    async def _list(self) -> None:
        self._doing = "list"
        self.lists += 1
        objects: dict[str, Obj] = {}
        params = {"limit": str(self.tuning.page_limit)}
        for _ in range(MAX_PAGES):
            page = await self.api.get_json(PATHS[self.kind], params,
                                           max_bytes=self.tuning.max_page_bytes)
            if not isinstance(page, dict):
                raise KubeRequestError("a list is not an object")
            meta, items = page.get("metadata"), page.get("items")
            items = [] if items is None else items  # Go's nil slice
            if not isinstance(items, list) or not isinstance(meta, dict):
                raise KubeRequestError("malformed list")
            for item in items:
                if not isinstance(item, dict):
                    raise KubeRequestError("a list item is not an object")
                objects[object_key(self.kind, item)] = item
            rv = _text(meta, "resourceVersion")
            more = meta.get("continue") or ""
            if not isinstance(more, str) or len(more) > MAX_CONTINUE:
                raise KubeRequestError("malformed list continue token")
            if not more:
                break
            params = {"limit": str(self.tuning.page_limit), "continue": more}
        else:
            raise KubeRequestError(f"the list goes on beyond {MAX_PAGES} pages")
        self.rv = rv
        self.emit(Synced(self.kind, objects))
        if self.healthy is not True:
            if self.healthy is False:
                log.info("Kubernetes API: listing %s works again", self.kind)
            self.healthy = True
            self.emit(Health(self.kind, True, "listed"))

    async def _watch(self) -> None:
        assert self.rv is not None
        self._doing = "watch"
        self.watches += 1
        params = {"watch": "1", "resourceVersion": self.rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(self.tuning.watch_timeout)}
        started, events = self.clock(), 0
        read_timeout = self.tuning.watch_timeout + READ_SLACK
        async with self.api.watch(PATHS[self.kind], params, read_timeout=read_timeout) as resp:
            await check_status(resp)
            lines = LineSplitter(self.tuning.max_event_bytes)
            while chunk := await resp.content.readany():
                for line in lines.feed(chunk):
                    if line.strip():
                        self._event(decode_json(line))
                        events += 1
            lines.end()
        if events == 0 and self.clock() - started < SHORT_WATCH:
            await self.sleep(self.backoff.next())
        else:
            self.backoff.reset()

    def _event(self, event: Any) -> None:
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if not isinstance(obj, dict) or not isinstance(kind, str) or kind not in EVENT_TYPES:
            raise KubeRequestError("malformed watch event")
        if kind == "ERROR":
            code = obj.get("code")
            status = code if type(code) is int and 100 <= code <= 599 else None
            raise KubeRequestError(f"ERROR event {status}{status_reason(obj)}", status)
        rv = _text(obj.get("metadata"), "resourceVersion")
        if kind != "BOOKMARK":
            key = object_key(self.kind, obj)
            self.emit(Delete(self.kind, key) if kind == "DELETED" else Upsert(self.kind, key, obj))
        self.rv = rv
        self.gone = 0
        self.backoff.reset()

    def _failed(self, reason: str) -> None:
        self.failures += 1
        if self.healthy is False:
            log.debug("Kubernetes API: %s: still failing: %s", self.kind, reason)
            return
        log.warning("Kubernetes API: %s: %s; retrying with backoff (at most %gs)",
                    self.kind, reason, self.tuning.max_backoff)
        self.healthy = False
        self.emit(Health(self.kind, False, reason))


class KubeWatch:
    """One informer per kind in ``kinds``, all over one session of ``config``. ``run`` runs
    until cancelled; cancelling it cancels the informers and then closes the session."""

    def __init__(self, config: ApiConfig, emit: Emit, tuning: Tuning | None = None, *,
                 kinds: Iterable[Kind] = KINDS, rand: Callable[[], float] = random.random,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = ApiSession(config)
        self.informers = [Informer(self.api, kind, emit, tuning, rand=rand, sleep=sleep,
                                   clock=clock) for kind in kinds]

    async def run(self) -> None:
        async with self.api, asyncio.TaskGroup() as group:
            for informer in self.informers:
                group.create_task(informer.run(), name=f"informer-{informer.kind}")
