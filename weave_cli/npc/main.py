"""``weave-npc``: the network policy controller (docs/npc.md).

    weave-npc [--api-server URL [--token-file F] [--ca-file F]] [--reconcile-interval S]

Without ``--api-server`` it uses the pod's service account (in-cluster). It runs in the node's
network namespace until SIGTERM or SIGINT, which stop it and leave its rules in the kernel.
Exit codes: 0 stopped by a signal; 8 not root; 20 no usable API configuration; 15 the kernel
cannot carry the policy (no br_netfilter, nft failing on a node whose pod ports it must close);
1 an unexpected failure (logged).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from weave_cli.errors import PrivilegeError, WeaveError

if TYPE_CHECKING:
    from weave_cli.npc.kubeconf import ApiConfig

log = logging.getLogger("weave.npc")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weave-npc", description=__doc__.split("\n")[0])
    parser.add_argument("--api-server", metavar="URL",
                        help="the API server (default: the in-cluster service account's)")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="a file holding the bearer token (never pass the token itself)")
    parser.add_argument("--ca-file", type=Path, metavar="FILE",
                        help="the CA bundle that signs the API server's certificate")
    parser.add_argument("--reconcile-interval", type=float, default=5.0, metavar="SECONDS",
                        help="how often the kernel's tables are checked (default 5)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    return parser


async def _serve(config: ApiConfig, interval: float) -> int:
    from weave_cli.npc import controller, kernel, kubeapi

    queue: asyncio.Queue[kubeapi.Message] = asyncio.Queue()
    watch = kubeapi.KubeWatch(config, queue.put_nowait)
    kern = controller.Kernel(kernel.read, kernel.apply, kernel.ensure_bridge_netfilter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(watch.run(), name="informers"),
             asyncio.create_task(controller.run(queue, kern, interval), name="controller")]
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    for task in [*tasks, stopper]:
        task.cancel()
    await asyncio.gather(*tasks, stopper, return_exceptions=True)
    if stopper in done:
        log.info("npc: stopped; the policy stays in the kernel")
        return 0
    for task in done:
        if (err := task.exception()) is not None:
            raise err
    return 1


def _warn_ipvs() -> None:
    """kube-proxy's IPVS mode sends Services' packets from the node, past the forward hook
    where the policy sits (docs/npc.md): say so rather than enforce less than promised."""
    import socket

    try:
        socket.if_nametoindex("kube-ipvs0")
    except OSError:
        return
    log.warning("npc: kube-ipvs0 exists: kube-proxy in IPVS mode is not supported; traffic to "
                "Services skips the policy (use the iptables or nftables mode)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.reconcile_interval <= 0:
        print("weave-npc: --reconcile-interval must be above 0", file=sys.stderr)
        return 2
    try:
        if os.geteuid() != 0:
            raise PrivilegeError("weave-npc must run as root", "run it with sudo")
        from weave_cli.npc import kernel
        from weave_cli.npc.kubeconf import ApiConfig

        config = (ApiConfig.explicit(args.api_server, args.token_file, args.ca_file)
                  if args.api_server else ApiConfig.in_cluster())
        kernel.ensure_bridge_netfilter()
        _warn_ipvs()
        log.info("npc: starting; API server %s", config.base_url)
        return asyncio.run(_serve(config, args.reconcile_interval))
    except WeaveError as err:
        print(f"weave-npc: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"  {err.hint}", file=sys.stderr)
        return err.exit_code
    except Exception:
        log.exception("npc: failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
