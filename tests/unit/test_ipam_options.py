"""IPAM launch options and start-up decisions (the database, the route check)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from weave_cli.config import LaunchConfig
from weave_cli.errors import StateError, UsageError
from weave_cli.ipam import options, setup
from weave_cli.ipam.address import CIDR
from weave_cli.ipam.allocator_wire import Consensus, Observer, Seed
from weave_cli.names import Paths
from weave_cli.router.peer import PeerName

ME = PeerName(0x0A0000000001)


def test_init_modes_parse_and_bad_ones_say_what_to_use() -> None:
    assert options.parse_init("consensus") == Consensus(1)
    assert options.parse_init("consensus=3") == Consensus(3)
    assert options.parse_init("observer") == Observer()
    assert options.parse_init("seed=0a:00:00:00:00:01,0a:00:00:00:00:02") == Seed(
        (PeerName(0x0A0000000001), PeerName(0x0A0000000002))
    )
    for bad in ("consensus=0", "consensus=x", "seed=", "seed=nothex", "elector", "observer=1"):
        with pytest.raises(UsageError) as info:
            options.parse_init(bad)
        assert "consensus" in (info.value.hint or "")


def test_defaults_keep_two_rings_from_forming() -> None:
    assert options.default_init(0, join=False) == "consensus=1"
    assert options.default_init(2, join=False) == "consensus=3"
    assert options.default_init(2, join=True) == "observer"


def test_launch_config_checks_ipam_options_together() -> None:
    LaunchConfig(ipalloc_range="10.40.0.0/16", ipalloc_default_subnet="10.40.1.0/24").validate()
    with pytest.raises(UsageError, match="outside"):
        LaunchConfig(ipalloc_range="10.40.0.0/16", ipalloc_default_subnet="10.41.0.0/24").validate()
    with pytest.raises(UsageError, match="did you mean 10.40.0.0/16"):
        LaunchConfig(ipalloc_range="10.40.0.1/16").validate()
    with pytest.raises(UsageError, match="need IP allocation enabled"):
        LaunchConfig(ipalloc_range="", ipalloc_init="consensus=2").validate()
    with pytest.raises(UsageError, match="relearn"):
        LaunchConfig(ipam_recover="forget").validate()
    with pytest.raises(UsageError, match="ipalloc-timeout"):
        LaunchConfig(ipalloc_timeout=0).validate()
    assert LaunchConfig().ipam_range == "10.32.0.0/12"
    assert LaunchConfig(ipalloc_range="").ipam_range == ""


def test_routes_are_read_from_proc_without_the_default_route(tmp_path: Path) -> None:
    route = tmp_path / "route"
    route.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "eth1\t0000200A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
        "weave\t0000200A\t00000000\t0001\t0\t0\t0\t0000F0FF\t0\t0\t0\n"  # expose's: ours
    )
    routes = options.host_routes(route)
    assert [str(r) for r in routes] == ["192.0.2.0/24", "10.32.0.0/16"]
    universe = CIDR.parse("10.32.0.0/12")
    assert options.overlapping_routes(universe, routes) == ["10.32.0.0/16"]
    assert options.host_routes(tmp_path / "missing") == []


def paths(tmp_path: Path) -> Paths:
    p = Paths(state_dir=tmp_path / "state", run_dir=tmp_path / "run")
    p.state_dir.mkdir(exist_ok=True)
    return p


def no_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup, "host_routes", list)


def test_first_start_creates_a_private_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_routes(monkeypatch)
    p = paths(tmp_path)
    ipam = setup.open_ipam(p, LaunchConfig(), ME, random.Random(1), peer_existed=False)
    assert ipam is not None and p.ipam_db.stat().st_mode & 0o777 == 0o600
    ipam.store.close()
    assert setup.open_ipam(p, LaunchConfig(ipalloc_range=""), ME, random.Random(1),
                           peer_existed=True) is None  # fmt: skip


def test_a_known_peer_without_its_database_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_routes(monkeypatch)
    p = paths(tmp_path)
    with pytest.raises(StateError, match="ipam.db is missing") as info:
        setup.open_ipam(p, LaunchConfig(), ME, random.Random(1), peer_existed=True)
    assert "--ipam-recover=relearn" in (info.value.hint or "")
    assert not p.ipam_db.exists()


def test_relearn_moves_a_corrupt_database_aside_and_observes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    no_routes(monkeypatch)
    p = paths(tmp_path)
    p.ipam_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="corrupt"):
        setup.open_ipam(p, LaunchConfig(), ME, random.Random(1), peer_existed=True)
    assert p.ipam_db.read_bytes().startswith(b"this is not")  # never overwritten
    cfg = LaunchConfig(ipam_recover="relearn", ipalloc_init="consensus=1")
    with caplog.at_level(logging.WARNING, logger="weave.ipam"):
        ipam = setup.open_ipam(p, cfg, ME, random.Random(1), peer_existed=True)
    assert ipam is not None and isinstance(ipam.allocator.init, Observer)
    ipam.store.close()
    assert [f.name.startswith("ipam.db.corrupt-") for f in p.state_dir.iterdir()].count(True) == 1
    assert "re-learning" in caplog.text


def test_the_default_range_over_a_host_route_is_an_error_an_explicit_one_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(setup, "host_routes", lambda: [CIDR.parse("10.32.5.0/24")])
    with pytest.raises(UsageError, match="overlaps existing route"):
        setup.check_routes(LaunchConfig())
    with caplog.at_level(logging.WARNING, logger="weave.ipam"):
        setup.check_routes(LaunchConfig(ipalloc_range="10.32.0.0/12"))
    assert "overlaps existing route(s) 10.32.5.0/24" in caplog.text
    setup.check_routes(LaunchConfig(ipalloc_range="10.96.0.0/12"))
