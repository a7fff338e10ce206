"""The payloads of the ``topology`` gossip channel, byte by byte. Pure.

Every payload starts with a kind byte; all integers are unsigned big-endian::

    kind 1  ENTRIES   count(2), then count entries:
              name(6) uid(8) version(8) short_id(2) nick_len(1) nickname
              conn_count(2), then conn_count connections, in strictly ascending name order:
                name(6) flags(1) address
                flags  bit 0 outbound, bit 1 established, bits 4..5 address family:
                       0 = IPv4: ip(4) port(2)   1 = IPv6: ip(16) port(2)
                       2 = text: len(1) "host:port" (ASCII host name; anything the
                           driver reported that is not an IP literal)
    kind 2  DIGEST    count(2), then count times name(6) uid(8) version(8)
    kind 3  REQUEST   count(2), then count names(6): "send me your entries for these"

Decoding is strict and bounded: counts are capped (``MAX_PEERS``, ``MAX_CONNECTIONS``),
nicknames must be valid, uid non-zero, versions below 2**62, short_id 12 bits, connection
names strictly ascending, and the message must be consumed exactly. Any violation raises
``ProtocolError`` (the caller closes that one connection).
An IPv4 connection costs 13 bytes, so an entry of a peer with N connections is ~13N + 30.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable, Sequence
from typing import Final

from weave_cli.errors import ProtocolError
from weave_cli.router.peer import PeerName, valid_nickname
from weave_cli.router.topology import MAX_CONNECTIONS, MAX_PEERS, ConnSummary, Digest, PeerEntry

ENTRIES: Final = 1
DIGEST: Final = 2
REQUEST: Final = 3
MAX_VERSION: Final = 1 << 62  # so that bumping past any received version never overflows
_HEAD = struct.Struct(">6sQQHB")  # name, uid, version, short_id, nick_len
_DIGEST_ITEM = struct.Struct(">6sQQ")
_TEXT_ADDR_RE: Final = re.compile(r"\A[A-Za-z0-9.-]{1,200}:[0-9]{1,5}\Z")
_OUT, _EST = 0x01, 0x02
# Memos of connection records (13 bytes <-> ConnSummary): every peer re-sends the same
# records with each version of its entry. Bounded; cleared when full. Caches only.
_V4_CONNS: dict[bytes, ConnSummary] = {}
_ENCODED: dict[ConnSummary, bytes] = {}  # and the other way round, for encoding
_CACHE_SIZE: Final = 1 << 16
_V4, _V6, _TEXT = 0x00, 0x10, 0x20


def _name(raw: bytes) -> PeerName:
    return PeerName(int.from_bytes(raw, "big"))


def encode_address(address: str) -> bytes:
    host, _, port = address.rpartition(":")
    octets = host.split(".")
    if len(octets) == 4 and all(o.isdigit() and len(o) <= 3 for o in octets) and port.isdigit():
        values = [int(o) for o in octets]
        if max(values) < 256 and 0 < int(port) < 65536:  # the common case, without ipaddress
            return bytes([_V4, *values]) + int(port).to_bytes(2, "big")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
        return bytes([_V4 if ip.version == 4 else _V6]) + ip.packed + int(port).to_bytes(2, "big")
    except ValueError:
        if not _TEXT_ADDR_RE.match(address):
            raise ValueError(f"unencodable address {address!r}") from None
        raw = address.encode("ascii")
        return bytes([_TEXT, len(raw)]) + raw


def _encode_entry(e: PeerEntry) -> bytes:
    nick = e.nickname.encode("ascii")
    parts = [_HEAD.pack(e.name.to_bytes6(), e.uid, e.version, e.short_id, len(nick)), nick,
             len(e.connections).to_bytes(2, "big")]
    for c in e.connections:
        raw = _ENCODED.get(c)
        if raw is None:
            addr = encode_address(c.address)
            flags = (_OUT if c.outbound else 0) | (_EST if c.established else 0) | addr[0]
            raw = c.name.to_bytes6() + bytes([flags]) + addr[1:]
            if len(_ENCODED) >= _CACHE_SIZE:
                _ENCODED.clear()
            _ENCODED[c] = raw
        parts.append(raw)
    return b"".join(parts)


def encode_entries(entries: Sequence[PeerEntry], budget: int = 1 << 20) -> list[bytes]:
    """ENTRIES payloads holding ``entries``, split so each stays near ``budget`` bytes."""
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 3
    for entry in entries:
        raw = _encode_entry(entry)
        if chunk and (size + len(raw) > budget or len(chunk) == 0xFFFF):
            out.append(bytes([ENTRIES]) + len(chunk).to_bytes(2, "big") + b"".join(chunk))
            chunk, size = [], 3
        chunk.append(raw)
        size += len(raw)
    if chunk:
        out.append(bytes([ENTRIES]) + len(chunk).to_bytes(2, "big") + b"".join(chunk))
    return out


def encode_digest(digest: Digest) -> bytes:
    items = [_DIGEST_ITEM.pack(n.to_bytes6(), uid, ver) for n, (uid, ver) in digest.items()]
    return bytes([DIGEST]) + len(items).to_bytes(2, "big") + b"".join(items)


def encode_request(names: Iterable[PeerName]) -> bytes:
    raw = [n.to_bytes6() for n in names]
    return bytes([REQUEST]) + len(raw).to_bytes(2, "big") + b"".join(raw)


def decode(payload: bytes) -> tuple[int, list[PeerEntry] | Digest | list[PeerName]]:
    """(kind, content) of a topology payload; ProtocolError on anything malformed."""
    if len(payload) < 3:
        raise ProtocolError("truncated topology message")
    kind, count = payload[0], int.from_bytes(payload[1:3], "big")
    if count > MAX_PEERS:
        raise ProtocolError(f"topology message lists {count} peers (limit {MAX_PEERS})")
    try:
        if kind == ENTRIES:
            return kind, _decode_entries(payload, count)
        if kind == DIGEST:
            return kind, _decode_digest(payload, count)
        if kind == REQUEST:
            if len(payload) != 3 + 6 * count:
                raise ProtocolError("malformed topology request")
            return kind, [_name(payload[i : i + 6]) for i in range(3, len(payload), 6)]
    except (struct.error, IndexError, ValueError) as err:
        raise ProtocolError(f"malformed topology message: {err}") from None
    raise ProtocolError(f"unknown topology message kind {kind}")


def _decode_digest(payload: bytes, count: int) -> Digest:
    if len(payload) != 3 + _DIGEST_ITEM.size * count:
        raise ProtocolError("malformed topology digest")
    digest: Digest = {}
    for raw, uid, version in _DIGEST_ITEM.iter_unpack(payload[3:]):
        if uid == 0 or version >= MAX_VERSION:
            raise ProtocolError("topology digest with uid 0 or an absurd version")
        digest[_name(raw)] = (uid, version)
    return digest


def _decode_entries(payload: bytes, count: int) -> list[PeerEntry]:
    view = memoryview(payload)
    pos, entries = 3, []
    for _ in range(count):
        raw, uid, version, short_id, nlen = _HEAD.unpack_from(view, pos)
        pos += _HEAD.size
        nickname = bytes(view[pos : pos + nlen]).decode("ascii", "replace")
        pos += nlen
        name = _name(raw)
        if uid == 0 or version >= MAX_VERSION or short_id >= 4096 or not valid_nickname(nickname):
            raise ProtocolError(f"invalid topology entry for {name}")
        nconn = int.from_bytes(view[pos : pos + 2], "big")
        pos += 2
        if nconn > MAX_CONNECTIONS:
            raise ProtocolError(f"{name} announces {nconn} connections (limit {MAX_CONNECTIONS})")
        conns: list[ConnSummary] = []
        last = -1
        for _ in range(nconn):
            if (flags := view[pos + 6]) & 0x30 == _V4 and (
                    hit := _V4_CONNS.get(key := bytes(view[pos : pos + 13]))) is not None:
                if hit.name <= last or hit.name == name:
                    raise ProtocolError(f"malformed connection list in the entry of {name}")
                last = hit.name
                conns.append(hit)
                pos += 13
                continue
            remote = int.from_bytes(view[pos : pos + 6], "big")
            pos += 7
            family = flags & 0x30
            if family == _V4:
                b = view[pos : pos + 6]
                address = f"{b[0]}.{b[1]}.{b[2]}.{b[3]}:{(b[4] << 8) | b[5]}"
                pos += 6
            elif family == _V6:
                ip = ipaddress.IPv6Address(bytes(view[pos : pos + 16]))
                address = f"[{ip}]:{int.from_bytes(view[pos + 16 : pos + 18], 'big')}"
                pos += 18
            elif family == _TEXT:
                alen = view[pos]
                address = bytes(view[pos + 1 : pos + 1 + alen]).decode("ascii", "replace")
                pos += 1 + alen
                if not _TEXT_ADDR_RE.match(address):
                    raise ProtocolError(f"invalid address in the entry of {name}")
            else:
                raise ProtocolError(f"unknown address family in the entry of {name}")
            if remote <= last or remote == name or flags & 0xCC:
                raise ProtocolError(f"malformed connection list in the entry of {name}")
            last = remote
            conns.append(summary := ConnSummary(PeerName(remote), address, bool(flags & _OUT),
                                                bool(flags & _EST)))
            if family == _V4:
                if len(_V4_CONNS) >= _CACHE_SIZE:
                    _V4_CONNS.clear()
                _V4_CONNS[key] = summary
        if pos > len(payload):
            raise ProtocolError("truncated topology entry")
        entries.append(PeerEntry(name, nickname, uid, version, short_id, tuple(conns)))
    if pos != len(payload):
        raise ProtocolError("trailing bytes after topology entries")
    return entries
