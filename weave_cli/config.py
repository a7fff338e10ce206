"""Parsing and validation of what operators type: peers, ports, launch options.

Everything here is pure: it turns strings into values or raises a ``UsageError`` subclass whose
message names the bad value and what a good one looks like. The validated ``LaunchConfig`` is
what ``weave launch`` hands to the router (as a 0600 JSON file, never on a command line).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from weave_cli.errors import InvalidPeerError, InvalidPortError, UsageError
from weave_cli.names import MESH_PORT, STATUS_PORT
from weave_cli.router.peer import PeerName, valid_nickname

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_port(text: str | int, what: str = "port") -> int:
    """A TCP/UDP port number 1..65535."""
    try:
        port = int(text)
    except (TypeError, ValueError):
        port = -1
    if not 1 <= port <= 65535 or (
        isinstance(text, str) and not (text.isascii() and text.isdigit())
    ):
        raise InvalidPortError(
            f"invalid {what} {text!r}", "give a number between 1 and 65535, e.g. --port 6783"
        )
    return port


def split_peer(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 as ``[addr]:port``) into host and optional port."""
    bad = InvalidPeerError(
        f"invalid peer {text!r}",
        "a peer is host[:port], e.g. 192.168.1.2, 192.168.1.2:6783, node-1.example, [fd00::1]:6783",
    )
    if not text or len(text) > 260 or text != text.strip():
        raise bad
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise bad
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise bad
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad from None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise bad  # bare IPv6 must be bracketed when a port could follow
    if not host:
        raise bad
    if not text.startswith("["):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if host.replace(".", "").isdigit() or not _HOSTNAME_RE.match(host):
                raise bad from None
    port = None
    if port_text is not None:
        try:
            port = parse_port(port_text)
        except InvalidPortError as err:
            raise InvalidPeerError(
                f"invalid port {port_text!r} in peer {text!r}", err.hint
            ) from None
    return host, port


def parse_peer(text: str) -> str:
    """Validate a peer argument and return it unchanged (targets are kept as typed)."""
    split_peer(text)
    return text


def peer_address(text: str, default_port: int) -> tuple[str, int]:
    host, port = split_peer(text)
    return host, port if port is not None else default_port


def parse_log_level(text: str) -> str:
    level = text.lower()
    if level == "warn":
        level = "warning"
    if level not in LOG_LEVELS:
        raise UsageError(f"invalid log level {text!r}", "use one of " + ", ".join(LOG_LEVELS))
    return level


