"""The ``overlay`` gossip channel: which MACs sit behind which peer, and heartbeat reports. Pure.

MAC table. Each peer owns one entry, ``(version, macs)``: the MAC addresses of its local ports
(containers, and the bridge itself for ``expose``). Only the owner changes its entry; the
version is the owner's wall clock in milliseconds, forced to grow (``max(old + 1, now_ms)``),
so a restarted peer's fresh entry still beats the one the others kept from its last life. Merge
keeps the higher version per owner: commutative, associative, idempotent. Changes are
broadcast (only news is relayed); anti-entropy sends a digest ``(owner, version)*`` and is
answered with the entries the other side lacks.

Reports (``links.PeerReport``) travel by unicast to one neighbour: three flags.

Wire format (big-endian), one kind byte first::

    1 ENTRIES  count:u16, then per entry  owner:6  version:u64  n:u16  n * mac:6
    2 DIGEST   count:u16, then per owner  owner:6  version:u64
    3 REPORT   flags:u8  (1 fastdp capable, 2 hears fastdp, 4 hears sleeve)

Everything is bounded before use: at most ``MAX_OWNERS`` entries per message and ``MAX_MACS``
MACs per entry, and lengths must match the payload exactly; anything else is a ``ProtocolError``
(the mesh then drops that one connection).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from weave_cli.errors import ProtocolError
from weave_cli.overlay.links import PeerReport
from weave_cli.router.channels import GossipReply
from weave_cli.router.peer import PeerName

CHANNEL = "overlay"
ENTRIES, DIGEST, REPORT = 1, 2, 3
MAX_OWNERS = 4096
MAX_MACS = 4096
ENTRIES_PER_MESSAGE = 64  # so one reply stays near 1.5 MiB even with MAX_MACS per entry
_ENTRY_HEAD = struct.Struct("!6sQH")
_DIGEST_ITEM = struct.Struct("!6sQ")

Mac = bytes  # 6 bytes
Entry = tuple[int, frozenset[Mac]]  # version, MACs


def mac_text(mac: Mac) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str) -> Mac:
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def encode_entries(entries: Iterable[tuple[PeerName, Entry]]) -> bytes:
    items = list(entries)
    out = [struct.pack("!BH", ENTRIES, len(items))]
    for owner, (version, macs) in items:
        out.append(_ENTRY_HEAD.pack(owner.to_bytes6(), version, len(macs)))
        out.extend(sorted(macs))
    return b"".join(out)


def encode_digest(versions: Iterable[tuple[PeerName, int]]) -> bytes:
    items = list(versions)
    return struct.pack("!BH", DIGEST, len(items)) + b"".join(
        _DIGEST_ITEM.pack(owner.to_bytes6(), version) for owner, version in items)


def encode_report(report: PeerReport) -> bytes:
    flags = (report.fastdp_capable * 1) | (report.hears_fastdp * 2) | (report.hears_sleeve * 4)
    return bytes((REPORT, flags))


def decode(payload: bytes) -> tuple[int, object]:
    """(kind, content): entries as a dict, a digest as a dict, a report as ``PeerReport``."""
    if not payload:
        raise ProtocolError("empty overlay message")
    kind, view = payload[0], memoryview(payload)
    if kind == REPORT:
        if len(payload) != 2 or payload[1] > 7:
            raise ProtocolError("malformed overlay report")
        flags = payload[1]
        return kind, PeerReport(bool(flags & 1), bool(flags & 2), bool(flags & 4))
    if kind not in (ENTRIES, DIGEST) or len(payload) < 3:
        raise ProtocolError("unknown or truncated overlay message")
    (count,) = struct.unpack_from("!H", payload, 1)
    if count > MAX_OWNERS:
        raise ProtocolError(f"overlay message names {count} peers (at most {MAX_OWNERS})")
    pos, out_e, out_d = 3, {}, {}
    for _ in range(count):
        head = _ENTRY_HEAD if kind == ENTRIES else _DIGEST_ITEM
        if pos + head.size > len(payload):
            raise ProtocolError("truncated overlay message")
        fields = head.unpack_from(payload, pos)
        pos += head.size
        owner = PeerName.from_bytes6(fields[0])
        if kind == DIGEST:
            out_d[owner] = fields[1]
            continue
        n = fields[2]
        if n > MAX_MACS or pos + 6 * n > len(payload):
            raise ProtocolError("overlay entry with too many or truncated MACs")
        macs = frozenset(bytes(view[pos + 6 * i: pos + 6 * i + 6]) for i in range(n))
        pos += 6 * n
        out_e[owner] = (fields[1], macs)
    if pos != len(payload):
        raise ProtocolError("trailing bytes after an overlay message")
    return kind, (out_e if kind == ENTRIES else out_d)


class OverlayChannel:
    """The channel handler. Lives in (and is mutated only by) the mesh task; the overlay
    service reads ``table`` and sets ``set_local`` through the mesh driver's queries.
    ``on_report`` is called for every report received: it must only hand it over."""

    def __init__(self, local: PeerName, on_report: Callable[[PeerName, PeerReport], None]) -> None:
        self.local, self.on_report = local, on_report
        self.table: dict[PeerName, Entry] = {}
        self._outbid = 0  # the highest version others hold for our own entry

    def set_local(self, macs: Iterable[Mac], now_wall: float) -> bytes | None:
        """Our own entry; the broadcast payload when it changed, else None."""
        wanted = frozenset(list(macs)[:MAX_MACS])
        old = self.table.get(self.local)
        if old is not None and old[1] == wanted and old[0] > self._outbid:
            return None
        version = max((old[0] + 1) if old else 1, int(now_wall * 1000), self._outbid + 1)
        self.table[self.local] = (version, wanted)
        return encode_entries([(self.local, self.table[self.local])])

    def owner_of(self) -> dict[Mac, PeerName]:
        """MAC -> peer for every remote MAC (a MAC claimed twice goes to the newer entry)."""
        out: dict[Mac, tuple[int, PeerName]] = {}
        for owner, (version, macs) in self.table.items():
            if owner == self.local:
                continue
            for mac in macs:
                if mac not in out or out[mac][0] < version:
                    out[mac] = (version, owner)
        return {mac: owner for mac, (_v, owner) in out.items()}

    def forget(self, keep: set[PeerName]) -> None:
        """Drop entries of peers no longer in the topology (ours is always kept)."""
        for owner in [o for o in self.table if o not in keep and o != self.local]:
            del self.table[owner]

    def _merge(self, entries: dict[PeerName, Entry]) -> dict[PeerName, Entry]:
        news = {}
        for owner, entry in entries.items():
            if owner == self.local:
                # only we speak for ourselves; an entry of ours from a past life (or a clock
                # that stepped back) with a higher version is outbid at the next set_local
                self._outbid = max(self._outbid, entry[0])
                continue
            old = self.table.get(owner)
            if old is None or entry[0] > old[0]:
                self.table[owner] = news[owner] = entry
        return news

    # -- ChannelHandler -------------------------------------------------------------------------

    def on_broadcast(self, src: PeerName, payload: bytes) -> bytes | None:
        kind, content = decode(payload)
        if kind != ENTRIES:
            raise ProtocolError("overlay broadcast that is not a MAC entry")
        news = self._merge(content)  # type: ignore[arg-type]
        return encode_entries(news.items()) if news else None

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        kind, content = decode(payload)
        if kind != REPORT:
            raise ProtocolError("overlay unicast that is not a report")
        self.on_report(src, content)  # type: ignore[arg-type]

    def on_gossip(self, sender: PeerName, payload: bytes) -> GossipReply:
        kind, content = decode(payload)
        if kind == DIGEST:
            theirs: dict[PeerName, int] = content  # type: ignore[assignment]
            give = [(o, e) for o, e in self.table.items() if theirs.get(o, -1) < e[0]]
            step = ENTRIES_PER_MESSAGE
            return [encode_entries(give[i:i + step]) for i in range(0, len(give), step)], None
        if kind == ENTRIES:
            news = self._merge(content)  # type: ignore[arg-type]
            return [], (encode_entries(news.items()) if news else None)
        raise ProtocolError("overlay gossip that is not a digest or entries")

    def digest(self) -> bytes:
        return encode_digest((o, e[0]) for o, e in self.table.items())
