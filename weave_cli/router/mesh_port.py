"""The mesh as the IPAM task sees it: ``MeshPort`` implemented over the ``MeshDriver``.

Every call is carried into the mesh's owner task (``submit``/``query``); nothing here touches the
core from another task.
"""

from __future__ import annotations

import asyncio

from weave_cli.router.driver import MeshDriver
from weave_cli.router.mesh import MeshCore
from weave_cli.router.peer import PeerName

FLUSH_LIMIT = 2.0  # seconds to wait for socket buffers to drain


class DriverMeshPort:
    def __init__(self, driver: MeshDriver, channel: str) -> None:
        self.driver, self.channel = driver, channel

    def broadcast(self, payload: bytes) -> None:
        self.driver.submit(lambda _now: self.driver.core.broadcast(self.channel, payload))

    def unicast(self, dst: PeerName, payload: bytes) -> None:
        self.driver.submit(lambda _now: self.driver.core.unicast(self.channel, dst, payload))

    async def peers(self) -> dict[PeerName, tuple[str, bool]]:
        def read(core: MeshCore, _now: float) -> dict[PeerName, tuple[str, bool]]:
            reachable = core.topology.reachable()
            return {n: (e.nickname, n in reachable) for n, e in core.topology.entries.items()}

        return await self.driver.query(read)

    async def flush(self) -> None:
        await self.driver.query(lambda _core, _now: None)  # what was submitted has been sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_LIMIT
        while loop.time() < deadline and any(
            w.transport.get_write_buffer_size() for w in self.driver.writers.values()
        ):
            await asyncio.sleep(0.02)
