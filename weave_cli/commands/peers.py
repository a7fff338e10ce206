"""``weave join``, ``weave connect`` and ``weave forget``: manage the router's targets."""

from __future__ import annotations

from typing import Annotated

import typer

from weave_cli.commands.launch import (
    ConnLimitOpt,
    GossipOpt,
    HeartbeatOpt,
    HostOpt,
    HttpAddrOpt,
    IpallocInitOpt,
    IpallocRangeOpt,
    IpallocSubnetOpt,
    IpallocTimeoutOpt,
    IpamRecoverOpt,
    LogLevelOpt,
    MtuOpt,
    NameOpt,
    NickOpt,
    NoDiscoveryOpt,
    NoFastdpOpt,
    NoRestartOpt,
    PasswordFileOpt,
    PasswordOpt,
    PortOpt,
    RetryMaxOpt,
    StatusAddrOpt,
    TrustedSubnetsOpt,
)
from weave_cli.errors import UsageError
from weave_cli.names import Paths

RequiredPeers = Annotated[list[str], typer.Argument(help="Peers: host[:port].", show_default=False)]


def _post(url: str, peers: list[str], replace: bool = False) -> None:
    from weave_cli.client import RouterClient
    from weave_cli.config import parse_peer

    for peer in peers:
        parse_peer(peer)
    form = {"peer": peers}
    if replace:
        form["replace"] = ["true"]
    RouterClient().call("POST", url, form=form)


def connect(
    peers: Annotated[
        list[str] | None, typer.Argument(help="Peers: host[:port].", show_default=False)
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the target list instead of adding to it.")
    ] = False,
) -> None:
    """Add PEERs to the running router's targets (the original's name for join)."""
    if not peers and not replace:
        raise UsageError("connect needs at least one peer", "e.g. weave connect 192.168.1.2")
    _post("/connect", peers or [], replace)


def forget(peers: RequiredPeers) -> None:
    """Remove PEERs from the router's targets (existing connections stay until they drop)."""
    _post("/forget", peers)


def join(
    peers: RequiredPeers,
    name: NameOpt = None,
    nickname: NickOpt = None,
    port: PortOpt = "6783",
    conn_limit: ConnLimitOpt = 200,
    no_discovery: NoDiscoveryOpt = False,
    no_restart: NoRestartOpt = False,
    log_level: LogLevelOpt = "info",
    http_addr: HttpAddrOpt = None,
    status_addr: StatusAddrOpt = "127.0.0.1:6782",
    host: HostOpt = "0.0.0.0",
    heartbeat_interval: HeartbeatOpt = 5.0,
    gossip_interval: GossipOpt = 30.0,
    retry_max: RetryMaxOpt = 60.0,
    ipalloc_range: IpallocRangeOpt = None,
    ipalloc_default_subnet: IpallocSubnetOpt = None,
    ipalloc_init: IpallocInitOpt = None,
    ipalloc_timeout: IpallocTimeoutOpt = 30.0,
    ipam_recover: IpamRecoverOpt = None,
    no_fastdp: NoFastdpOpt = False,
    mtu: MtuOpt = None,
    password: PasswordOpt = None,
    password_file: PasswordFileOpt = None,
    trusted_subnets: TrustedSubnetsOpt = None,
) -> None:
    """Join the network through PEERs: launch the router with them if none runs, else connect.
    A router launched by join is an IPAM observer: it adopts the existing ring, never seeds one."""
    options = dict(locals(), joining=True)
    from weave_cli.commands.launch import build_config, running_pid, start_router, take_password

    secret = take_password(options)
    cfg = build_config(**options)
    paths = Paths.from_env()
    if running_pid(paths) is not None:
        _post("/connect", cfg.peers)  # a running router keeps the password it started with
        return
    print(start_router(cfg, paths, secret))
