"""The router's HTTP API under hostile requests (router/http_api.py, http_ipam.py): S18, S23.

The apps are the ones ``build_app`` makes for the daemon — the full API of the control socket
and the read-only status listener — in front of a real ``MeshCore`` and a real ``IPAMService``
on a SQLite file, served by aiohttp's ``TestServer`` in-process. Requests are written as raw
bytes on a TCP connection, so any method, path, header and body reaches aiohttp's parser
exactly as sent (a client library would refuse or normalise many of them).

For every request: a response (unless the request itself is not HTTP), its status 2xx, 4xx or
5xx with a text body but never 500; no error logged by aiohttp or weave (an unhandled exception
in a handler is logged as one); and, over the whole run, memory bounded (tracemalloc peak),
although bodies go up to four times ``MAX_BODY``. The status listener serves GET and HEAD of
``/status``, ``/status/*`` and ``/report`` only: anything else is refused, and after a fuzz run
against it nothing changed (no target added or removed, no address allocated).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weave_cli.ipam.address import CIDR
from weave_cli.ipam.allocator import Allocator
from weave_cli.ipam.allocator_wire import Consensus
from weave_cli.ipam.service import IPAMService
from weave_cli.ipam.store import IPAMStore
from weave_cli.router.http_api import MAX_BODY, Handlers, build_app
from weave_cli.router.http_ipam import IPAMRoutes
from weave_cli.router.mesh import MeshConfig, MeshCore
from weave_cli.router.peer import PeerName

ME = PeerName.parse("02:00:00:00:00:0a")
MEMORY_LIMIT = 48 * 1024 * 1024


class LoneMesh:
    """IPAM's view of a mesh with only us in it."""

    def broadcast(self, payload: bytes) -> None: ...

    def unicast(self, dst: PeerName, payload: bytes) -> None: ...

    async def peers(self) -> dict[PeerName, tuple[str, bool]]:
        return {ME: ("fuzz", True)}

    async def flush(self) -> None: ...


class Router:
    """What the daemon puts behind the routes: the mesh core and the IPAM task."""

    def __init__(self, db: Path) -> None:
        self.core = MeshCore(MeshConfig(name=ME, nickname="fuzz", uid=7), now=0.0,
                             rng=random.Random(1))
        self.store = IPAMStore.open(db, create=True)
        loop = asyncio.get_running_loop()
        alloc = Allocator(ME, CIDR.parse("10.32.0.0/24"), Consensus(1), random.Random(1))
        self.ipam = IPAMService(alloc, self.store, LoneMesh(), clock=loop.time, timeout=0.3)
        self.task = asyncio.ensure_future(self.ipam.run())
        self.changes = 0

    async def report(self) -> dict[str, Any]:
        return {"Ready": True, "Version": "fuzz", "VersionCheck": {"Enabled": False},
                "Router": self.core.status(time.monotonic(), wall=time.time()),
                "IPAM": await self.ipam.report()}

    async def connect(self, peers: list[str], replace: bool) -> None:
        self.changes += 1
        self.core.connect(peers, time.monotonic(), replace=replace)
        self.core.actions()  # the driver would dial; nobody does here

    async def forget(self, peers: list[str], _replace: bool) -> None:
        self.changes += 1
        self.core.forget(peers, time.monotonic())
        self.core.actions()

    def handlers(self) -> Handlers:
        return Handlers(self.report, self.connect, self.forget, IPAMRoutes(self.ipam))

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.store.close()


class Errors(logging.Handler):
    """Error records of aiohttp and weave, except aiohttp's report of a request that is not
    valid HTTP (its parser's error: the client's fault, answered with 400)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            self.seen.append(f"{record.name}: {record.getMessage()} {exc!r}")


@pytest.fixture
def errors() -> Iterator[Errors]:
    handler = Errors()
    for name in ("aiohttp", "weave"):
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in ("aiohttp", "weave"):
        logging.getLogger(name).removeHandler(handler)


async def exchange(port: int, raw: bytes, http: bool = True) -> bytes:
    """Send ``raw`` and read until the server closes (every request says Connection: close).
    Bytes that are not a request are followed by EOF, so an incomplete one ends too."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        if not http:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(1 << 20), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


