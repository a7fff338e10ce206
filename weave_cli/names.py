"""Every name, port and path weave owns, in one place.

The router, the CLI's ``reset``, the lab and the tests all take names from here, so ``reset``
can delete exactly what weave created and nothing else. Kernel objects get added here as the
data path grows (bridge, VXLAN device, veth prefixes, nftables table).

Paths come from the environment so several routers can share one machine, each in its own
network namespace (the lab does exactly that):

    WEAVE_STATE_DIR (default /var/lib/weave)  persistent: peer name, targets, IPAM database
    WEAVE_RUN_DIR   (default /run/weave)      volatile: pid files, control socket, logs
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Ports (the original's numbers).
MESH_PORT = 6783  # TCP control plane; UDP sleeve
STATUS_PORT = 6782  # read-only status/report on 127.0.0.1
CONTROL_PORT = 6784  # the original's control API address; only with --http-addr

# Kernel objects owned by weave (the data path adds to these).
BRIDGE = "weave"
CONTAINER_IFNAME = "ethwe"
VETH_HOST_PREFIX = "vethwepl"
VETH_PEER_PREFIX = "vethwepg"
NFT_TABLE = "weave"
NFT_FAMILY = "inet"  # `table inet weave`: one table for filter and NAT, replaced atomically
# Our rules in other tables' chains (iptables DOCKER-USER or FORWARD) carry a comment with this
# prefix; nothing else does, so reset removes exactly those rules.
FIREWALL_COMMENT_PREFIX = "weave:"
# The host end of a container's veth is VETH_HOST_PREFIX + the target namespace's inode in base
# 36 (7 characters, so the name fits IFNAMSIZ); its alias is VETH_ALIAS_TAG, the IPAM ident and
# the namespace's path, which is how ps, detach and reset find an attachment again.
VETH_ALIAS_TAG = "weave-attached"
EXPOSE_IDENT = "weave:expose"  # the IPAM ident of the host's own addresses on the bridge
# Between hosts. fastdp is the kernel's VXLAN on UDP port+1 (6784), a port of the bridge; its
# heartbeats travel on a second VXLAN device with its own VNI that is on no bridge, so they
# never reach a container. The sleeve is a TAP port of the bridge, served by the router's
# forwarder process, on UDP port (6783). The VXLAN and TAP ports are "isolated" bridge ports:
# a frame that came from one host never leaves through the other overlay.
VXLAN_IFNAME = "weave-vxlan"
VXLAN_HB_IFNAME = "weave-vxhb"
SLEEVE_IFNAME = "weave-sleeve"
VXLAN_VNI = 0x5756  # "WV": the data VNI, one flat layer 2 for the whole network
VXLAN_HB_VNI = VXLAN_VNI + 1
FASTDP_PORT_OFFSET = 1  # fastdp's UDP port is the mesh port + 1, as in the original
# Outer IPv4 (20) + UDP (8) + VXLAN (8) + the inner Ethernet header (14): a container MTU this
# much below the underlay's keeps every VXLAN packet unfragmented.
FASTDP_OVERHEAD = 50
HEARTBEAT_ETHERTYPE = 0x88B5  # IEEE local experimental: fastdp heartbeat frames

# The network policy controller (weave-npc) owns `table inet weave-npc` (the policy, on the
# forward hook, where bridged frames arrive too through br_netfilter) and `table bridge
# weave-npc` (marks the frames of this node's pod ports; drops what goes to an unknown pod).
# The two mark bits are ours; every other bit of the packet mark (kube-proxy's 0x4000 and
# 0x8000 among them) is left as it was.
NPC_TABLE = "weave-npc"
NPC_MARK_FROM_POD = 0x00100000  # the frame came in through a pod port of this node
NPC_MARK_TO_POD = 0x00200000  # the frame is bridged out through a pod port of this node
POD_PORT_GLOB = VETH_HOST_PREFIX + "*"  # the host ends of pods' veths (nft wildcard)

# Lab objects: every lab namespace is "<LAB_PREFIX><lab>-<node>"; nothing else uses the prefix.
LAB_PREFIX = "wl-"
LAB_BRIDGE = "br0"  # the underlay switch, inside the lab's switch namespace only
LAB_HOST_IFNAME = "eth0"  # a lab host's underlay interface, inside its namespace
LAB_NFT_TABLE = "weavelab"  # bridge-family table for partitions, in the switch namespace only
LAB_STATE_ROOT = Path("/var/lib/weave-lab")
LAB_RUN_ROOT = Path("/run/weave-lab")


@dataclass(frozen=True)
class Paths:
    """Files of one router instance, derived from its state and run directories."""

    state_dir: Path
    run_dir: Path

    @classmethod
    def from_env(cls) -> Paths:
        return cls(
            state_dir=Path(os.environ.get("WEAVE_STATE_DIR") or "/var/lib/weave"),
            run_dir=Path(os.environ.get("WEAVE_RUN_DIR") or "/run/weave"),
        )

    # --- run dir (volatile) ---
    @property
    def socket(self) -> Path:
        """Control API socket (mode 0600): everything that changes state is served here."""
        return self.run_dir / "weave.sock"

    @property
    def launcher_pidfile(self) -> Path:
        """PID of the supervisor (or of the router itself with --no-restart)."""
        return self.run_dir / "weave.pid"

    @property
    def launcher_lock(self) -> Path:
        """flock()ed by the one launcher of this run dir for its whole life."""
        return self.run_dir / "weave.lock"

    @property
    def router_pidfile(self) -> Path:
        return self.run_dir / "router.pid"

    @property
    def launch_config(self) -> Path:
        """The launch configuration handed to the router (0600; never on a command line)."""
        return self.run_dir / "launch.json"

    @property
    def password_file(self) -> Path:
        """The mesh password (0600; written by launch, read by the router at every start;
        never in launch.json, never on a command line)."""
        return self.run_dir / "password"

    @property
    def password_next_file(self) -> Path:
        """A rotation begun: the next password, accepted besides ``password_file`` (0600)."""
        return self.run_dir / "password.next"

    @property
    def password_previous_file(self) -> Path:
        """A rotation switched: the previous password, still accepted (0600)."""
        return self.run_dir / "password.previous"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "weave.log"

    @property
    def stopping_flag(self) -> Path:
        return self.run_dir / "stopping"

    # --- state dir (persistent) ---
    @property
    def peer_file(self) -> Path:
        """The persisted peer name (MAC format)."""
        return self.state_dir / "peer.json"

    @property
    def targets_file(self) -> Path:
        """Direct connection targets, for --resume."""
        return self.state_dir / "targets.json"

    @property
    def ipam_db(self) -> Path:
        """IPAM's SQLite database (WAL mode: the -wal and -shm files sit beside it)."""
        return self.state_dir / "ipam.db"

    def owned_state_files(self) -> list[Path]:
        db = self.ipam_db
        wal, shm = db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
        return [self.peer_file, self.targets_file, db, wal, shm]

    def owned_run_files(self) -> list[Path]:
        return [
            self.socket,
            self.launcher_pidfile,
            self.launcher_lock,
            self.router_pidfile,
            self.launch_config,
            self.password_file,
            self.password_next_file,
            self.password_previous_file,
            self.log_file,
            self.stopping_flag,
        ]
