"""The asyncio driver around MeshCore, on loopback: connections peers hang up are released."""

from __future__ import annotations

import asyncio
import random

from weave_cli.router.driver import MeshDriver
from weave_cli.router.mesh import MeshConfig, MeshCore
from weave_cli.router.peer import PeerName


async def _hang_ups(count: int) -> tuple[int, int, int]:
    loop = asyncio.get_running_loop()
    rng = random.Random(1)
    core = MeshCore(
        MeshConfig(name=PeerName.random(rng), nickname="t", uid=7, port=0),
        now=loop.time(),
        rng=rng,
    )
    driver = MeshDriver(core, host="127.0.0.1", port=0, on_targets=lambda _t: None)
    await driver.start()
    assert driver.server is not None
    port = driver.server.sockets[0].getsockname()[1]
    owner = asyncio.ensure_future(driver.run())
    for _ in range(count):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()  # hang up mid-handshake: only EOF tells the driver
        await writer.wait_closed()
        await asyncio.sleep(0.06)  # stay under the accept rate limit
    await asyncio.sleep(0.3)
    left = (len(driver.writers), len(driver.readers), len(driver.core.conns))
    owner.cancel()
    await driver.shutdown()
    return left


def test_connections_closed_by_peers_release_their_sockets() -> None:
    assert asyncio.run(_hang_ups(8)) == (0, 0, 0)
