"""ADDR words and their rules against IPAM (weave_cli/net/addrspec.py): parsing, the checks
made before anything changes, conflicts on re-attach, and selection for detach/hide."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.errors import UsageError
from weave_cli.net.addrspec import (
    DEFAULT,
    NEED_IPAM,
    AddrSpec,
    IPAMView,
    check_specs,
    conflicts,
    ip_words,
    missing,
    parse_addr,
    select,
    split_args,
)

VIEW = IPAMView(True, IPv4Network("10.32.0.0/12"), IPv4Network("10.32.0.0/12"))
NARROW = IPAMView(True, IPv4Network("10.32.0.0/12"), IPv4Network("10.32.1.0/24"))
OFF = IPAMView(False)


def i(text: str) -> IPv4Interface:
    return IPv4Interface(text)


@pytest.mark.parametrize(
    ("word", "spec"),
    [
        ("ip:10.32.1.5/24", AddrSpec("ip", address=i("10.32.1.5/24"))),
        ("10.32.1.5/12", AddrSpec("ip", address=i("10.32.1.5/12"))),
        ("net:10.32.1.0/24", AddrSpec("net", subnet=IPv4Network("10.32.1.0/24"))),
        ("net:default", DEFAULT),
        ("ip:10.0.0.1/31", AddrSpec("ip", address=i("10.0.0.1/31"))),
        ("10.0.0.7/32", AddrSpec("ip", address=i("10.0.0.7/32"))),
    ],
)
def test_forms(word: str, spec: AddrSpec) -> None:
    assert parse_addr(word) == spec


@pytest.mark.parametrize(
    ("word", "words"),
    [
        ("10.32.1.5", "give a CIDR"),
        ("ip:banana", "invalid address"),
        ("net:10.32.1.5/24", "did you mean net:10.32.1.0/24"),
        ("net:nope", "invalid subnet"),
        ("10.32.0.0/12", "network address"),
        ("10.47.255.255/12", "broadcast address"),
        ("ip:10.32.1.5/40", "invalid address"),
    ],
)
def test_bad_words(word: str, words: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_addr(word)
    assert words in str(err.value)


@given(st.integers(1, 2**20 - 2), st.integers(12, 30))
def test_round_trip(offset: int, prefix: int) -> None:
    addr = IPv4Interface((0x0A200000 + offset, prefix))
    net = addr.network
    if addr.ip in (net.network_address, net.broadcast_address):
        return
    assert parse_addr(str(parse_addr(str(addr)))) == parse_addr(f"ip:{addr}")
    assert parse_addr(str(AddrSpec("net", subnet=net))).subnet == net


def test_split_args() -> None:
    specs, target = split_args(["net:default", "10.32.0.9/12", "ns:c1"], "usage")
    assert [str(s) for s in specs] == ["net:default", "ip:10.32.0.9/12"] and target == "ns:c1"
    with pytest.raises(UsageError, match="no target"):
        split_args([], "usage")


def test_check_defaults_and_dedups() -> None:
    assert check_specs([], VIEW) == [DEFAULT]
    same = parse_addr("10.32.0.9/12")
    assert check_specs([same, same, DEFAULT, DEFAULT], VIEW) == [same, DEFAULT]


@pytest.mark.parametrize(
    ("words", "view", "message"),
    [
        (["192.168.5.5/24"], VIEW, "outside the weave range 10.32.0.0/12"),
        (["net:192.168.0.0/16"], VIEW, "outside the weave range"),
        (["net:10.0.0.0/8"], VIEW, "outside the weave range"),
        (["net:default"], OFF, NEED_IPAM),
        ([], OFF, NEED_IPAM),
        (["net:10.32.1.0/24"], OFF, NEED_IPAM),
    ],
)
def test_check_refuses(words: list[str], view: IPAMView, message: str) -> None:
    with pytest.raises(UsageError) as err:
        check_specs([parse_addr(w) for w in words], view)
    assert message in str(err.value)


def test_explicit_addresses_without_ipam_are_anything() -> None:
    spec = parse_addr("192.168.5.5/24")
    assert check_specs([spec], OFF) == [spec]


def test_conflicts() -> None:
    held = [i("10.32.0.1/12")]
    assert conflicts(held, [i("10.32.0.1/12")]) == []
    assert conflicts(held, [i("10.40.1.1/24")]) == []  # another subnet: a second address
    assert conflicts(held, [i("10.32.0.1/24")]) == ["10.32.0.1 is already there as 10.32.0.1/12"]
    assert conflicts(held, [i("10.32.0.9/12")]) == ["it already has 10.32.0.1/12 in 10.32.0.0/12"]


def test_missing_keeps_order_without_repeats() -> None:
    held = [i("10.32.0.1/12")]
    wanted = [i("10.40.0.2/24"), i("10.32.0.1/12"), i("10.40.0.2/24"), i("10.41.0.2/24")]
    assert missing(held, wanted) == [i("10.40.0.2/24"), i("10.41.0.2/24")]


def test_select() -> None:
    held = [i("10.32.0.1/12"), i("10.32.1.7/24"), i("10.40.0.2/24")]
    assert select(held, [parse_addr("ip:10.32.1.7/24")], NARROW) == ([held[1]], [])
    assert select(held, [DEFAULT], NARROW) == ([held[1]], [])  # default subnet 10.32.1.0/24
    assert select(held, [DEFAULT], VIEW) == (held, [])  # all three are in 10.32.0.0/12
    chosen, unmatched = select(held, [parse_addr("net:10.40.0.0/24"), parse_addr("ip:1.2.3.4/8")],
                               NARROW)
    assert chosen == [held[2]] and [str(u) for u in unmatched] == ["ip:1.2.3.4/8"]
    assert select(held, [DEFAULT], OFF) == ([], [DEFAULT])


def test_ip_words() -> None:
    assert ip_words([i("10.32.0.1/12"), i("10.40.0.2/24")]) == "10.32.0.1 10.40.0.2"
