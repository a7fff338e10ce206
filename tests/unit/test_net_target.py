"""TARGET words, idents, veth names and aliases (weave_cli/net/target.py), and the clear error
for a Docker target when no Docker daemon answers."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.errors import UsageError
from weave_cli.names import VETH_HOST_PREFIX
from weave_cli.net.errors import TargetNotFoundError
from weave_cli.net.target import (
    Target,
    display_ident,
    host_veth_name,
    inode_of_veth,
    make_alias,
    parse_alias,
    parse_target,
)


@pytest.mark.parametrize(
    ("word", "target"),
    [
        ("ns:c1", Target("ns", "c1")),
        ("ns:wl-lab-c-web", Target("ns", "wl-lab-c-web")),
        ("pid:1234", Target("pid", "1234")),
        ("pid:007", Target("pid", "7")),
        ("d3adb33f", Target("docker", "d3adb33f")),
        ("my_container.1", Target("docker", "my_container.1")),
    ],
)
def test_targets(word: str, target: Target) -> None:
    assert parse_target(word) == target


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("ns:", "invalid namespace name"),
        ("ns:a/b", "invalid namespace name"),
        ("ns:..", "invalid namespace name"),
        ("ns:with space", "invalid namespace name"),
        ("pid:0", "invalid process id"),
        ("pid:x", "invalid process id"),
        ("-rf", "invalid target"),
        ("a b", "invalid target"),
    ],
)
def test_bad_targets(word: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_target(word)


@given(st.integers(1, 2**32 - 1))
def test_veth_name_round_trip(inode: int) -> None:
    name = host_veth_name(inode)
    assert name.startswith(VETH_HOST_PREFIX) and len(name) == 15
    assert inode_of_veth(name) == inode


def test_foreign_names_are_not_ours() -> None:
    assert inode_of_veth("vethweplABC") is None
    assert inode_of_veth("eth0") is None
    assert inode_of_veth("vethwepl0000000") is None
    with pytest.raises(ValueError):
        host_veth_name(36**7)


def test_alias_round_trip() -> None:
    alias = make_alias("ns:c1", "/run/netns/c1")
    assert parse_alias(alias) == ("ns:c1", "/run/netns/c1")
    assert parse_alias(None) is None
    assert parse_alias("something else") is None
    assert parse_alias("weave-attached onlyone") is None


def test_display_ident() -> None:
    cid = "0123456789abcdef" * 4
    assert display_ident(cid) == "0123456789ab"
    assert display_ident("ns:a-long-namespace-name") == "ns:a-long-namespace-name"
    assert display_ident("weave:expose") == "weave:expose"


def test_docker_target_without_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from weave_cli.net.docker import container_pid

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(TargetNotFoundError, match="Docker targets need a Docker daemon"):
        container_pid("web")
    assert not os.path.exists(f"{tmp_path}/no-docker.sock")
