"""The Kubernetes list+watch client (weave_cli.npc.kubeapi) against the fake API server
(tests/k8s/fakeapi.py), over real loopback sockets, with backoffs shrunk to milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import ipaddress
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from k8s.fakeapi import FakeApi

from weave_cli.errors import KubeConfigError, KubeRequestError
from weave_cli.npc.kubeapi import (
    Backoff,
    Delete,
    Health,
    KubeWatch,
    Message,
    Synced,
    Tuning,
    Upsert,
)
from weave_cli.npc.kubeconf import ApiConfig, LineSplitter

FAST = Tuning(min_backoff=0.01, max_backoff=0.05, watch_timeout=5)
ROOT = Path(__file__).resolve().parents[2]


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def pod(ns: str, name: str, ip: str = "10.32.0.1", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": "node1"}, "status": {"podIP": ip}}


def policy(ns: str, name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


class Inbox:
    """What the informers emit, in order (``seen``). ``wait`` takes the first message that fits
    and was not taken yet, reading on as needed: waits for different kinds do not steal each
    other's messages."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.seen: list[Message] = []
        self.taken: set[int] = set()

    def emit(self, msg: Message) -> None:
        self.queue.put_nowait(msg)

    async def wait(self, fits: Callable[[Message], bool], timeout: float = 5.0,
                   since: int = 0) -> Message:
        """The first message not taken yet, at index ``since`` or later, that ``fits``."""
        for i, msg in enumerate(self.seen):
            if i >= since and i not in self.taken and fits(msg):
                self.taken.add(i)
                return msg
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.queue.get()
                self.seen.append(msg)
                if fits(msg):
                    self.taken.add(len(self.seen) - 1)
                    return msg

    def after(self, msg: Message) -> int:
        """The index just past ``msg`` (for ``since``)."""
        return next(i for i, m in enumerate(self.seen) if m is msg) + 1

    async def synced(self, kind: str, since: int = 0) -> Synced:
        msg = await self.wait(lambda m: isinstance(m, Synced) and m.kind == kind, since=since)
        assert isinstance(msg, Synced)
        return msg

    async def health(self, kind: str, ok: bool, since: int = 0) -> Health:
        msg = await self.wait(lambda m: isinstance(m, Health) and m.kind == kind and m.ok == ok,
                              since=since)
        assert isinstance(msg, Health)
        return msg


@contextlib.asynccontextmanager
async def watching(config: ApiConfig, inbox: Inbox, tuning: Tuning = FAST,
                   **kw: Any) -> AsyncIterator[KubeWatch]:
    watch = KubeWatch(config, inbox.emit, tuning, rand=lambda: 0.5, **kw)
    task = asyncio.create_task(watch.run())
    try:
        yield watch
        assert not task.done(), "run() must run until cancelled"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert watch.api.closed


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


def config_for(fake: FakeApi, token_file: Path | None = None) -> ApiConfig:
    return ApiConfig.explicit(fake.url, token_file=token_file)


def populate(fake: FakeApi) -> None:
    fake.create("namespaces", namespace("default"))
    fake.create("namespaces", namespace("prod", team="a"))
    fake.create("pods", pod("default", "web", "10.32.0.2", app="web"))
    fake.create("pods", pod("prod", "db", "10.32.0.3", app="db"))
    fake.create("networkpolicies", policy("prod", "deny"))


def test_initial_sync_of_all_three_kinds() -> None:
    async def scenario() -> None:
        async with FakeApi() as fake:
            populate(fake)
            inbox = Inbox()
            async with watching(config_for(fake), inbox):
                pods = await inbox.synced("pods")
                spaces = await inbox.synced("namespaces")
                pols = await inbox.synced("networkpolicies")
                for kind in ("pods", "namespaces", "networkpolicies"):
                    await inbox.health(kind, True)
            assert sorted(pods.objects) == ["default/web", "prod/db"]
            assert pods.objects["prod/db"]["status"]["podIP"] == "10.32.0.3"
            assert sorted(spaces.objects) == ["default", "prod"]
            labels = spaces.objects["prod"]["metadata"]["labels"]
            assert labels == {"team": "a", "kubernetes.io/metadata.name": "prod"}
            assert list(pols.objects) == ["prod/deny"]
            assert not [m for m in inbox.seen if isinstance(m, Health) and not m.ok]

    asyncio.run(scenario())