def parse_http_addr(text: str) -> tuple[str, int]:
    """``[host]:port`` for --http-addr/--status-addr; empty host means 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise UsageError(f"invalid address {text!r}", "use host:port, e.g. 127.0.0.1:6784")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"invalid address {text!r}", "the host must be an IP address") from None
    return host, parse_port(port)


MAX_TRUSTED_SUBNETS = 5


def parse_subnets(cidrs: list[str]) -> list[str]:
    """``--trusted-subnets`` entries (each may itself be comma-separated) as canonical CIDRs."""
    out: list[str] = []
    for text in (part.strip() for item in cidrs for part in item.split(",")):
        if not text:
            continue
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise UsageError(f"invalid subnet {text!r} in --trusted-subnets",
                             "give CIDRs separated by commas, e.g. 10.0.0.0/8,192.168.1.0/24"
                             ) from None
    if len(out) > MAX_TRUSTED_SUBNETS:
        # they become one firewall rule whose comment (at most 128 bytes) lists them
        raise UsageError(f"too many --trusted-subnets ({len(out)})",
                         f"give at most {MAX_TRUSTED_SUBNETS}, merging neighbours into wider "
                         "prefixes (e.g. 10.0.0.0/8)")
    return out


@dataclass
class LaunchConfig:
    """Everything the router needs to start; serialised to $WEAVE_RUN_DIR/launch.json (0600)."""

    peers: list[str] = field(default_factory=list)
    name: str | None = None
    nickname: str | None = None
    host: str = "0.0.0.0"
    port: int = MESH_PORT
    conn_limit: int = 200
    discovery: bool = True
    resume: bool = False
    restart: bool = True
    log_level: str = "info"
    http_addr: str | None = None
    status_addr: str | None = "127.0.0.1:6782"
    heartbeat_interval: float = 5.0
    gossip_interval: float = 30.0
    retry_max: float = 60.0
    ipalloc_range: str | None = None  # None: the default range (an overlap is then an error)
    ipalloc_default_subnet: str | None = None
    ipalloc_init: str | None = None  # None: consensus=1 (see weave_cli.ipam.options)
    ipalloc_timeout: float = 30.0
    ipam_recover: str | None = None
    no_fastdp: bool = False  # sleeve only: no VXLAN device is made
    mtu: int | None = None  # the overlay MTU; None: underlay MTU minus FASTDP_OVERHEAD
    # A password was given: it is in Paths.password_file (0600), never in this file.
    encrypted: bool = False
    trusted_subnets: list[str] = field(default_factory=list)  # --trusted-subnets, as CIDRs

    @property
    def ipam_range(self) -> str:
        """The allocation range in effect ("" when IPAM is disabled)."""
        from weave_cli.ipam.options import DEFAULT_RANGE

        return DEFAULT_RANGE if self.ipalloc_range is None else self.ipalloc_range

    @property
    def listener_ports(self) -> tuple[int, ...]:
        """The TCP ports of the router's HTTP listeners, for the firewall's input guard: the
        status listener's (``STATUS_PORT`` when it is disabled: the original's port stays
        guarded), then ``--http-addr``'s when given. Valid only after ``validate``."""
        status = parse_http_addr(self.status_addr)[1] if self.status_addr else STATUS_PORT
        http = (parse_http_addr(self.http_addr)[1],) if self.http_addr else ()
        return (status, *http)

    def validate(self) -> LaunchConfig:
        self.peers = [parse_peer(p) for p in self.peers]
        if self.resume and self.peers:
            raise UsageError(
                "--resume cannot be combined with a peer list",
                "drop the peers (the persisted targets are used) or drop --resume",
            )
        if self.name is not None:
            try:
                self.name = str(PeerName.parse(self.name))
            except ValueError as err:
                raise UsageError(str(err), "give --name as six hex pairs") from None
        if self.nickname is not None and not valid_nickname(self.nickname):
            raise UsageError(
                f"invalid nickname {self.nickname!r}",
                "use letters, digits, '.', '_' or '-' (at most 64 characters)",
            )
        self.port = parse_port(self.port)
        if self.conn_limit < 0:
            raise UsageError(f"invalid --conn-limit {self.conn_limit}", "use 0 (no limit) or more")
        self.log_level = parse_log_level(self.log_level)
        for addr in (self.http_addr, self.status_addr):
            if addr:
                parse_http_addr(addr)
        if self.heartbeat_interval <= 0 or self.gossip_interval <= 0 or self.retry_max <= 0:
            raise UsageError("intervals must be positive", "check --heartbeat-interval")
        if not 0 < self.ipalloc_timeout <= 3600:
            raise UsageError(
                f"invalid --ipalloc-timeout {self.ipalloc_timeout}", "use seconds, 0 < t <= 3600"
            )
        if self.mtu is not None and not 576 <= self.mtu <= 65485:
            raise UsageError(f"invalid --mtu {self.mtu}",
                             "give the container MTU in bytes, 576..65485 (e.g. --mtu 1410)")
        self.trusted_subnets = parse_subnets(self.trusted_subnets)
        from weave_cli.ipam.options import check_options

        check_options(
            self.ipam_range, self.ipalloc_default_subnet, self.ipalloc_init, self.ipam_recover
        )
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LaunchConfig:
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise UsageError("launch configuration is not an object", "re-run 'weave launch'")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known}).validate()
