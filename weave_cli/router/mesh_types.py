"""The vocabulary between ``MeshCore`` and its driver: configuration, actions, connections.

Actions are what the core asks the driver to do; the driver carries them out in order:

* ``Dial``: open TCP to host:port, then call ``connection_opened(..., target=target)`` or
  ``dial_failed(target, error)``;
* ``Send``: write the bytes to that connection;
* ``Close``: close that socket (the core has already forgotten the connection);
* ``TargetsChanged``: persist the direct targets (for ``--resume``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from weave_cli.crypto.handshake import PasswordKeys
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import ConnectionProtocol, ProtocolSettings, RemoteIdentity
from weave_cli.router.targets import address_key


@dataclass(frozen=True)
class MeshConfig:
    name: PeerName
    nickname: str
    uid: int
    port: int = 6783
    conn_limit: int = 200  # 0 = unlimited
    discovery: bool = True
    gossip_interval: float = 30.0  # periodic anti-entropy
    protocol: ProtocolSettings = ProtocolSettings()
    retry_initial: float = 2.0
    retry_max: float = 60.0
    # True when an overlay runs and confirms each link's data path (the router as root); the
    # pure tests and a router that manages no data path leave links confirmed at handshake.
    confirm_data_path: bool = False
    # The scrypt key(s) of the password (weave_cli.crypto.kdf.password_key): the one we send
    # with, and during a rotation one more we accept; None = plaintext. ``MeshCore`` holds the
    # current ones (``password_keys``), which a rotation replaces at run time.
    password_keys: PasswordKeys | None = field(default=None, repr=False, compare=False)
    trusted_subnets: tuple[str, ...] = ()  # --trusted-subnets, as given (validated CIDRs)


@dataclass(frozen=True)
class Dial:
    target: str
    host: str
    port: int


@dataclass(frozen=True)
class Send:
    conn: int
    data: bytes


@dataclass(frozen=True)
class Close:
    conn: int
    reason: str


@dataclass(frozen=True)
class TargetsChanged:
    targets: tuple[str, ...]


Action = Dial | Send | Close | TargetsChanged


@dataclass
class Conn:
    id: int
    proto: ConnectionProtocol
    address: tuple[str, int]
    outbound: bool
    target: str | None
    remote: RemoteIdentity | None = None
    conn_uid: int = 0
    established_at: float | None = None
    superseded: bool = False  # closed as a duplicate: its target is satisfied by the survivor
    # Set by the overlay (``MeshCore.set_overlay``): until the data path to the peer is
    # confirmed the connection shows as pending and is left out of the routes.
    data_path_confirmed: bool = True
    overlay: str = "none"  # "fastdp", "sleeve" or "none": what carries this link's traffic
    extra: dict[str, object] = field(default_factory=dict)  # status attributes, e.g. mtu
    # Both ends trust each other (--trusted-subnets): the data path may skip encryption.
    data_plaintext: bool = False

    @property
    def address_text(self) -> str:
        return address_key(*self.address)


@dataclass
class RefusedPeers:
    """Inbound connections refused with ``auth_failed``, by source IP, for ``weave status``:
    the dialling side shows the reason on its target, this is the refusing side's view. At most
    ``limit`` sources, each shown for ``keep`` seconds after its last refusal."""

    limit: int = 64
    keep: float = 60.0
    entries: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # ip -> addr, why, t

    def note(self, ip: str, address: str, reason: str, now: float) -> None:
        self.entries.pop(ip, None)
        self.entries[ip] = (address, reason, now)
        while len(self.entries) > self.limit:
            del self.entries[next(iter(self.entries))]

    def current(self, now: float) -> list[tuple[str, str]]:
        for ip in [ip for ip, (_a, _r, t) in self.entries.items() if now - t > self.keep]:
            del self.entries[ip]
        return [(addr, reason) for addr, reason, _t in self.entries.values()]