def status_of(response: bytes) -> tuple[int, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


SEGMENT = st.one_of(
    st.sampled_from(["", ".", "..", "%2e%2e", "%00", "%ff", "%2F", "weave:expose", "ns:a",
                     "a" * 129, "10.32.0.1", "10.32.0.0", "10.33.0.0", "24", "0", "-1", "33",
                     "99999999999999999999", "0x10", "::1", "fuzz", ME.__str__(), "{{.}}",
                     "peers", "connections", "targets", "ipam"]),
    st.from_regex(r"[A-Za-z0-9_.:@-]{1,24}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.integers(-3, 40).map(str),
    st.text(max_size=24).map(lambda t: quote(t, safe="")),
)
TEMPLATES = ["/ip/{}", "/ip/{}/{}/{}", "/ip/{}/{}", "/ip", "/connect", "/forget", "/peer",
             "/peer/{}", "/report", "/status", "/status/{}", "/ring", "/ipinfo/defaultsubnet",
             "/{}", "/{}/{}/{}/{}", "//{}", "/ip/{}/{}/{}/{}"]
PATH = st.builds(lambda tpl, segs: tpl.format(*segs), st.sampled_from(TEMPLATES),
                 st.lists(SEGMENT, min_size=4, max_size=4))
QUERY = st.one_of(
    st.just(""),
    st.sampled_from(["?noErrorOnUnknown=true", "?check-alive=true", "?replace=true",
                     "?format=" + quote("{{.Router.Name}}"), "?format=" + quote("{{json .}}"),
                     "?format=" + quote("{{range .Router.Peers}}{{.Name}}{{end}}"),
                     "?format=" + quote("{{"), "?format=" + quote("{{printf \"%v\" .X}}")]),
    st.text(max_size=40).map(lambda t: "?" + quote(t, safe="=&")),
)
PEER = st.one_of(st.ip_addresses(v=4).map(str), st.from_regex(r"[a-z0-9.-]{1,30}(:[0-9]{1,6})?",
                                                               fullmatch=True),
                 st.text(max_size=40))
FORM = st.builds(lambda peers, rep: "&".join([f"peer={quote(p)}" for p in peers]
                                             + (["replace=true"] if rep else [])).encode(),
                 st.lists(PEER, max_size=30), st.booleans())
BODY = st.one_of(st.just(b""), FORM, st.binary(max_size=4096),
                 st.integers(MAX_BODY - 16, 4 * MAX_BODY).map(lambda n: b"peer=" + b"1" * n))
METHOD = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE",
                          "FOO", "get"])
CTYPE = st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                         "text/plain", "application/json", ""])
HOST = st.sampled_from(["127.0.0.1:6782", "127.0.0.1:6782", "localhost", "evil.example", ""])
REQUEST = st.tuples(METHOD, PATH, QUERY, BODY, CTYPE, HOST, st.booleans())
# Requests aimed at the real routes, so the fuzz gets past the router's 404 often.
ROUTES = [("POST", "/connect"), ("POST", "/forget"), ("POST", "/ip/{}"), ("POST", "/ip/{}/{}/{}"),
          ("PUT", "/ip/{}/{}/{}"), ("GET", "/ip/{}"), ("GET", "/ip"), ("DELETE", "/ip/{}"),
          ("DELETE", "/ip/{}/{}"), ("DELETE", "/peer/{}"), ("GET", "/status/{}"),
          ("GET", "/report"), ("GET", "/ring"), ("DELETE", "/peer"), ("GET", "/status")]
IDENT = st.one_of(st.from_regex(r"[a-z0-9:]{1,12}", fullmatch=True), SEGMENT)
ROUTED = st.builds(
    lambda route, segs, query, body, origin: (route[0], route[1].format(*segs), query, body,
                                              "application/x-www-form-urlencoded",
                                              "127.0.0.1:6782", origin),
    st.sampled_from(ROUTES),
    st.tuples(IDENT, st.one_of(st.sampled_from(["10.32.0.0", "10.32.0.128", "10.32.0.7"]),
                               SEGMENT),
              st.one_of(st.sampled_from(["24", "25", "32"]), SEGMENT)),
    QUERY, st.one_of(FORM, st.just(b"peer=10.1.2.3&peer=10.1.2.4:6790"), BODY),
    st.just(False))


