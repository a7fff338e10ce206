"""``weave launch`` and the launching half of ``weave join``.

The CLI validates the options into a ``LaunchConfig``, writes it to $WEAVE_RUN_DIR/launch.json
(0600), starts ``weave-router supervise`` (or ``run`` with --no-restart) detached in its own
session with output to $WEAVE_RUN_DIR/weave.log, and waits until the router answers ready.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from weave_cli.errors import AlreadyRunningError, RouterError, TimeoutError_
from weave_cli.names import Paths

if TYPE_CHECKING:
    from weave_cli.config import LaunchConfig
    from weave_cli.crypto.secret import Secret

READY_TIMEOUT = 30.0

PeersArg = Annotated[
    Optional[list[str]],
    typer.Argument(help="Peers to connect to: host[:port].", show_default=False),
]
NameOpt = Annotated[
    Optional[str],
    typer.Option("--name", help="Peer name (MAC format); default: random, then persisted."),
]
NickOpt = Annotated[
    Optional[str],
    typer.Option("--nickname", help="Human-readable peer name; default: the host name."),
]
PortOpt = Annotated[str, typer.Option("--port", help="Mesh port (TCP control, UDP data).")]
ConnLimitOpt = Annotated[
    int, typer.Option("--conn-limit", help="Maximum connections (0 = unlimited).")
]
NoDiscoveryOpt = Annotated[
    bool, typer.Option("--no-discovery", help="Do not connect to peers learned by gossip.")
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Reconnect to the persisted targets.")]
NoRestartOpt = Annotated[
    bool, typer.Option("--no-restart", help="Do not restart the router when it crashes.")
]
LogLevelOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
HttpAddrOpt = Annotated[
    Optional[str],
    typer.Option(
        "--http-addr",
        help="Also serve the full control API on this TCP address (e.g. 127.0.0.1:6784).",
    ),
]
StatusAddrOpt = Annotated[
    str, typer.Option("--status-addr", help="Read-only status address ('' disables).")
]
HostOpt = Annotated[str, typer.Option("--host", help="Address the mesh listens on.")]
IpallocRangeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ipalloc-range",
        help="Address range for automatic allocation (default 10.32.0.0/12; '' disables IPAM).",
        show_default=False,
    ),
]
IpallocSubnetOpt = Annotated[
    Optional[str],
    typer.Option("--ipalloc-default-subnet", help="Subnet to allocate from by default."),
]
IpallocInitOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ipalloc-init",
        help="consensus[=N], seed=NAME,... or observer (default: consensus=peers+1; "
        "observer for join).",
        show_default=False,
    ),
]
IpallocTimeoutOpt = Annotated[
    float,
    typer.Option("--ipalloc-timeout", help="Seconds an allocation may wait before 503."),
]
IpamRecoverOpt = Annotated[
    Optional[str],
    typer.Option(
        "--ipam-recover",
        help="relearn: the IPAM database is lost; keep the peer name and re-learn its ranges.",
    ),
]
NoFastdpOpt = Annotated[
    bool,
    typer.Option("--no-fastdp", envvar="WEAVE_NO_FASTDP",
                 help="Carry traffic between hosts in the sleeve only (no kernel VXLAN)."),
]
MtuOpt = Annotated[
    Optional[int],
    typer.Option("--mtu", envvar="WEAVE_MTU",
                 help="Container MTU; default: the underlay's MTU minus 50 (VXLAN overhead)."),
]
PasswordOpt = Annotated[
    Optional[str],
    typer.Option("--password", show_default=False,
                 help="Encrypt the network with this password (visible in the process list: "
                 "prefer --password-file or WEAVE_PASSWORD)."),
]
PasswordFileOpt = Annotated[
    Optional[str],
    typer.Option("--password-file", show_default=False,
                 help="Encrypt the network with the password in this file (mode 0600)."),
]
TrustedSubnetsOpt = Annotated[
    Optional[str],
    typer.Option("--trusted-subnets", show_default=False,
                 help="CIDR,...: peers here may carry data unencrypted if they trust us too."),
]
HeartbeatOpt = Annotated[float, typer.Option("--heartbeat-interval", hidden=True)]
GossipOpt = Annotated[float, typer.Option("--gossip-interval", hidden=True)]
RetryMaxOpt = Annotated[float, typer.Option("--retry-max", hidden=True)]


def build_config(
    peers: list[str] | None,
    *,
    name: str | None,
    nickname: str | None,
    port: str,
    conn_limit: int,
    no_discovery: bool,
    resume: bool = False,
    no_restart: bool,
    log_level: str,
    http_addr: str | None,
    status_addr: str,
    host: str,
    heartbeat_interval: float,
    gossip_interval: float,
    retry_max: float,
    ipalloc_range: str | None = None,
    ipalloc_default_subnet: str | None = None,
    ipalloc_init: str | None = None,
    ipalloc_timeout: float = 30.0,
    ipam_recover: str | None = None,
    no_fastdp: bool = False,
    mtu: int | None = None,
    joining: bool = False,
    encrypted: bool = False,
    trusted_subnets: str | None = None,
) -> LaunchConfig:
    from weave_cli.config import LaunchConfig, parse_port
    from weave_cli.ipam.options import default_init

    if ipalloc_init is None and ipalloc_range != "":
        ipalloc_init = default_init(len(peers or []), joining)
    return LaunchConfig(
        peers=list(peers or []),
        name=name,
        nickname=nickname,
        host=host,
        port=parse_port(port),
        conn_limit=conn_limit,
        discovery=not no_discovery,
        resume=resume,
        restart=not no_restart,
        log_level=log_level,
        http_addr=http_addr or None,
        status_addr=status_addr or None,
        heartbeat_interval=heartbeat_interval,
        gossip_interval=gossip_interval,
        retry_max=retry_max,
        ipalloc_range=ipalloc_range,
        ipalloc_default_subnet=ipalloc_default_subnet or None,
        ipalloc_init=ipalloc_init,
        ipalloc_timeout=ipalloc_timeout,
        ipam_recover=ipam_recover,
        no_fastdp=no_fastdp,
        mtu=mtu,
        encrypted=encrypted,
        trusted_subnets=[trusted_subnets] if trusted_subnets else [],
    ).validate()


def take_password(options: dict[str, Any]) -> Secret | None:
    """Pop --password/--password-file from a command's options and choose the password
    (warnings go to stderr); sets ``encrypted`` in ``options`` for ``build_config``."""
    from weave_cli.crypto.password import choose_password

    secret = choose_password(options.pop("password", None), options.pop("password_file", None),
                             os.environ, lambda text: print(text, file=sys.stderr))
    options["encrypted"] = secret is not None
    return secret


def running_pid(paths: Paths) -> int | None:
    """The launcher's (or router's) pid if one runs; stale pid files are removed."""
    from weave_cli.router import state

    return state.read_pid(paths.launcher_pidfile) or state.read_pid(paths.router_pidfile)


def start_router(cfg: LaunchConfig, paths: Paths, password: Secret | None = None) -> str:
    """Start the router detached, wait until ready, return its peer name. The password goes
    to its own 0600 file (removed when there is none, so no stale one is ever used)."""
    from weave_cli.client import RouterClient
    from weave_cli.router import state

    state.ensure_dirs(paths)
    pid = running_pid(paths)
    client = RouterClient(paths, timeout=2.0)
    if pid is not None or client.ready():
        raise AlreadyRunningError(
            "weave is already running" + (f" (pid {pid})" if pid else ""),
            "use 'weave connect PEER' to add peers, or 'weave stop' first",
        )
    state.remove_quietly(paths.socket)
    for rotating in (paths.password_next_file, paths.password_previous_file):
        state.remove_quietly(rotating)  # a launch names one password: no rotation carries on
    if password is not None and cfg.encrypted:
        state.write_atomic(paths.password_file, password.reveal().decode("utf-8"))
    else:
        cfg.encrypted = False
        state.remove_quietly(paths.password_file)
    state.write_atomic(paths.launch_config, cfg.to_json())
    dropped = ("WEAVE_SUPERVISED", "WEAVE_RESTART_COUNT", "WEAVE_PASSWORD")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["WEAVE_STATE_DIR"], env["WEAVE_RUN_DIR"] = str(paths.state_dir), str(paths.run_dir)
    mode = "supervise" if cfg.restart else "run"
    fd = os.open(paths.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # also a log left by an older version with the umask's mode
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "weave_cli.router.entry", mode],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=env,
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if client.ready(timeout=1.0):
            report = client.call("GET", "/report").json()
            try:
                return str(report["Router"]["Name"])
            except (KeyError, TypeError):
                raise RouterError("the router's report has no peer name") from None
        code = proc.poll()
        if code is not None and not (cfg.restart and code == 0):
            raise RouterError(
                f"the router exited during start-up: {_last_log_line(paths)}",
                f"see {paths.log_file}",
            )
        time.sleep(0.05)
    raise TimeoutError_(
        f"the router did not become ready within {READY_TIMEOUT:.0f}s", f"see {paths.log_file}"
    )


def _last_log_line(paths: Paths) -> str:
    try:
        lines = paths.log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):  # the router's own reason, not the supervisor's verdict on it
        if ("ERROR" in line or "Error" in line) and " weave.supervisor: " not in line:
            return line.split(": ", 1)[-1]
    return lines[-1] if lines else "no log"


def launch(
    peers: PeersArg = None,
    name: NameOpt = None,
    nickname: NickOpt = None,
    port: PortOpt = "6783",
    conn_limit: ConnLimitOpt = 200,
    no_discovery: NoDiscoveryOpt = False,
    resume: ResumeOpt = False,
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
    """Start the router on this host, optionally connecting to PEERs. Prints the peer name."""
    options = dict(locals())
    secret = take_password(options)
    cfg = build_config(**options)
    print(start_router(cfg, Paths.from_env(), secret))
