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


def test_keeper_keeps_the_overlay_devices_and_restores_exposed_addresses(make_ns: MakeNs) -> None:
    from weave_cli.net.overlay import OverlaySpec

    r = make_ns("r")
    keeper = DatapathKeeper(ns_path(r), mtu=1450, interval=0.3,
                            overlay_spec=OverlaySpec(1450, fastdp=True))

    async def exposed() -> list[str]:
        return ["10.32.0.7/12"]

    keeper.exposed = exposed

    async def scenario() -> None:
        assert await keeper.ensure_once()
        details = in_ns(r, "ip", "-d", "link", "show", "weave-vxlan").stdout
        assert "vxlan id 22358" in details and "dstport 6784" in details
        assert "nolearning" in details and "master weave" in details
        port = in_ns(r, "bridge", "-d", "link", "show", "dev", "weave-vxlan").stdout
        assert "learning off" in port and "isolated on" in port
        assert "vxlan id 22359" in in_ns(r, "ip", "-d", "link", "show", "weave-vxhb").stdout
        task = asyncio.ensure_future(keeper.run(first_delay=keeper.interval))
        try:
            in_ns(r, "ip", "link", "del", "weave")
            await until(lambda: "10.32.0.7/12" in in_ns(
                r, "ip", "addr", "show", "weave", check=False).stdout, timeout=5)
            await until(lambda: "master weave" in in_ns(
                r, "ip", "link", "show", "weave-vxlan").stdout, timeout=5)
            in_ns(r, "ip", "link", "del", "weave-vxhb")
            await until(has(r, "ip", "link", "show", "weave-vxhb"), timeout=5)
        finally:
            task.cancel()

    asyncio.run(scenario())
    # with fastdp turned off the VXLAN devices go (no plaintext VXLAN device is left around)
    keeper.overlay_spec = OverlaySpec(1450, fastdp=False)
    assert asyncio.run(keeper.ensure_once())
    assert in_ns(r, "ip", "link", "show", "weave-vxlan", check=False).returncode != 0