def test_upserts_and_deletes_follow_the_watch() -> None:
    async def scenario() -> None:
        async with FakeApi() as fake:
            populate(fake)
            inbox = Inbox()
            async with watching(config_for(fake), inbox):
                await inbox.synced("pods")
                await inbox.synced("namespaces")
                fake.create("pods", pod("default", "api", "10.32.0.9"))
                up = await inbox.wait(lambda m: isinstance(m, Upsert))
                assert up == Upsert("pods", "default/api", up.obj)  # type: ignore[union-attr]
                changed = fake.store.get("pods", "default/api")
                changed["metadata"]["labels"] = {"app": "api"}
                fake.replace("pods", changed)
                up = await inbox.wait(lambda m: isinstance(m, Upsert))
                assert isinstance(up, Upsert) and up.obj["metadata"]["labels"] == {"app": "api"}
                fake.delete("pods", "default/api")
                assert await inbox.wait(lambda m: isinstance(m, Delete)) == \
                    Delete("pods", "default/api")
                fake.create("namespaces", namespace("dev"))
                up = await inbox.wait(lambda m: isinstance(m, Upsert))
                assert isinstance(up, Upsert) and up.kind == "namespaces" and up.key == "dev"
                assert up.obj["metadata"]["labels"]["kubernetes.io/metadata.name"] == "dev"
                fake.delete("namespaces", "prod")  # takes prod/db and prod/deny along
                gone = {(m.kind, m.key) for m in [
                    await inbox.wait(lambda m: isinstance(m, Delete)) for _ in range(3)]
                    if isinstance(m, Delete)}
                assert gone == {("pods", "prod/db"), ("networkpolicies", "prod/deny"),
                                ("namespaces", "prod")}
            assert sum(isinstance(m, Synced) for m in inbox.seen) == 3  # no relist

    asyncio.run(scenario())


def test_pagination_and_a_partial_list_delivers_nothing() -> None:
    async def scenario() -> None:
        async with FakeApi() as fake:
            for i in range(7):
                fake.create("pods", pod("default", f"p{i}"))
            fake.fail_next(1, 500, verb="continue", resource="pods")
            inbox = Inbox()
            tuning = Tuning(page_limit=3, min_backoff=0.01, max_backoff=0.05)
            async with watching(config_for(fake), inbox, tuning, kinds=["pods"]) as watch:
                down = await inbox.health("pods", False)
                assert down.reason == "list: HTTP 500 InternalError"
                synced = await inbox.synced("pods")
                await inbox.health("pods", True)
                assert watch.informers[0].lists == 2
            assert sorted(synced.objects) == [f"default/p{i}" for i in range(7)]
            assert sum(isinstance(m, Synced) for m in inbox.seen) == 1
            lists = [r.path_qs for r in fake.requests if "watch" not in r.path_qs]
            assert len(lists) == 2 + 3  # the failed attempt's pages 1 and 2, then all 3
            assert sum("continue=" in q for q in lists) == 1 + 2

    asyncio.run(scenario())


def test_a_compacted_version_relists_and_drops_what_was_deleted() -> None:
    async def scenario() -> None:
        async with FakeApi() as fake:
            fake.create("pods", pod("default", "a"))
            fake.create("pods", pod("default", "b"))
            inbox = Inbox()
            async with watching(config_for(fake), inbox, kinds=["pods"]) as watch:
                assert sorted((await inbox.synced("pods")).objects) == ["default/a", "default/b"]
                # Both before the watch wakes up: it finds its version compacted away.
                fake.delete("pods", "default/b")
                fake.compact()
                again = await inbox.synced("pods")
                assert sorted(again.objects) == ["default/a"]
                await until(lambda: fake.open_watches == 1)
                fake.expire_watches()  # an ERROR 410 on an open watch: relist too
                assert sorted((await inbox.synced("pods")).objects) == ["default/a"]
                assert watch.informers[0].lists == 3
            assert not [m for m in inbox.seen if isinstance(m, Delete)]
            assert not [m for m in inbox.seen if isinstance(m, Health) and not m.ok]

    asyncio.run(scenario())


def test_http_410_on_watch_start_relists() -> None:
    async def scenario() -> None:
        async with FakeApi() as fake:
            fake.create("pods", pod("default", "a"))
            fake.fail_next(1, 410, verb="watch")
            inbox = Inbox()
            async with watching(config_for(fake), inbox, kinds=["pods"]) as watch:
                await inbox.synced("pods")
                await inbox.synced("pods")
                fake.create("pods", pod("default", "b"))
                await inbox.wait(lambda m: isinstance(m, Upsert))
                assert watch.informers[0].lists == 2
            assert not [m for m in inbox.seen if isinstance(m, Health) and not m.ok]

    asyncio.run(scenario())


