"""The `weave report` "Router" section of a ``MeshCore``, with the original's field names. Pure.

``Connections`` lists every live connection, then every target not served by one:

* established connection: state ``established`` (``pending`` while the data path is not
  confirmed), info ``"{overlay:<6} {name}({nick})"`` with overlay ``fastdp``, ``sleeve`` or
  ``none`` (not yet decided); attributes ``mtu`` and, when not on fastdp, ``fastdp`` (why),
  set by the overlay, plus ``encrypted`` (and ``data_plaintext`` when both ends trust each
  other's subnet) from ``mesh_crypto.crypto_attrs``, merged at rendering so neither clobbers;
* connection still in its handshake: outbound ones show their target's ``connecting`` /
  ``retrying``; inbound ones are ``pending`` with info "handshake in progress";
* an inbound connection refused for its password (``auth_failed``) in the last minute:
  ``failed`` with the reason, by source address (``RefusedPeers``);
* target without a connection: ``connecting`` (info empty), ``retrying`` (info: the last
  error) while a dial is in flight, or ``failed`` ("{error}, retry: {time}") while waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weave_cli.router.mesh_crypto import crypto_attrs
from weave_cli.router.peer import PeerName

if TYPE_CHECKING:
    from weave_cli.router.mesh import MeshCore

UNKNOWN = str(PeerName(0))


def render_status(core: MeshCore, now: float, wall: float | None) -> dict[str, object]:
    cfg, topo = core.config, core.topology
    peers = []
    for entry in topo.ordered():
        conns = []
        for cs in entry.connections:
            remote = topo.get(cs.name)
            conns.append({"Name": str(cs.name), "NickName": remote.nickname if remote else "",
                          "Address": cs.address, "Outbound": cs.outbound,
                          "Established": cs.established})
        peers.append({"Name": str(entry.name), "NickName": entry.nickname, "UID": entry.uid,
                      "ShortID": entry.short_id, "Version": entry.version,
                      "Connections": conns})
    unicast = [{"Dest": str(cfg.name), "Via": UNKNOWN}]
    unicast += [{"Dest": str(dest), "Via": str(hop)}
                for dest, hop in sorted(topo.unicast_routes().items())]
    broadcast = [{"Source": str(e.name), "Via": [str(c) for c in topo.broadcast_children(e.name)]}
                 for e in topo.ordered()]
    return {
        "Protocol": "weave",
        "ProtocolMinVersion": cfg.protocol.min_version,
        "ProtocolMaxVersion": cfg.protocol.max_version,
        "Encryption": core.password_keys is not None,
        "PasswordRotation": core.password_keys.rotation if core.password_keys else "",
        "PeerDiscovery": cfg.discovery,
        "Name": str(cfg.name),
        "NickName": cfg.nickname,
        "Port": cfg.port,
        "ConnLimit": cfg.conn_limit,
        "Peers": peers,
        "UnicastRoutes": unicast,
        "BroadcastRoutes": broadcast,
        "Connections": _connections(core, now, wall),
        "TerminationCount": core.termination_count,
        "Targets": list(core.targets.direct()),
        "TrustedSubnets": [str(net) for net in core.trusted],
    }


def _connections(core: MeshCore, now: float, wall: float | None) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    served: set[str] = set()
    for c in sorted(core.conns.values(), key=lambda c: c.id):
        target = core.targets.get(c.target)
        if target is not None:
            served.add(target.key)
        if c.remote is not None:
            state = "established" if c.data_path_confirmed else "pending"
            info = f"{c.overlay:<6} {c.remote.name}({c.remote.nickname})"
        elif target is not None and c.outbound:
            state, info = target.state(), target.info(now, wall)
            state = "connecting" if state == "connected" else state
        else:
            state, info = "pending", "handshake in progress"
        rows.append({"Address": c.address_text, "Outbound": c.outbound, "State": state,
                     "Info": info, "Attrs": {**c.extra, **crypto_attrs(c, core.password_keys)}})
    for address, reason in core.refused.current(now):
        rows.append({"Address": address, "Outbound": False, "State": "failed", "Info": reason,
                     "Attrs": {}})
    for target in core.targets:
        if target.key in served or target.phase == "connected":
            continue
        rows.append({"Address": target.key, "Outbound": True, "State": target.state(),
                     "Info": target.info(now, wall), "Attrs": {}})
    return rows
