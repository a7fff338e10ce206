"""The browser guard on the router's TCP listeners."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from weave_cli.router.http_api import Handlers, build_app, host_is_acceptable


async def _report() -> dict[str, Any]:
    return {"Ready": True, "Version": "t", "Router": {"Name": "02:00:00:00:00:01"}}


async def _noop(_peers: list[str], _replace: bool) -> None:
    return None


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:6782", True),
        ("localhost:6782", True),
        ("[::1]:6782", True),
        ("10.0.0.5:6784", True),
        ("evil.example:6782", False),
        ("", False),
    ],
)
def test_host_header_rule(host: str, ok: bool) -> None:
    assert host_is_acceptable(host) is ok


def test_guard_refuses_cross_site_and_rebound_requests() -> None:
    async def run() -> list[int]:
        app = build_app(Handlers(_report, _noop, _noop), full=False, tcp=True)
        async with TestClient(TestServer(app)) as client:
            plain = await client.get("/report", headers={"Host": "127.0.0.1:6782"})
            origin = await client.get("/report", headers={"Origin": "http://evil.example"})
            rebound = await client.get("/report", headers={"Host": "evil.example:6782"})
            template = await client.get("/report?format={{.Version}}")
            return [plain.status, origin.status, rebound.status, template.status]

    assert asyncio.run(run()) == [200, 403, 403, 400]