def test_a_watch_that_times_out_rewatches_from_its_version() -> None:
    async def scenario() -> None:
        async with FakeApi(bookmark_interval=0.1) as fake:
            fake.create("pods", pod("default", "a"))
            inbox = Inbox()
            tuning = Tuning(watch_timeout=1, min_backoff=0.01, max_backoff=0.05)
            async with watching(config_for(fake), inbox, tuning, kinds=["pods"]) as watch:
                await inbox.synced("pods")
                rv = fake.store.create("namespaces", namespace("x"))["metadata"]
                informer = watch.informers[0]
                # The watch times out and is resumed; a bookmark carries the namespace's RV.
                await until(lambda: informer.watches >= 2
                            and informer.rv == rv["resourceVersion"])
                fake.create("pods", pod("default", "b"))
                up = await inbox.wait(lambda m: isinstance(m, Upsert))
                assert isinstance(up, Upsert) and up.key == "default/b"
                assert informer.lists == 1
            watches = [r.path_qs for r in fake.requests if "watch=1" in r.path_qs]
            assert "allowWatchBookmarks=true" in watches[0] and "timeoutSeconds=1" in watches[0]

    asyncio.run(scenario())


def test_an_outage_keeps_state_then_relists() -> None:
    async def scenario() -> None:
        fake = FakeApi()
        await fake.start()
        populate(fake)
        inbox = Inbox()
        async with watching(config_for(fake), inbox, kinds=["pods"]):
            await inbox.synced("pods")
            await inbox.health("pods", True)
            await fake.stop()
            down = await inbox.health("pods", False)
            assert down.reason.startswith(("watch: ", "list: "))
            fake.create("pods", pod("default", "new"))  # while the server is away
            fake.delete("pods", "prod/db")
            await asyncio.sleep(0.2)  # several failed retries
            mark = len(inbox.seen)
            await fake.start(fake.host, fake.port)
            synced = await inbox.synced("pods")
            assert not inbox.seen[mark:-1], "nothing but the Synced before recovery"
            assert sorted(synced.objects) == ["default/new", "default/web"]
            assert await inbox.health("pods", True) == Health("pods", True, "listed")
        await fake.stop()
        downs = [m for m in inbox.seen if isinstance(m, Health) and not m.ok]
        assert len(downs) == 1  # logged and reported once per outage

    asyncio.run(scenario())


GARBAGE = [
    ("watch", 200, b'{"type": "ADDED", "object": {oops\n', "watch: malformed JSON"),
    ("watch", 200, b"x" * (5 << 20), "watch: a watch event line over 4194304 bytes"),
    ("watch", 200, b'{"type":"ADDED","object":{"metadata":{"name":7,"namespace":"d",'
     b'"resourceVersion":"9"}}}\n', "watch: an object without a valid metadata.name"),
    ("watch", 200, b'{"type":"ADDED","object":[]}\n', "watch: malformed watch event"),
    ("watch", 200, b'{"type":"EXPLODED","object":{}}\n', "watch: malformed watch event"),
    ("watch", 200, b"[1, 2]\n", "watch: malformed watch event"),
    ("watch", 200, b'{"type":"ERROR","object":{"code":500,"reason":"InternalError"}}\n',
     "watch: ERROR event 500 InternalError"),
    ("watch", 200, b'{"type":"ADDED",', "watch: the watch stream ended inside an event"),
    ("watch", 503, b"<html>busy</html>", "watch: HTTP 503"),
    ("list", 500, None, "list: HTTP 500 InternalError"),
    ("list", 200, b"not json", "list: malformed JSON"),
    ("list", 200, b"[" * 100_000, "list: malformed JSON"),
    ("list", 200, b'{"metadata":{"resourceVersion":"1"},"items":"x"}', "list: malformed list"),
    ("list", 200, b'{"metadata":{"resourceVersion":5},"items":[]}',
     "list: an object without a valid metadata.resourceVersion"),
    ("list", 200, b'{"metadata":{"resourceVersion":"5"},"items":[7]}',
     "list: a list item is not an object"),
    ("list", 200, b'{"metadata":{"resourceVersion":"5"},"items":[{"metadata":{"name":"x"}}]}',
     "list: an object without a valid metadata.namespace"),
    ("list", 200, b'{"items": []}' + b" " * (2 << 20), "list: response body over 1048576 bytes"),
]


