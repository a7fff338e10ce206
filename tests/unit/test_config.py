"""Parsing of peers, ports and launch options."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.config import LaunchConfig, parse_port, split_peer
from weave_cli.errors import InvalidPeerError, InvalidPortError, UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.168.1.2", ("192.168.1.2", None)),
        ("192.168.1.2:6783", ("192.168.1.2", 6783)),
        ("node-1.example", ("node-1.example", None)),
        ("h1:7000", ("h1", 7000)),
        ("[fd00::1]:6783", ("fd00::1", 6783)),
        ("[fd00::1]", ("fd00::1", None)),
    ],
)
def test_valid_peers(text: str, expected: tuple[str, int | None]) -> None:
    assert split_peer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1.2.3.4",
        "a..b",
        "999.1.1.1",
        "1.2.3.4:",
        "1.2.3.4:0",
        "1.2.3.4:70000",
        "1.2.3.4:x",
        "fd00::1",
        "[fd00::1",
        "[zz::1]:1",
        "-bad",
        "a_b",
        "x" * 300,
        "1.2.3.4:5:6",
    ],
)
def test_invalid_peers(text: str) -> None:
    with pytest.raises(InvalidPeerError) as info:
        split_peer(text)
    assert info.value.exit_code == 10
    assert "host[:port]" in str(info.value) or "port" in str(info.value)


@given(st.text(max_size=40))
def test_split_peer_never_crashes(text: str) -> None:
    try:
        host, port = split_peer(text)
    except InvalidPeerError:
        return
    assert host and (port is None or 1 <= port <= 65535)


@given(st.ip_addresses(v=4), st.integers(1, 65535))
def test_ipv4_with_port_round_trip(addr: object, port: int) -> None:
    assert split_peer(f"{addr}:{port}") == (str(addr), port)


@pytest.mark.parametrize("text", ["0", "65536", "-1", "abc", "", "6783.0", " 1"])
def test_bad_ports(text: str) -> None:
    with pytest.raises(InvalidPortError):
        parse_port(text)


def test_resume_with_peers_is_refused() -> None:
    with pytest.raises(UsageError, match="--resume"):
        LaunchConfig(peers=["1.2.3.4"], resume=True).validate()


def test_config_json_round_trip() -> None:
    cfg = LaunchConfig(peers=["h1", "10.0.0.1:7000"], nickname="n1", conn_limit=5).validate()
    assert LaunchConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "zz"},
        {"nickname": "bad nick"},
        {"conn_limit": -1},
        {"log_level": "loud"},
        {"http_addr": "nowhere"},
        {"heartbeat_interval": 0},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        LaunchConfig(**kwargs).validate()  # type: ignore[arg-type]
