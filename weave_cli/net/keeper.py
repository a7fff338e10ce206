"""The router's keeper of the data path: ensure it at start, re-ensure it every few seconds.

One asyncio task per router. Each pass runs ``datapath.ensure`` in a worker thread (netlink and
the nft/iptables programs block), so the mesh and the API never wait on the kernel. A deleted
bridge, a port knocked out of it, a deleted or edited nft table, a missing DOCKER-USER rule are
all back within ``interval`` seconds plus one pass (a few tens of milliseconds): well inside
the 10 s the reliability scenarios allow.

The keeper never raises: a failed pass is logged (once per distinct error, not every
``interval``) and retried on the next one; repairs are logged one line each. ``for_router``
decides whether there is a keeper at all, independently of the launch options: only as root
and only when pyroute2 imports; otherwise it logs why, once, and the router runs without
managing the data path (the control plane does not need it).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from weave_cli.errors import WeaveError
from weave_cli.net.bridge import DEFAULT_MTU
from weave_cli.net.overlay import OverlaySpec

RECONCILE_INTERVAL = 5.0
log = logging.getLogger("weave.datapath")


class DatapathKeeper:
    """Keeps bridge, ports, nft table and iptables rules of one namespace as desired."""

    def __init__(
        self,
        router_ns: str | None = None,
        mtu: int = DEFAULT_MTU,
        interval: float = RECONCILE_INTERVAL,
        overlay_spec: OverlaySpec | None = None,
    ) -> None:
        self.router_ns, self.mtu, self.interval = router_ns, mtu, interval
        self.overlay_spec = overlay_spec
        # The CIDRs IPAM holds for `weave expose` (set by the router when IPAM runs), so a
        # deleted bridge comes back with the host's addresses.
        self.exposed: Callable[[], Awaitable[list[str]]] | None = None
        self.passes = 0
        self.last_error: str | None = None

    async def ensure_once(self) -> bool:
        """One reconcile pass; True when the data path is as desired afterwards."""
        from weave_cli.net import datapath

        self.passes += 1
        try:
            exposed = await self.exposed() if self.exposed is not None else []
            repairs = await asyncio.to_thread(
                datapath.ensure, self.router_ns, self.mtu, self.overlay_spec, exposed)
        except WeaveError as err:
            self._failed(str(err))
            return False
        except Exception as err:  # noqa: BLE001 - a bug must not stop the router; log it
            self._failed(f"unexpected {type(err).__name__}: {err}")
            log.debug("data path pass failed", exc_info=True)
            return False
        if self.last_error is not None:
            log.info("data path: ensured again after an error")
            self.last_error = None
        for line in repairs:
            log.info("data path: %s", line)
        return True

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("data path: %s (retrying every %.0fs)", message, self.interval)
        self.last_error = message

    async def run(self, first_delay: float = 0.0) -> None:
        """Reconcile forever (until cancelled); the first pass after ``first_delay``."""
        await asyncio.sleep(first_delay)
        while True:
            await self.ensure_once()
            await asyncio.sleep(self.interval)


def for_router() -> DatapathKeeper | None:  # the router sets mtu and overlay_spec
    """A keeper for the router's own namespace, or None (logged once) when it cannot work."""
    if os.geteuid() != 0:
        log.info("not running as root: the bridge and firewall rules are not managed")
        return None
    try:
        import pyroute2  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as err:
        log.warning("pyroute2 unavailable (%s): the bridge and firewall rules are not managed", err)
        return None
    return DatapathKeeper()