@pytest.mark.parametrize(("verb", "code", "body", "reason"), GARBAGE)
def test_garbage_is_a_failed_request_that_is_retried(
        verb: str, code: int, body: bytes | None, reason: str) -> None:
    async def scenario() -> None:
        async with FakeApi() as fake:
            fake.create("pods", pod("default", "a"))
            fake.fail_next(1, code, body, verb=verb)
            inbox = Inbox()
            tuning = Tuning(min_backoff=0.01, max_backoff=0.05, max_page_bytes=1 << 20)
            async with watching(config_for(fake), inbox, tuning, kinds=["pods"]):
                down = await inbox.health("pods", False)
                assert down.reason == reason
                synced = await inbox.synced("pods", since=inbox.after(down))
                assert list(synced.objects) == ["default/a"]
                await inbox.health("pods", True, since=inbox.after(down))
                fake.create("pods", pod("default", "b"))  # and it watches again
                await inbox.wait(lambda m: isinstance(m, Upsert))
            assert not [m for m in inbox.seen if isinstance(m, Delete)]

    asyncio.run(scenario())


def test_a_server_that_does_not_speak_http() -> None:
    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HELLO\x00\xff garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(junk, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        inbox = Inbox()
        try:
            async with watching(ApiConfig.explicit(f"http://127.0.0.1:{port}"), inbox,
                                kinds=["pods"]) as watch:
                down = await inbox.health("pods", False)
                assert down.reason == "list: a malformed HTTP response"
                await until(lambda: watch.informers[0].failures >= 3)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_the_token_is_sent_and_never_shown(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    token, wrong = "s3cr3t-t0ken-abc.def", "wr0ng-t0ken-xyz"
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "wrong").write_text(wrong)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> list[Message]:
        async with FakeApi(token=token) as fake:
            fake.create("pods", pod("default", "a"))
            echo = json.dumps({"kind": "Status", "code": 500, "message": f"no {token}",
                               "reason": f"Bad{token}"}).encode()
            fake.fail_next(1, 500, echo, verb="watch")  # a server that quotes our token
            inbox, other = Inbox(), Inbox()
            good = config_for(fake, tmp_path / "token")
            bad = config_for(fake, tmp_path / "wrong")
            assert token not in repr(good) and token not in str(good)
            async with watching(good, inbox, kinds=["pods"]), \
                    watching(bad, other, kinds=["pods"]):
                assert (await inbox.health("pods", False)).reason == "watch: HTTP 500"
                await inbox.synced("pods")
                await inbox.health("pods", True)
                assert (await other.health("pods", False)).reason == "list: HTTP 401 Unauthorized"
            auths = {r.authorization for r in fake.requests}
            assert auths == {f"Bearer {token}", f"Bearer {wrong}"}
            return inbox.seen + other.seen

    seen = asyncio.run(scenario())
    assert all(token not in repr(m) for m in seen if isinstance(m, Health))
    with pytest.raises(KubeConfigError) as err:
        (tmp_path / "spaced").write_text(f"{token} {token}")
        ApiConfig.explicit("http://127.0.0.1:1", tmp_path / "spaced")
    assert token not in str(err.value) and err.value.exit_code == 20
    texts = [r.getMessage() + str(r.args) + (r.exc_text or "") for r in caplog.records]
    assert texts, "the failures were logged"
    assert not [t for t in texts if token in t or wrong in t]


def test_a_rotated_token_file_is_read_again(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token")

    async def scenario() -> None:
        async with FakeApi(token="first-token") as fake:
            inbox = Inbox()
            async with watching(config_for(fake, token_file), inbox, kinds=["pods"]):
                await inbox.synced("pods")
                await until(lambda: fake.open_watches == 1)
                fake.token = "the-second-token"  # as the kubelet rotates projected tokens
                token_file.write_text("the-second-token")
                fake.expire_watches()
                second = await inbox.synced("pods", since=len(inbox.seen))
                assert second.objects == {}
            assert fake.requests[-1].authorization == "Bearer the-second-token"
            assert not [m for m in inbox.seen if isinstance(m, Health) and not m.ok]

    asyncio.run(scenario())


def test_cancellation_closes_the_session_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with FakeApi() as fake:
            populate(fake)
            inbox = Inbox()
            async with watching(config_for(fake), inbox):  # cancelled while watching
                await inbox.synced("pods")
            async with watching(ApiConfig.explicit("http://127.0.0.1:9"), Inbox()):
                await asyncio.sleep(0.1)  # cancelled while backing off
            async with watching(config_for(fake), Inbox()):
                pass  # cancelled before or during the first list

    asyncio.run(scenario())
    gc.collect()
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


def self_signed(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "ca.crt", tmp_path / "key.pem")
    return tmp_path / "ca.crt", server


def test_in_cluster_config_speaks_https_with_the_service_account(tmp_path: Path) -> None:
    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text("pod-token")
    ca, server = self_signed(account)
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _ = self_signed(other)

    async def scenario() -> None:
        fake = FakeApi(token="pod-token")
        port = await fake.start("127.0.0.1", 0, ssl_context=server)
        try:
            fake.create("namespaces", namespace("default"))
            env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}
            config = ApiConfig.in_cluster(env, account)
            assert config.base_url == f"https://127.0.0.1:{port}" and config.ca_file == ca
            inbox = Inbox()
            async with watching(config, inbox, kinds=["namespaces"]):
                assert list((await inbox.synced("namespaces")).objects) == ["default"]
            untrusting = ApiConfig.explicit(config.base_url, account / "token", other_ca)
            inbox = Inbox()
            async with watching(untrusting, inbox, kinds=["namespaces"]):
                down = await inbox.health("namespaces", False)
                assert down.reason == "list: the server's TLS certificate is not trusted"
        finally:
            await fake.stop()

    asyncio.run(scenario())


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="not running in a Kubernetes pod"):
        ApiConfig.in_cluster({}, tmp_path)
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(KubeConfigError, match="cannot read the API token file"):
        ApiConfig.in_cluster(env, tmp_path)
    (tmp_path / "token").write_text("t")
    with pytest.raises(KubeConfigError, match="CA"):
        ApiConfig.in_cluster(env, tmp_path)  # no ca.crt: no silent fallback
    with pytest.raises(KubeConfigError, match="credentials"):
        ApiConfig.explicit("https://user:pw@example.com")
    with pytest.raises(KubeConfigError):
        ApiConfig.explicit("ftp://example.com")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(KubeConfigError, match="does not hold a token"):
        ApiConfig.explicit("http://127.0.0.1:1", tmp_path / "empty")
    assert ApiConfig.explicit("http://127.0.0.1:8001/").base_url == "http://127.0.0.1:8001"
    assert KubeRequestError("x", 410).status == 410


