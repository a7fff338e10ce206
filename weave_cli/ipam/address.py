"""IPv4 addresses, half-open ranges and CIDRs for IPAM.

Representation: an address is a plain ``int`` in ``[0, 2**32)``; nothing wraps an address in a
class, so arithmetic and sorting are free. A ``Range`` is half-open, ``[start, end)``, with
``0 <= start <= end <= 2**32`` (``end`` may be ``2**32`` so that a range can reach
255.255.255.255). A ``CIDR`` keeps the address as written plus its prefix length, because the
original hands out addresses in that form (``10.32.0.1/12``: the address with the *subnet's*
prefix); ``network`` gives the aligned block.

Invariants: a ``Range`` never has ``end < start``; a ``CIDR`` has ``0 <= prefix <= 32``.
Every parse error is a ``ValueError`` whose message names the offending text and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ADDRESS_SPACE = 1 << 32
MIN_SUBNET_SIZE = 4  # the original's MinSubnetSize: network + broadcast + at least 2 hosts


def parse_ip(text: str) -> int:
    """Dotted-quad text to an int; raises ValueError naming the text."""
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        raise ValueError(f"invalid IPv4 address {text!r}: expected four numbers like 10.32.0.1")
    value = 0
    for part in parts:
        octet = int(part)
        if octet > 255:
            raise ValueError(f"invalid IPv4 address {text!r}: {part} is more than 255")
        value = value << 8 | octet
    return value


def format_ip(addr: int) -> str:
    """An int address to dotted-quad text."""
    if not 0 <= addr < ADDRESS_SPACE:
        raise ValueError(f"address out of IPv4 range: {addr}")
    return ".".join(str(addr >> shift & 0xFF) for shift in (24, 16, 8, 0))


@dataclass(frozen=True, order=True, slots=True)
class Range:
    """The half-open address range ``[start, end)``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= ADDRESS_SPACE:
            raise ValueError(f"invalid range [{self.start}, {self.end})")

    @property
    def size(self) -> int:
        return self.end - self.start

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.start <= addr < self.end

    def contains_range(self, other: Range) -> bool:
        return self.start <= other.start and other.end <= self.end

    def intersect(self, other: Range) -> Range | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Range(start, end) if start < end else None

    def __str__(self) -> str:
        if self.size == 0:
            return f"{format_ip(self.start)}-(empty)" if self.start < ADDRESS_SPACE else "(empty)"
        return f"{format_ip(self.start)}-{format_ip(self.end - 1)}"


@dataclass(frozen=True, slots=True)
class CIDR:
    """An address with a prefix length, e.g. ``10.32.0.1/12``."""

    addr: int
    prefix: int

    def __post_init__(self) -> None:
        if not 0 <= self.prefix <= 32:
            raise ValueError(f"invalid prefix length /{self.prefix}: expected 0..32")
        if not 0 <= self.addr < ADDRESS_SPACE:
            raise ValueError(f"address out of IPv4 range: {self.addr}")

    @classmethod
    def parse(cls, text: str) -> CIDR:
        """``a.b.c.d/n`` to a CIDR; raises ValueError with the reason."""
        ip, sep, plen = text.partition("/")
        if not sep:
            raise ValueError(f"invalid CIDR {text!r}: expected address/prefix like 10.32.0.0/12")
        if not plen.isdigit() or len(plen) > 2 or int(plen) > 32:
            raise ValueError(f"invalid CIDR {text!r}: prefix length must be a number 0..32")
        return cls(parse_ip(ip), int(plen))

    @classmethod
    def parse_subnet(cls, text: str) -> CIDR:
        """Parse a subnet: it must be aligned and hold at least ``MIN_SUBNET_SIZE`` addresses."""
        cidr = cls.parse(text)
        if not cidr.is_aligned:
            raise ValueError(
                f"invalid subnet {text!r}: {format_ip(cidr.addr)} is not the start of a "
                f"/{cidr.prefix} block (did you mean {cidr.network}?)"
            )
        if cidr.size < MIN_SUBNET_SIZE:
            raise ValueError(f"invalid subnet {text!r}: too small, at most /30 is allowed")
        return cidr

    @property
    def size(self) -> int:
        return 1 << (32 - self.prefix)

    @property
    def start(self) -> int:
        """The network address (the address with the host bits cleared)."""
        return self.addr & ~(self.size - 1) & (ADDRESS_SPACE - 1)

    @property
    def is_aligned(self) -> bool:
        return self.addr == self.start

    @property
    def network(self) -> CIDR:
        return CIDR(self.start, self.prefix)

    def range(self) -> Range:
        return Range(self.start, self.start + self.size)

    def host_range(self) -> Range:
        """The usable addresses: the network and broadcast addresses are left out (RFC 1122).

        A /31 or /32 has no network or broadcast address, so the whole block is returned.
        """
        whole = self.range()
        if whole.size < MIN_SUBNET_SIZE:
            return whole
        return Range(whole.start + 1, whole.end - 1)

    def __str__(self) -> str:
        return f"{format_ip(self.addr)}/{self.prefix}"


def range_to_cidrs(r: Range) -> list[CIDR]:
    """Split a range into the fewest aligned CIDR blocks, in address order."""
    out: list[CIDR] = []
    start = r.start
    while start < r.end:
        # The largest block that is aligned at ``start`` and does not pass ``end``.
        size = start & -start if start else ADDRESS_SPACE
        while size > r.end - start:
            size >>= 1
        out.append(CIDR(start, 32 - size.bit_length() + 1))
        start += size
    return out


def coalesce(ranges: Iterable[Range]) -> list[Range]:
    """Sort, drop empties and merge overlapping or touching ranges."""
    out: list[Range] = []
    for r in sorted(x for x in ranges if x.size):
        if out and r.start <= out[-1].end:
            if r.end > out[-1].end:
                out[-1] = Range(out[-1].start, r.end)
        else:
            out.append(r)
    return out


def subtract(ranges: Iterable[Range], remove: Iterable[Range]) -> list[Range]:
    """The addresses of ``ranges`` that are in none of ``remove``, coalesced."""
    out: list[Range] = []
    cuts = coalesce(remove)
    for r in coalesce(ranges):
        pieces = [r]
        for cut in cuts:
            if cut.start >= r.end:
                break
            nxt: list[Range] = []
            for p in pieces:
                if cut.end <= p.start or cut.start >= p.end:
                    nxt.append(p)
                    continue
                if p.start < cut.start:
                    nxt.append(Range(p.start, cut.start))
                if cut.end < p.end:
                    nxt.append(Range(cut.end, p.end))
            pieces = nxt
        out.extend(pieces)
    return out