def render(method: str, path: str, query: str, body: bytes, ctype: str, host: str,
           origin: bool) -> bytes:
    head = [f"{method} {path}{query} HTTP/1.1", f"Host: {host}", "Connection: close",
            f"Content-Length: {len(body)}"]
    head += [f"Content-Type: {ctype}"] if ctype else []
    head += ["Origin: http://evil.example"] if origin else []
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def fuzz(tmp_path: Path, errors: Errors, full: bool, examples: int) -> dict[str, Any]:
    """Run the fuzz against one app; what it changed: calls to connect and forget, the
    targets and the addresses IPAM holds afterwards."""
    async def start() -> tuple[Router, TestServer]:
        router = Router(tmp_path / "ipam.db")
        router.ipam.timeout = 10.0
        await router.ipam.wait_ring()  # the ring exists: allocations can succeed at once
        router.ipam.timeout = 0.3
        server = TestServer(build_app(router.handlers(), full=full, tcp=not full))
        await server.start_server()
        return router, server

    loop = asyncio.new_event_loop()
    router, server = loop.run_until_complete(start())
    tracemalloc.start()
    try:
        assert server.port is not None
        port: int = server.port
        answered: set[tuple[str, str]] = set()  # (method, first path segment) answered 2xx
        tracemalloc.reset_peak()

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.one_of(ROUTED.map(lambda r: (r, render(*r))),
                         REQUEST.map(lambda r: (r, render(*r))),
                         st.binary(max_size=2048).map(lambda raw: (None, raw))))
        def one(case: tuple[tuple[Any, ...] | None, bytes]) -> None:
            request, raw = case
            errors.seen.clear()  # each example on its own (else shrinking blames the wrong one)
            response = loop.run_until_complete(exchange(port, raw, http=request is not None))
            assert not errors.seen, errors.seen
            if request is None and not response:
                return  # not HTTP at all: closing is an answer
            code, body = status_of(response)
            assert 200 <= code < 600 and code != 500, response[:300]
            if request is not None and 200 <= code < 300:
                answered.add((request[0], request[1].split("/")[1]))
            if code >= 500 and request is not None and request[0] != "HEAD":
                assert body.strip(), response[:300]
            if not full and request is not None and 200 <= code < 300:
                method, path = request[0], request[1]
                assert method in ("GET", "HEAD"), response[:200]
                assert path in ("/status", "/report") or path.startswith("/status/"), path

        one()
        _, peak = tracemalloc.get_traced_memory()
        assert peak < MEMORY_LIMIT, f"peak {peak / 2**20:.1f} MiB"
        # Still serving, and the IPAM task alive (GET /ip is answered by it; allocating may be
        # refused by now: the fuzz may have sent DELETE /peer, which hands our space away).
        for method, path, body, want in ([("GET", "/status", b"", 200)] + (
                [("GET", "/ip", b"", 200), ("POST", "/connect", b"peer=10.9.9.9", 200)]
                if full else [("POST", "/connect", b"peer=10.9.9.9", 404),
                              ("POST", "/ip/after-fuzz", b"", 404)])):
            raw = render(method, path, "", body, "application/x-www-form-urlencoded",
                         "127.0.0.1:6782", False)
            code, text = status_of(loop.run_until_complete(exchange(port, raw)))
            assert code == want, (method, path, code, text)
        return {"changes": router.changes, "targets": list(router.core.targets.direct()),
                "owned": loop.run_until_complete(router.ipam.owned()), "answered": answered}
    finally:
        tracemalloc.stop()
        loop.run_until_complete(server.close())
        loop.run_until_complete(router.close())
        loop.close()


def test_the_full_api_survives_hostile_requests(tmp_path: Path, errors: Errors) -> None:
    after = fuzz(tmp_path, errors, full=True, examples=400)
    assert after["changes"] > 0  # it reached the routes that change state


def test_the_status_listener_is_read_only(tmp_path: Path, errors: Errors) -> None:
    after = fuzz(tmp_path, errors, full=False, examples=250)
    assert (after["changes"], after["targets"], after["owned"]) == (0, [], {})
    assert {m for m, _ in after["answered"]} <= {"GET", "HEAD"}


def test_the_status_app_has_only_read_routes() -> None:
    async def noop(_peers: list[str], _replace: bool) -> None: ...

    async def report() -> dict[str, Any]:
        return {}

    def routes(app: web.Application) -> set[tuple[str, str]]:
        return {(r.method, r.resource.canonical) for r in app.router.routes()
                if r.resource is not None}

    handlers = Handlers(report, noop, noop, IPAMRoutes(None))
    status = routes(build_app(handlers, full=False, tcp=True))
    assert status == {(m, p) for m in ("GET", "HEAD")
                      for p in ("/status", "/status/{view}", "/report")}
    full = routes(build_app(handlers, full=True))
    assert {("POST", "/connect"), ("POST", "/ip/{id}"), ("DELETE", "/peer/{peer}")} <= full


def test_a_huge_body_is_refused_without_being_buffered(tmp_path: Path, errors: Errors) -> None:
    """32 MiB announced to /connect, sent in 64 KiB pieces: 413, and memory stays small."""
    async def run() -> tuple[int, int]:
        router = Router(tmp_path / "ipam.db")
        server = TestServer(build_app(router.handlers(), full=True))
        await server.start_server()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        size, piece = 32 << 20, b"1" * (64 << 10)
        writer.write(f"POST /connect HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n\r\npeer=".encode())
        tracemalloc.start()
        try:
            for _ in range(size // len(piece)):
                writer.write(piece)
                await writer.drain()
        except ConnectionError:
            pass  # the server answered and closed early: fine
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        response = await asyncio.wait_for(reader.read(1 << 16), 10)
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
        await server.close()
        await router.close()
        return status_of(response)[0], peak

    code, peak = asyncio.run(run())
    assert code in (400, 413) and not errors.seen  # 400 "request body too large"
    assert peak < 4 * MAX_BODY + (2 << 20), peak
