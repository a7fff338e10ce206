"""IPv4 addresses, ranges and CIDRs: parsing, formatting, host ranges, aligned splitting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.ipam.address import (
    ADDRESS_SPACE,
    CIDR,
    Range,
    coalesce,
    format_ip,
    parse_ip,
    range_to_cidrs,
    subtract,
)

addrs = st.integers(0, ADDRESS_SPACE - 1)


@st.composite
def ranges(draw: st.DrawFn, lo: int = 0, hi: int = 512) -> Range:
    a, b = sorted((draw(st.integers(lo, hi)), draw(st.integers(lo, hi))))
    return Range(a, b)


@given(addrs)
def test_ip_round_trip(addr: int) -> None:
    assert parse_ip(format_ip(addr)) == addr


@given(addrs, st.integers(0, 32))
def test_cidr_round_trip(addr: int, prefix: int) -> None:
    cidr = CIDR(addr, prefix)
    assert CIDR.parse(str(cidr)) == cidr
    assert cidr.network.is_aligned and cidr.network.range().size == cidr.size
    assert addr in cidr.range()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("10.32.0.0", "expected address/prefix"),
        ("10.32.0/12", "four numbers"),
        ("10.32.0.256/12", "256 is more than 255"),
        ("10.32.0.0/33", "prefix length"),
        ("10.32.0.0/x", "prefix length"),
        ("a.b.c.d/8", "four numbers"),
        ("10.32.0. 1/8", "four numbers"),
    ],
)
def test_parse_errors_say_why(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        CIDR.parse(text)


def test_subnet_must_be_aligned_and_big_enough() -> None:
    assert CIDR.parse_subnet("10.32.0.0/12").range() == Range(0x0A200000, 0x0A300000)
    with pytest.raises(ValueError, match=r"did you mean 10\.32\.0\.0/12"):
        CIDR.parse_subnet("10.32.0.1/12")
    with pytest.raises(ValueError, match="too small"):
        CIDR.parse_subnet("10.0.0.0/31")


def test_host_range_excludes_network_and_broadcast() -> None:
    cidr = CIDR.parse("10.32.0.0/12")
    assert cidr.host_range() == Range(parse_ip("10.32.0.1"), parse_ip("10.47.255.255"))
    assert str(cidr.host_range()) == "10.32.0.1-10.47.255.254"
    assert CIDR.parse("10.0.0.4/31").host_range().size == 2
    assert CIDR.parse("0.0.0.0/0").range() == Range(0, ADDRESS_SPACE)


@given(ranges(hi=ADDRESS_SPACE))
def test_range_to_cidrs_covers_exactly_with_aligned_blocks(r: Range) -> None:
    blocks = range_to_cidrs(r)
    pos = r.start
    for b in blocks:
        assert b.is_aligned and b.start == pos
        pos += b.size
    assert pos == r.end
    assert len(blocks) <= 64
    # Fewest blocks: no two neighbours of equal size could have been one aligned block.
    for a, b in zip(blocks, blocks[1:], strict=False):
        assert not (a.size == b.size and a.start % (2 * a.size) == 0)


def test_range_to_cidrs_example() -> None:
    r = Range(parse_ip("10.0.0.1"), parse_ip("10.0.0.9"))
    assert [str(c) for c in range_to_cidrs(r)] == ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30",
                                                   "10.0.0.8/32"]  # fmt: skip


def _addresses(rs: list[Range]) -> set[int]:
    return {a for r in rs for a in range(r.start, r.end)}


@given(st.lists(ranges(), max_size=6), st.lists(ranges(), max_size=6))
def test_coalesce_and_subtract_match_a_set_model(xs: list[Range], ys: list[Range]) -> None:
    c = coalesce(xs)
    assert _addresses(c) == _addresses(xs)
    assert all(a.end < b.start for a, b in zip(c, c[1:], strict=False))
    d = subtract(xs, ys)
    assert _addresses(d) == _addresses(xs) - _addresses(ys)
    assert d == coalesce(d)


def test_range_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError):
        Range(5, 4)
