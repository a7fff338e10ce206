"""The router's keeper on a real kernel: what is deleted comes back within a pass, and a pass
that fails is retried without the task ever dying."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from netutil import in_ns, ns_path

from weave_cli.net.keeper import DatapathKeeper

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]


async def until(check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not repaired in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def has(ns: str, *argv: str) -> Callable[[], bool]:
    return lambda: in_ns(ns, *argv, check=False).returncode == 0


def test_keeper_restores_bridge_and_table(make_ns: MakeNs) -> None:
    r = make_ns("r")
    keeper = DatapathKeeper(ns_path(r), interval=0.3)

    async def scenario() -> None:
        assert await keeper.ensure_once()
        task = asyncio.ensure_future(keeper.run(first_delay=keeper.interval))
        try:
            in_ns(r, "ip", "link", "del", "weave")
            await until(has(r, "ip", "link", "show", "weave"), timeout=5)
            in_ns(r, "nft", "delete", "table", "inet", "weave")
            await until(has(r, "nft", "list", "table", "inet", "weave"), timeout=5)
            in_ns(r, "ip", "link", "set", "weave", "down")
            await until(lambda: ",UP" in in_ns(r, "ip", "link", "show", "weave").stdout, 5)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert keeper.last_error is None and keeper.passes >= 4


def test_keeper_survives_a_failing_pass(make_ns: MakeNs, caplog: pytest.LogCaptureFixture) -> None:
    r = make_ns("r")
    in_ns(r, "ip", "link", "add", "weave", "type", "veth", "peer", "name", "weavepeer")
    keeper = DatapathKeeper(ns_path(r), interval=0.1)

    async def scenario() -> None:
        assert not await keeper.ensure_once()
        task = asyncio.ensure_future(keeper.run())
        await asyncio.sleep(0.5)
        assert not task.done()
        in_ns(r, "ip", "link", "del", "weave")
        await until(lambda: keeper.last_error is None, timeout=5)
        task.cancel()

    with caplog.at_level("INFO", logger="weave.datapath"):
        asyncio.run(scenario())
    warnings = [r.message for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "not a bridge" in warnings[0]  # logged once, not every pass
    assert any("created bridge weave" in r.message for r in caplog.records)
