"""The sleeve's TAP device and the ``virtio_net_hdr`` that prefixes every frame on it.

``open_tap`` opens /dev/net/tun non-blocking and attaches it (TUNSETIFF) to a TAP named
``weave-sleeve`` with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, then enables checksum and TCP
segmentation offload (TUNSETOFFLOAD TUN_F_CSUM|TSO4|TSO6|TSO_ECN). The device is not made
persistent: it disappears when the fd closes (the process dies). Nothing else about the link
(up, MTU, master, addresses) is set here: that is the router's job.

With offloads on, one read returns ``[virtio_net_hdr][ethernet frame]`` where the frame may be
a TCP super-packet of up to ~64 KB (``gso_type`` TCPV4/TCPV6, ``gso_size`` = MSS) and its
checksum may be left to the receiver (``NEEDS_CSUM`` with ``csum_start``/``csum_offset``).
Writes take the same layout. The header is little-endian (the kernel's native order on every
host weave runs on; big-endian hosts are asked for TUNSETVNETLE). ``vnet_ok`` checks what the
kernel would refuse with EINVAL, so a peer's bad header is counted instead of tried.
"""

from __future__ import annotations

import os
import struct
import sys

from weave_cli.net.errors import DatapathError

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETLE = 0x400454DC
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN

VNET = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_SIZE = VNET.size  # 10
F_NEEDS_CSUM, F_DATA_VALID = 0x01, 0x02
GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_ECN = 0x00, 0x01, 0x04, 0x80
ETH_HLEN = 14
_GSO_TYPES = frozenset((GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_TCPV4 | GSO_ECN, GSO_TCPV6 | GSO_ECN))


def open_tap(name: str) -> int:
    """The fd of a new non-persistent TAP ``name``; raises DatapathError with the reason."""
    import fcntl

    if not 0 < len(name.encode()) < 16:
        raise DatapathError(f"bad interface name {name!r}")
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise DatapathError(f"cannot open {TUN_PATH}: {err.strerror}",
                            "load the tun module and run as root") from None
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        if sys.byteorder == "big":
            fcntl.ioctl(fd, TUNSETVNETLE, struct.pack("i", 1))
        fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
    except OSError as err:
        os.close(fd)
        raise DatapathError(f"cannot create TAP {name}: {err.strerror}",
                            "is another forwarder running in this network namespace?") from None
    return fd


def vnet_ok(buf: bytes | bytearray | memoryview, off: int, n: int) -> bool:
    """True when ``buf[off:off+n]`` is a header plus a frame the TAP will accept."""
    frame = n - VNET_SIZE
    if frame < ETH_HLEN:
        return False
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET.unpack_from(buf, off)
    if flags & ~(F_NEEDS_CSUM | F_DATA_VALID) or gso_type not in _GSO_TYPES:
        return False
    if flags & F_NEEDS_CSUM and csum_start + csum_offset + 2 > frame:
        return False
    if gso_type != GSO_NONE and (gso_size == 0 or not flags & F_NEEDS_CSUM):
        return False
    return bool(hdr_len <= frame)


def vnet_header(flags: int = 0, gso_type: int = GSO_NONE, hdr_len: int = 0, gso_size: int = 0,
                csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return VNET.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


PLAIN_VNET = vnet_header()  # a frame with nothing left to do
