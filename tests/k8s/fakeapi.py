"""A fake Kubernetes API server (aiohttp.web) for the network policy controller's tests.

Just enough of the API for pods, namespaces and networkpolicies (objects in ``store.Store``):
LIST with ``limit``/``continue`` (pages of one snapshot; the token expires, 410, on
``compact()``), WATCH (``?watch=1``: chunked newline-delimited JSON events after
``resourceVersion``; ``""``/``"0"`` first sends every object as ADDED; a version older than the
history gives an ERROR event with code 410; ``timeoutSeconds`` ends the stream; BOOKMARK
events every ``bookmark_interval`` seconds of quiet when asked with ``allowWatchBookmarks``),
and CRUD for the tests. All answers are JSON; errors are Status objects.

    GET               /api/v1/pods                                  list / watch
    GET POST          /api/v1/namespaces/{ns}/pods                  list / watch / create
    GET PUT DELETE    /api/v1/namespaces/{ns}/pods/{name}
    GET POST          /api/v1/namespaces                            list / watch / create
    GET PUT DELETE    /api/v1/namespaces/{name}       (DELETE also deletes what is in it)
    GET               /apis/networking.k8s.io/v1/networkpolicies
    GET POST          /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies
    GET PUT DELETE    /apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}
    POST /fake/compact                      forget the history (old versions: 410)
    POST /fake/expire-watches               every open watch gets an ERROR 410 and ends
    POST /fake/fail  {"n", "status", "body", "verb", "resource"}     see ``fail_next``
    GET  /healthz                           "ok", with or without a token

With a token, every request but ``/healthz`` needs ``Authorization: Bearer TOKEN`` (else 401).
Create answers 201 (409 if the object exists), a missing object 404, a bad body 422, a stale
``metadata.resourceVersion`` on PUT 409; PUT and DELETE answer the object (as deleted).

In-process: ``async with FakeApi(token=...) as api:`` (``api.port``, ``api.url``), or
``port = await api.start(host, port=0, ssl_context=None)`` / ``await api.stop()``, again and
again (the objects stay; pass the old port to come back on it).
Standalone: ``python -m tests.k8s.fakeapi --listen 127.0.0.1:PORT [--state FILE]
[--token-file FILE] [--bookmark-interval S]``; it prints ``listening on HOST:PORT`` once
serving (port 0 picks one) and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hmac
import json
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .store import RESOURCES, Conflict, Gone, Invalid, NotFound, Store

PATH_RE = re.compile(r"/(?P<group>api/v1|apis/networking\.k8s\.io/v1)"
                     r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>pods|namespaces|networkpolicies)"
                     r"(?:/(?P<name>[^/]+))?")
GROUP = {"pods": "api/v1", "namespaces": "api/v1", "networkpolicies": "apis/networking.k8s.io/v1"}
VERBS = ("list", "continue", "watch", "get", "create", "update", "delete")
MAX_SNAPSHOTS = 32


@dataclass
class Failure:
    count: int
    status: int
    body: bytes | None
    verb: str | None
    resource: str | None


@dataclass(frozen=True)
class Seen:
    method: str
    path_qs: str
    authorization: str | None


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def answer(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status(code, reason, message), status=code)


class FakeApi:
    """The fake server. ``store`` holds the objects (tests may change it directly, also while
    the server is stopped); ``requests`` records each API request (method, path and query,
    Authorization header); ``open_watches`` counts the watches being served; ``token`` may be
    changed at any time (None: no check)."""

    def __init__(self, *, token: str | None = None, state_file: Path | None = None,
                 bookmark_interval: float | None = None, history_limit: int = 10_000) -> None:
        self.token = token
        self.store = Store(state_file, history_limit)
        self.bookmark_interval = bookmark_interval
        self.requests: collections.deque[Seen] = collections.deque(maxlen=10_000)
        self.failures: list[Failure] = []
        self.host, self.port = "127.0.0.1", 0
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._expiry = 0  # bumped by expire_watches()
        self.open_watches = 0
        self._snapshots: collections.OrderedDict[int, tuple[int, list[Any]]] = \
            collections.OrderedDict()
        self._next_snapshot = 0

    # --- lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0, ssl_context: Any = None) -> int:
        self._closing = False
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.host, self.port = host, runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        self._closing = True
        self.store.notify()  # open watches end
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeApi:
        await self.start(self.host, self.port)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # --- test hooks (also over HTTP, under /fake/)

    def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.store.create(resource, obj)

    def replace(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.store.replace(resource, obj)

    def delete(self, resource: str, key: str) -> dict[str, Any]:
        return self.store.delete(resource, key)

    def compact(self) -> int:
        self._snapshots.clear()
        return self.store.compact()

    def expire_watches(self) -> None:
        self._expiry += 1
        self.store.notify()

    def fail_next(self, n: int = 1, status: int = 500, body: bytes | None = None, *,
                  verb: str | None = None, resource: str | None = None) -> None:
        """The next ``n`` API requests matching ``verb`` (one of ``VERBS``: ``list`` is a
        first page, ``continue`` a later one; None: any) and ``resource`` get ``status`` with
        ``body`` as it is (default: a Status object) instead of their answer."""
        if verb is not None and verb not in VERBS or resource not in (None, *RESOURCES):
            raise ValueError("unknown verb or resource")
        self.failures.append(Failure(n, status, body, verb, resource))

    # --- HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        auth = request.headers.get("Authorization")
        self.requests.append(Seen(request.method, request.path_qs, auth))
        if self.token is not None and not hmac.compare_digest(
                (auth or "").encode(), f"Bearer {self.token}".encode()):
            return answer(401, "Unauthorized", "Unauthorized")
        if request.path.startswith("/fake/"):
            return await self._hook(request)
        m = PATH_RE.fullmatch(request.path)
        if m is None or GROUP[m["res"]] != m["group"] or (
                m["res"] == "namespaces" and m["ns"] is not None):
            return answer(404, "NotFound", "the server could not find the requested resource")
        resource, ns, name = m["res"], m["ns"], m["name"]
        q = request.query
        verb = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(request.method)
        if request.method == "GET":
            verb = ("get" if name else "watch" if q.get("watch") in ("1", "true")
                    else "continue" if q.get("continue") else "list")
        if verb is None or (verb == "create" and name) or (
                verb in ("update", "delete") and not name):
            return answer(405, "MethodNotAllowed", f"{request.method} is not supported here")
        failure = self._failure(verb, resource)
        if failure is not None:
            if failure.body is not None:
                return web.Response(status=failure.status, body=failure.body)
            return answer(failure.status, "InternalError", "injected failure")
        try:
            if verb == "watch":
                return await self._watch(request, resource, ns)
            if verb in ("list", "continue"):
                return self._list(resource, ns, q)
            if verb == "get":
                return web.json_response(self.store.get(resource, _key(resource, ns, name)))
            if verb == "delete":
                return web.json_response(self.store.delete(resource, _key(resource, ns, name)))
            obj = await _body(request, resource, ns, name)
            if verb == "create":
                return web.json_response(self.store.create(resource, obj), status=201)
            return web.json_response(self.store.replace(resource, obj))
        except NotFound as err:
            return answer(404, "NotFound", str(err))
        except Conflict as err:
            return answer(409, "AlreadyExists" if verb == "create" else "Conflict", str(err))
        except Invalid as err:
            return answer(422, "Invalid", str(err))
        except Gone as err:
            return answer(410, "Expired", str(err))

    def _failure(self, verb: str, resource: str) -> Failure | None:
        for f in self.failures:
            if f.verb in (None, verb) and f.resource in (None, resource):
                f.count -= 1
                if f.count <= 0:
                    self.failures.remove(f)
                return f
        return None

    async def _hook(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return answer(405, "MethodNotAllowed", "hooks are POST")
        if request.path == "/fake/compact":
            return web.json_response({"resourceVersion": str(self.compact())})
        if request.path == "/fake/expire-watches":
            self.expire_watches()
            return web.json_response({})
        if request.path == "/fake/fail":
            try:
                spec = await request.json()
                body = spec.get("body")
                self.fail_next(int(spec.get("n", 1)), int(spec.get("status", 500)),
                               body.encode() if isinstance(body, str) else None,
                               verb=spec.get("verb"), resource=spec.get("resource"))
            except (ValueError, AttributeError, TypeError) as err:
                return answer(400, "BadRequest", str(err))
            return web.json_response({})
        return answer(404, "NotFound", "no such hook")

    def _list(self, resource: str, ns: str | None, q: Any) -> web.Response:
        res = RESOURCES[resource]
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            return answer(400, "BadRequest", "limit must be an integer")
        token = q.get("continue")
        if token:
            try:
                snap, offset = (int(x) for x in base64.urlsafe_b64decode(token).split(b":"))
            except ValueError:
                return answer(400, "BadRequest", "malformed continue token")
            if snap not in self._snapshots:
                return answer(410, "Expired", "the provided continue parameter is too old")
            rv, items = self._snapshots[snap]
        else:
            rv, items = self.store.snapshot(resource, ns)
            snap, offset = self._next_snapshot, 0
            self._next_snapshot += 1
        end = offset + limit if limit > 0 else len(items)
        page = [{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
                for obj in items[offset:end]]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if end < len(items):
            self._snapshots[snap] = (rv, items)
            while len(self._snapshots) > MAX_SNAPSHOTS:
                self._snapshots.popitem(last=False)
            meta["continue"] = base64.urlsafe_b64encode(f"{snap}:{end}".encode()).decode()
            meta["remainingItemCount"] = len(items) - end
        return web.json_response({"kind": res.kind + "List", "apiVersion": res.api_version,
                                  "metadata": meta, "items": page})

    async def _watch(self, request: web.Request, resource: str,
                     ns: str | None) -> web.StreamResponse:
        q = request.query
        try:
            timeout = float(q.get("timeoutSeconds") or 1800)
            start = q.get("resourceVersion", "")
            pos = int(start) if start not in ("", "0") else None
        except ValueError:
            return answer(400, "BadRequest", "malformed resourceVersion or timeoutSeconds")
        res, loop, expiry = RESOURCES[resource], asyncio.get_running_loop(), self._expiry
        interval = self.bookmark_interval if q.get("allowWatchBookmarks") == "true" else None
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)

        async def send(kind: str, obj: Any) -> None:
            await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        deadline = loop.time() + timeout
        self.open_watches += 1
        try:
            try:
                if pos is None:
                    pos, objs = self.store.snapshot(resource, ns)
                    for obj in objs:
                        await send("ADDED", obj)
                while not self._closing:
                    tick = self.store.tick
                    if expiry != self._expiry:
                        raise Gone("the watch cache was reset")
                    events, pos = self.store.events_after(pos, resource, ns)
                    for event in events:
                        await send(event.type, event.obj)
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(tick.wait(), min(remaining, interval or remaining))
                    except TimeoutError:
                        if interval and loop.time() < deadline:
                            await send("BOOKMARK", {
                                "kind": res.kind, "apiVersion": res.api_version,
                                "metadata": {"resourceVersion": str(pos)}})
            except Gone as err:
                await send("ERROR", status(410, "Expired", str(err)))
            await resp.write_eof()
        except (ConnectionError, RuntimeError):  # the client went away
            pass
        finally:
            self.open_watches -= 1
        return resp


def _key(resource: str, ns: str | None, name: str) -> str:
    return f"{ns}/{name}" if RESOURCES[resource].namespaced else name


async def _body(request: web.Request, resource: str, ns: str | None,
                name: str | None) -> dict[str, Any]:
    try:
        obj = await request.json()
    except ValueError:
        raise Invalid("the body is not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.setdefault("metadata", {}), dict):
        raise Invalid("the body must be an object with an object metadata")
    meta = obj["metadata"]
    if RESOURCES[resource].namespaced:
        if meta.setdefault("namespace", ns) != ns:
            raise Invalid("metadata.namespace does not match the URL")
    elif ns is not None:
        raise Invalid("namespaces are not namespaced")
    if name is not None and meta.get("name") != name:
        raise Invalid("metadata.name does not match the URL")
    return obj


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("--listen takes HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(fake: FakeApi, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = await fake.start(host, port)
    print(f"listening on {f'[{host}]' if ':' in host else host}:{port}", flush=True)
    await stop.wait()
    await fake.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.k8s.fakeapi",
                                     description="A fake Kubernetes API server for tests.")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 0),
                        metavar="HOST:PORT")
    parser.add_argument("--state", type=Path, help="keep the objects in this JSON file")
    parser.add_argument("--token-file", type=Path, help="require this bearer token")
    parser.add_argument("--bookmark-interval", type=float, metavar="SECONDS")
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip() if args.token_file else None
    fake = FakeApi(token=token, state_file=args.state, bookmark_interval=args.bookmark_interval)
    return asyncio.run(serve(fake, *args.listen))


if __name__ == "__main__":
    sys.exit(main())
