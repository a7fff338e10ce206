"""The fastdp heartbeat: a VXLAN datagram built in user space, checked on arrival. Pure.

A heartbeat goes from our UDP socket to the peer's fastdp port, with the VXLAN header of the
heartbeat VNI, so the peer's kernel decapsulates it onto its ``weave-vxhb`` device (on no
bridge) where the router reads it with a packet socket. Its inner frame is exactly
``mtu + 14`` bytes, so the outer datagram is as large as the biggest fastdp packet: a heartbeat
that arrives proves the underlay carries the overlay MTU unfragmented (it is sent with DF).

Layout (big-endian)::

    VXLAN header (8)   flags 0x08, reserved, VNI:24, reserved      (UDP payload only)
    inner Ethernet     dst 02:00:00:00:00:00, src 02:00:00:00:00:00, type 0x88b5
    body               magic b"WVHB", version 1, source peer:6, destination peer:6,
                       zero padding up to the frame size
"""

from __future__ import annotations

import struct

from weave_cli.names import HEARTBEAT_ETHERTYPE
from weave_cli.router.peer import PeerName

MAGIC = b"WVHB"
VERSION = 1
_ETH = bytes.fromhex("020000000000") * 2 + struct.pack("!H", HEARTBEAT_ETHERTYPE)
_BODY = struct.Struct("!4sB6s6s")
MIN_FRAME = len(_ETH) + _BODY.size


def vxlan_header(vni: int) -> bytes:
    return struct.pack("!II", 0x08000000, (vni & 0xFFFFFF) << 8)


def encode(vni: int, src: PeerName, dst: PeerName, mtu: int) -> bytes:
    """The UDP payload of one heartbeat whose inner frame is ``mtu + 14`` bytes."""
    frame_len = max(MIN_FRAME, mtu + 14)
    head = _ETH + _BODY.pack(MAGIC, VERSION, src.to_bytes6(), dst.to_bytes6())
    return vxlan_header(vni) + head + bytes(frame_len - len(head))


def decode(frame: bytes, local: PeerName) -> tuple[PeerName, int] | None:
    """(source peer, frame length) of a heartbeat frame addressed to us, else None."""
    if len(frame) < MIN_FRAME or frame[:len(_ETH)] != _ETH:
        return None
    magic, version, src, dst = _BODY.unpack_from(frame, len(_ETH))
    if magic != MAGIC or version != VERSION or PeerName.from_bytes6(dst) != local:
        return None
    return PeerName.from_bytes6(src), len(frame)
