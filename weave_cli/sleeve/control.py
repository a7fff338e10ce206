"""The control protocol between the router and its sleeve forwarder: pure codec, strict.

Transport: one end each of ``socketpair(AF_UNIX, SOCK_SEQPACKET)``; every message is one JSON
object in one datagram of at most ``MAX_MESSAGE`` bytes. Router -> forwarder:

    {"op":"config","local":PEER,"neighbours":{PEER:[IPV4,PORT]},"routes":{PEER:PEER},
     "sleeve_peers":[PEER],"macs":{MAC:PEER},
     "encrypted":BOOL,"keys":{PEER:{"tx":HEX64,"rx":HEX64}}}   full replacement
    (``encrypted`` and ``keys`` may be absent: false and {}; keys only when encrypted)
    {"op":"stats"}                                   answered by one "stats" event

Forwarder -> router: ``{"ev":"ready","ifname":..,"port":..}``, ``{"ev":"error","reason":..}``
(then it exits non-zero), ``{"ev":"heard","peer":..,"addr":[ip,port]}``,
``{"ev":"pmtu","peer":..,"mtu":N}`` and ``{"ev":"stats", name: int, ...}``.

PEER and MAC are six lowercase hex pairs (``PeerName``'s text form; input is lower-cased).
Decoding never raises anything but ``ControlError`` (a ``ProtocolError``), whatever the bytes:
sizes, counts, types, addresses and ports are all checked, unknown keys are refused.

``keys`` are secrets (the per-neighbour sleeve keys, ``seal.py``): they only ever travel on
this socketpair, decode into ``SecretKey`` objects whose repr is redacted, and no error message
quotes them. A pair must have two different keys (the nonces are direction-independent).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from weave_cli.errors import ProtocolError
from weave_cli.sleeve.seal import KEY_SIZE, SecretKey

MAX_MESSAGE = 1 << 20
MAX_PEERS = 4096  # entries in neighbours, routes, sleeve_peers
MAX_MACS = 1 << 16
MAX_REASON = 1000
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{%d}$" % (2 * KEY_SIZE))


class ControlError(ProtocolError):
    """A control message that is not one of the protocol's messages."""


@dataclass(frozen=True)
class SleeveKeys:
    """One neighbour's pair: ``tx`` seals what we send it, ``rx`` opens what it sends us (its
    ``tx`` for us). Secret: the repr shows neither."""

    tx: SecretKey
    rx: SecretKey

    def __repr__(self) -> str:
        return "SleeveKeys(<redacted>)"


