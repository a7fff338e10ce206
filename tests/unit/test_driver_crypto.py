"""Encrypted mesh connections over real loopback sockets, and the accept token bucket."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from weave_cli.crypto.handshake import PasswordKeys
from weave_cli.crypto.kdf import password_key
from weave_cli.crypto.secret import Secret
from weave_cli.router.accept import accept_bucket
from weave_cli.router.driver import MeshDriver
from weave_cli.router.mesh import MeshConfig, MeshCore
from weave_cli.router.peer import PeerName

PW = password_key(Secret(b"loopback"), n=2**10)
OTHER = password_key(Secret(b"not it"), n=2**10)


async def _driver(seed: int, pw: Secret | None, targets: tuple[str, ...] = ()) -> MeshDriver:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    core = MeshCore(MeshConfig(name=PeerName.random(rng), nickname=f"h{seed}", uid=seed,
                               port=0, password_keys=None if pw is None else PasswordKeys(pw),
                               retry_initial=30.0),
                    now=loop.time(), rng=rng, targets=targets)
    driver = MeshDriver(core, host="127.0.0.1", port=0, on_targets=lambda _t: None)
    await driver.start()
    return driver


async def _pair(pa: Secret | None, pb: Secret | None,
                ) -> tuple[dict[str, object], dict[str, list[bytes]]]:
    b = await _driver(2, pb)
    assert b.server is not None
    port = b.server.sockets[0].getsockname()[1]
    a = await _driver(1, pa, (f"127.0.0.1:{port}",))
    owners = [asyncio.ensure_future(d.run()) for d in (a, b)]
    for _ in range(100):
        await asyncio.sleep(0.02)
        if a.core.active or a.core.targets.get(f"127.0.0.1:{port}").phase == "waiting":  # type: ignore[union-attr]
            break
    out = (a.core.status(0.0), {"secrets": list(a.core.link_secrets().values()),
                                "theirs": list(b.core.link_secrets().values())})
    for task in owners:
        task.cancel()
    await a.shutdown()
    await b.shutdown()
    return out


def test_an_encrypted_link_over_loopback() -> None:
    status, secrets = asyncio.run(_pair(PW, PW))
    [row] = status["Connections"]  # type: ignore[misc]
    assert row["State"] == "established" and row["Attrs"] == {"encrypted": True}
    assert secrets["secrets"] == secrets["theirs"] and len(secrets["secrets"][0]) == 32


def test_a_wrong_password_over_loopback_is_auth_failed(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "weave.mesh")
    status, secrets = asyncio.run(_pair(PW, OTHER))
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2 and all("auth_failed: wrong password" in m for m in refused)
    [row] = status["Connections"]  # type: ignore[misc]
    assert row["State"] == "failed" and "auth_failed" in str(row["Info"])
    assert secrets == {"secrets": [], "theirs": []}


def test_the_accept_bucket_holds_20_then_refills_every_50ms() -> None:
    bucket = accept_bucket(20, 0.05)
    assert sum(bucket.take(0.0) for _ in range(100)) == 20
    assert not bucket.take(0.04) and bucket.take(0.051)
    assert sum(bucket.take(10.0) for _ in range(100)) == 20  # refilled, capped at 20
    assert sum(bucket.take(t / 1000) for t in range(1000, 2000)) <= 20 + 20