def test_backoff_and_line_splitter() -> None:
    backoff = Backoff(0.5, 30.0, rand=lambda: 1.0)
    delays = [backoff.next() for _ in range(9)]
    assert delays == [0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 30.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.next() == 0.75
    assert [Backoff(0.5, 30.0, rand=lambda: 0.0).next()] == [0.5]
    lines = LineSplitter(8)
    assert lines.feed(b"ab") == [] and lines.feed(b"c\nde\n\nf") == [b"abc", b"de", b""]
    assert lines.feed(b"g\n") == [b"fg"]
    lines.end()
    with pytest.raises(KubeRequestError, match="over 8 bytes"):
        lines.feed(b"123456789")
    with pytest.raises(KubeRequestError, match="over 8 bytes"):
        LineSplitter(8).feed(b"ok\n123456789\n")
    with pytest.raises(KubeRequestError, match="inside an event"):
        cut = LineSplitter(8)
        cut.feed(b"{")
        cut.end()


def _http(port: int, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _standalone(state: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.k8s.fakeapi", "--listen", "127.0.0.1:0",
         "--state", str(state)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on 127.0.0.1:"), line
    return proc, int(line.rsplit(":", 1)[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()  # no-op once it exited
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_standalone_fake_keeps_its_objects_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc, port = _standalone(state)
    try:
        first = _http(port, "POST", "/api/v1/namespaces", namespace("kept"))
        _http(port, "POST", "/api/v1/namespaces/kept/pods", pod("kept", "p"))
        assert _http(port, "POST", "/fake/compact") == {"resourceVersion": "2"}
    finally:
        stop(proc)
    proc, port = _standalone(state)
    try:
        listed = _http(port, "GET", "/api/v1/namespaces/kept/pods")
        assert [p["metadata"]["name"] for p in listed["items"]] == ["p"]
        assert listed["metadata"]["resourceVersion"] == "2"
        later = _http(port, "POST", "/api/v1/namespaces", namespace("later"))
        assert int(later["metadata"]["resourceVersion"]) > int(
            first["metadata"]["resourceVersion"]) + 1
        assert _http(port, "DELETE", "/api/v1/namespaces/kept")["metadata"]["name"] == "kept"
        assert _http(port, "GET", "/api/v1/pods")["items"] == []
    finally:
        stop(proc)