@dataclass(frozen=True)
class SleeveConfig:
    local: str
    neighbours: dict[str, tuple[str, int]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    sleeve_peers: frozenset[str] = frozenset()
    macs: dict[str, str] = field(default_factory=dict)
    encrypted: bool = False  # the network has a password: only sealed datagrams, keyed peers
    keys: dict[str, SleeveKeys] = field(default_factory=dict, repr=False)

    def encode(self) -> bytes:
        if self.keys and not self.encrypted:
            raise ControlError("sleeve keys given but encrypted is false")
        return _dump({
            "op": "config", "local": self.local,
            "neighbours": {p: [a, port] for p, (a, port) in self.neighbours.items()},
            "routes": self.routes, "sleeve_peers": sorted(self.sleeve_peers), "macs": self.macs,
            "encrypted": self.encrypted,
            "keys": {p: {"tx": k.tx.reveal().hex(), "rx": k.rx.reveal().hex()}
                     for p, k in self.keys.items()},
        })


@dataclass(frozen=True)
class StatsRequest:
    def encode(self) -> bytes:
        return _dump({"op": "stats"})


@dataclass(frozen=True)
class Ready:
    ifname: str
    port: int


@dataclass(frozen=True)
class Failed:
    reason: str


@dataclass(frozen=True)
class Heard:
    peer: str
    addr: tuple[str, int]


@dataclass(frozen=True)
class Pmtu:
    peer: str
    mtu: int


@dataclass(frozen=True)
class Stats:
    counters: dict[str, int]


Event = Ready | Failed | Heard | Pmtu | Stats


def _dump(obj: object) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ControlError(f"control message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    return data


def _load(data: bytes) -> dict[str, object]:
    if len(data) > MAX_MESSAGE:
        raise ControlError("control message too long")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError, UnicodeDecodeError) as err:
        raise ControlError(f"control message is not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ControlError("control message is not a JSON object")
    return obj


def _keys(obj: dict[str, object], required: set[str], optional: frozenset[str] = frozenset()
          ) -> None:
    keys = set(obj)
    if not required <= keys or not keys <= required | optional:
        raise ControlError(f"control message keys {sorted(keys)}, expected {sorted(required)}")


def _mac(value: object, what: str) -> str:
    if not isinstance(value, str) or not _MAC.match(value.lower()):
        raise ControlError(f"{what} is not a MAC-form name: {str(value)[:40]!r}")
    return value.lower()


def _port(value: object) -> int:
    if type(value) is not int or not 1 <= value <= 65535:
        raise ControlError(f"bad port {str(value)[:20]!r}")
    return value


def _addr(value: object) -> tuple[str, int]:
    if not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str):
        raise ControlError("an address is [ipv4, port]")
    try:
        ip = str(IPv4Address(value[0]))
    except ValueError:
        raise ControlError(f"bad IPv4 address {value[0][:40]!r}") from None
    return ip, _port(value[1])


def _map(value: object, what: str, limit: int) -> dict[str, object]:
    if not isinstance(value, dict) or len(value) > limit:
        raise ControlError(f"{what} must be an object of at most {limit} entries")
    return value


def _key(value: object, peer: str, which: str) -> SecretKey:
    if not isinstance(value, str) or not _HEX_KEY.match(value):
        raise ControlError(f"the {which} key for {peer} is not {2 * KEY_SIZE} hex digits")
    return SecretKey(bytes.fromhex(value))


def _pair(value: object, peer: str) -> SleeveKeys:
    if not isinstance(value, dict) or set(value) != {"tx", "rx"}:
        raise ControlError(f"the keys for {peer} must be an object with tx and rx")
    keys = SleeveKeys(_key(value["tx"], peer, "tx"), _key(value["rx"], peer, "rx"))
    if keys.tx == keys.rx:
        raise ControlError(f"the tx and rx keys for {peer} are equal")
    return keys


def decode_request(data: bytes) -> SleeveConfig | StatsRequest:
    obj = _load(data)
    op = obj.get("op")
    if op == "stats":
        _keys(obj, {"op"})
        return StatsRequest()
    if op != "config":
        raise ControlError(f"unknown op {str(op)[:40]!r}")
    _keys(obj, {"op", "local", "neighbours", "routes", "sleeve_peers", "macs"},
          frozenset({"encrypted", "keys"}))
    encrypted = obj.get("encrypted", False)
    if type(encrypted) is not bool:
        raise ControlError("encrypted must be true or false")
    keys = {(peer := _mac(p, "key peer")): _pair(k, peer)
            for p, k in _map(obj.get("keys", {}), "keys", MAX_PEERS).items()}
    if keys and not encrypted:
        raise ControlError("sleeve keys given but encrypted is false")
    neighbours = {_mac(p, "neighbour"): _addr(a)
                  for p, a in _map(obj["neighbours"], "neighbours", MAX_PEERS).items()}
    routes = {_mac(d, "route destination"): _mac(h, "next hop")
              for d, h in _map(obj["routes"], "routes", MAX_PEERS).items()}
    peers = obj["sleeve_peers"]
    if not isinstance(peers, list) or len(peers) > MAX_PEERS:
        raise ControlError(f"sleeve_peers must be a list of at most {MAX_PEERS} names")
    macs = {_mac(m, "mac"): _mac(p, "mac owner")
            for m, p in _map(obj["macs"], "macs", MAX_MACS).items()}
    return SleeveConfig(
        local=_mac(obj["local"], "local"), neighbours=neighbours, routes=routes,
        sleeve_peers=frozenset(_mac(p, "sleeve peer") for p in peers), macs=macs,
        encrypted=encrypted, keys=keys,
    )


def encode_event(event: Event) -> bytes:
    if isinstance(event, Ready):
        return _dump({"ev": "ready", "ifname": event.ifname, "port": event.port})
    if isinstance(event, Failed):
        return _dump({"ev": "error", "reason": event.reason[:MAX_REASON]})
    if isinstance(event, Heard):
        return _dump({"ev": "heard", "peer": event.peer, "addr": list(event.addr)})
    if isinstance(event, Pmtu):
        return _dump({"ev": "pmtu", "peer": event.peer, "mtu": event.mtu})
    return _dump({"ev": "stats", **event.counters})


def decode_event(data: bytes) -> Event:
    obj = _load(data)
    ev = obj.get("ev")
    if ev == "ready":
        _keys(obj, {"ev", "ifname", "port"})
        if not isinstance(obj["ifname"], str) or not 0 < len(obj["ifname"]) < 16:
            raise ControlError("bad ifname")
        return Ready(obj["ifname"], _port(obj["port"]))
    if ev == "error":
        _keys(obj, {"ev", "reason"})
        if not isinstance(obj["reason"], str):
            raise ControlError("bad reason")
        return Failed(obj["reason"][:MAX_REASON])
    if ev == "heard":
        _keys(obj, {"ev", "peer", "addr"})
        return Heard(_mac(obj["peer"], "peer"), _addr(obj["addr"]))
    if ev == "pmtu":
        _keys(obj, {"ev", "peer", "mtu"})
        mtu = obj["mtu"]
        if type(mtu) is not int or not 0 < mtu <= 65535:
            raise ControlError("bad mtu")
        return Pmtu(_mac(obj["peer"], "peer"), mtu)
    if ev == "stats":
        counters = {k: v for k, v in obj.items() if k != "ev" and type(v) is int}
        if len(counters) != len(obj) - 1 or len(counters) > 256:
            raise ControlError("stats counters must be integers")
        return Stats(counters)
    raise ControlError(f"unknown event {str(ev)[:40]!r}")
