"""The Docker events watcher: its pure parts, then the whole task against a fake Docker API.

The fake daemon is an aiohttp server on a unix socket in tmp_path that speaks the three calls
weave makes (``/events`` streamed, ``/containers/json``, ``/containers/{ref}/json``), so the
connect / reconcile / follow / reconnect cycle and ``weave attach``'s inspect are exercised
without root or dockerd (tests/net/test_docker_real.py does it against the real one).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from weave_cli.errors import UsageError, WeaveError
from weave_cli.net import docker
from weave_cli.net.errors import TargetNotFoundError
from weave_cli.router import docker_events as de

A, B, C = "a" * 64, "b" * 64, "c" * 64


def event(action: str, ident: str, kind: str = "container") -> dict[str, Any]:
    return {"Type": kind, "Action": action, "Actor": {"ID": ident, "Attributes": {}},
            "scope": "local", "time": 1, "timeNano": 1}


def test_container_ids() -> None:
    assert de.is_container_id(A)
    for word in ("a" * 63, "a" * 65, "A" * 64, "g" * 64, "ns:" + A[3:], "weave:expose", ""):
        assert not de.is_container_id(word), word


def test_only_container_die_and_destroy_count() -> None:
    assert de.dead_container(event("die", A)) == (A, "die")
    assert de.dead_container(event("destroy", A)) == (A, "destroy")
    old_api = {"status": "die", "id": B, "from": "bb:local"}  # API < 1.44 spelling only
    assert de.dead_container(old_api) == (B, "die")
    others: list[Any] = [
        event("exec_die", A), event("start", A), event("kill", A),
        event("destroy", A, kind="network"), event("die", "abc123"),
        event("health_status: unhealthy", A), {"Type": "container", "Action": ["die"]},
        {"Type": "container", "Action": "die", "Actor": "x"}, [], "die", None,
    ]
    for other in others:
        assert de.dead_container(other) is None, other


def test_stale_is_held_container_ids_not_running_once_each() -> None:
    held = ["ns:c1", B, A, "netns:1234", B, C, "weave:expose"]
    assert de.stale(held, running=[A]) == [B, C]
    assert de.stale(held, running=[A, B, C]) == []
    assert de.stale([], running=[A]) == []


def test_splitter_reassembles_lines_split_anywhere() -> None:
    data = b"".join(json.dumps(event("die", x)).encode() + b"\n" for x in (A, B, C))
    for cut in range(1, len(data), 7):
        s = de.EventSplitter()
        got = s.feed(data[:cut]) + s.feed(data[cut:])
        assert [de.dead_container(e) for e in got] == [(A, "die"), (B, "die"), (C, "die")]
    s = de.EventSplitter()
    assert s.feed(b'\n{garbled\n{"Type": "container"}\n') == [{"Type": "container"}]
    s.feed(b"x" * (de.MAX_EVENT_BYTES + 1))  # no newline ever: dropped, memory stays bounded
    assert s.buf == b"" and s.feed(b'{"a": 1}\n') == [{"a": 1}]


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    b = de.Backoff()
    assert [b.next() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    b.reset()
    assert b.next() == 1


def test_endpoint_from_docker_host() -> None:
    assert docker.endpoint({}) == docker.Endpoint(unix_path="/var/run/docker.sock")
    assert docker.endpoint({"DOCKER_HOST": "unix:///x/d.sock"}) == docker.Endpoint("/x/d.sock")
    assert docker.endpoint({"DOCKER_HOST": "tcp://10.0.0.1:2376"}) == docker.Endpoint(
        None, "10.0.0.1", 2376)
    assert docker.endpoint({"DOCKER_HOST": "tcp://h:1", "DOCKER_TLS_VERIFY": "1"}) is None
    assert docker.endpoint({"DOCKER_HOST": "ssh://me@h"}) is None
    assert docker.endpoint({"DOCKER_HOST": "tcp://h:notaport"}) is None


# -- a fake Docker daemon ----------------------------------------------------------------------


class FakeDocker:
    """Containers by id: (name, running, network mode); events pushed with ``emit``."""

    def __init__(self) -> None:
        self.containers: dict[str, tuple[str, bool, str]] = {}
        self.streams: list[asyncio.Queue[dict[str, Any] | None]] = []
        self.listings = 0

    def emit(self, ev: dict[str, Any] | None) -> None:
        for q in self.streams:
            q.put_nowait(ev)

    async def events(self, request: web.Request) -> web.StreamResponse:
        assert json.loads(request.query["filters"]) == {"type": ["container"],
                                                        "event": ["destroy", "die"]}
        resp = web.StreamResponse()
        await resp.prepare(request)
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.streams.append(q)
        try:
            while (ev := await q.get()) is not None:
                text = json.dumps(ev).encode() + b"\n"
                await resp.write(text[:10])  # split events across writes
                await resp.write(text[10:])
        finally:
            self.streams.remove(q)
        return resp

    async def listing(self, _request: web.Request) -> web.Response:
        self.listings += 1
        return web.json_response([{"Id": i, "Names": [f"/{n}"]}
                                  for i, (n, run, _m) in self.containers.items() if run])

    async def inspect(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        for ident, (name, running, mode) in self.containers.items():
            if ref in (name, ident) or (len(ref) >= 3 and ident.startswith(ref)):
                return web.json_response({
                    "Id": ident, "State": {"Running": running, "Pid": 4321 if running else 0},
                    "HostConfig": {"NetworkMode": mode}})
        return web.json_response({"message": f"No such container: {ref}"}, status=404)


@asynccontextmanager
async def fake_docker(sock: Path) -> AsyncIterator[FakeDocker]:
    fake = FakeDocker()
    app = web.Application()
    app.router.add_get("/events", fake.events)
    app.router.add_get("/containers/json", fake.listing)
    app.router.add_get("/containers/{ref}/json", fake.inspect)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.UnixSite(runner, str(sock)).start()
    try:
        yield fake
    finally:
        fake.emit(None)
        await runner.cleanup()


async def until(what: str, check: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds * 100)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def recorder(freed: list[str], held: list[str]) -> tuple[
        Callable[[str], Awaitable[object]], Callable[[], Awaitable[list[str]]]]:
    async def free(ident: str) -> object:
        freed.append(ident)
        if ident in held:
            held.remove(ident)
            return 1
        return 0

    async def get_held() -> list[str]:
        return list(held)

    return free, get_held


def test_watcher_reconciles_follows_and_reconnects(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    sock = tmp_path / "docker.sock"
    freed: list[str] = []
    held = ["ns:x", A, B, C]
    delays: list[float] = []

    async def fast_sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0.01)

    async def scenario() -> None:
        async with fake_docker(sock) as fake:
            fake.containers = {A: ("a", True, "none"), C: ("c", True, "none")}
            free, get_held = recorder(freed, held)
            w = de.DockerWatcher(free, get_held, where=docker.Endpoint(str(sock)),
                                 sleep=fast_sleep)
            task = asyncio.create_task(w.run())
            await until("the first reconcile", lambda: freed == [B])  # died while not watching
            fake.emit(event("exec_die", A))
            fake.emit(event("die", A))
            await until("A freed on its die", lambda: freed == [B, A])
            fake.emit(event("destroy", A))  # again: harmless
            await until("destroy", lambda: freed == [B, A, A])
            del fake.containers[C]  # C dies while the stream is down: found by the reconcile
            fake.emit(None)
            await until("a second reconcile", lambda: freed == [B, A, A, C])
            assert w.reconciles == 2 and delays == [1.0]
            assert fake.listings == 2
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.INFO, logger="weave.docker"):
        asyncio.run(scenario())
    assert held == ["ns:x"]
    assert "container bbbbbbbbbbbb is not running" in caplog.text
    assert "container aaaaaaaaaaaa died: freed 1 address" in caplog.text


def test_watcher_without_daemon_backs_off_logs_once_then_connects(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sock = tmp_path / "docker.sock"
    delays: list[float] = []
    freed: list[str] = []

    async def scenario() -> None:
        free, get_held = recorder(freed, ["ns:only"])
        ready = asyncio.Event()

        async def sleep(delay: float) -> None:
            delays.append(delay)
            if len(delays) == 7:
                ready.set()
            await asyncio.sleep(0)

        w = de.DockerWatcher(free, get_held, where=docker.Endpoint(str(sock)), sleep=sleep)
        task = asyncio.create_task(w.run())
        await asyncio.wait_for(ready.wait(), 5)
        async with fake_docker(sock) as fake:
            await asyncio.wait_for(w.connected.wait(), 5)
            await until("the reconcile", lambda: w.reconciles == 1)
            assert fake.listings == 0  # no container ids held: the daemon is not asked
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.INFO, logger="weave.docker"):
        asyncio.run(scenario())
    assert delays[:7] == [1, 2, 4, 8, 16, 30, 30]
    assert caplog.text.count("cannot follow") == 1
    assert "following" in caplog.text and freed == []


def test_failing_free_and_held_do_not_stop_the_watcher(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    freed: list[str] = []

    async def scenario() -> None:
        async def free(ident: str) -> None:
            freed.append(ident)
            raise RuntimeError("IPAM busy")

        async def held() -> list[str]:
            raise RuntimeError("IPAM busy")

        async with fake_docker(sock) as fake:
            w = de.DockerWatcher(free, held, where=docker.Endpoint(str(sock)))
            task = asyncio.create_task(w.run())
            await asyncio.wait_for(w.connected.wait(), 5)
            await until("the reconcile", lambda: w.reconciles == 1)
            fake.emit(event("die", A))
            fake.emit(event("die", B))
            await until("both frees tried", lambda: freed == [A, B])
            assert not task.done()
            task.cancel()

    asyncio.run(scenario())


def test_attach_inspects_without_the_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")

    async def scenario() -> None:
        async with fake_docker(sock) as fake:
            fake.containers = {A: ("web", True, "none"), B: ("off", False, "none"),
                               C: ("hosty", True, "host")}
            assert await asyncio.to_thread(docker.container_pid, "web") == (A, 4321)
            assert await asyncio.to_thread(docker.container_pid, "aaaaaa") == (A, 4321)
            cases: list[tuple[str, type[WeaveError], str]] = [
                ("nope", TargetNotFoundError, "no container or namespace named 'nope'"),
                ("off", TargetNotFoundError, "container off is not running"),
                ("hosty", UsageError, "uses the host's network"),
            ]
            for ref, kind, words in cases:
                with pytest.raises(kind, match=words) as info:
                    await asyncio.to_thread(docker.container_pid, ref)
                assert info.value.exit_code == (2 if kind is UsageError else 16)

    asyncio.run(scenario())
