"""The router's files are its own (S21), and the accept_ra writer tolerates a host without IPv6.

No root needed: state and run directories under ``tmp_path``, with the process umask set to 0
for each test so the modes seen are the ones the code asks for, not the umask's doing. The
real router's files are checked in tests/lab/test_surfaces_lab.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from weave_cli.ipam.store import IPAMStore
from weave_cli.names import Paths
from weave_cli.net import links, nft
from weave_cli.router import state


@pytest.fixture(autouse=True)
def no_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_files_are_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "state", tmp_path / "run")
    state.ensure_dirs(paths)
    assert mode(paths.state_dir) == 0o700 and mode(paths.run_dir) == 0o755
    state.write_atomic(paths.peer_file, '{"name": "02:00:00:00:00:01"}')
    state.save_targets(paths, ["10.0.0.1"])
    state.write_atomic(paths.launch_config, "{}")
    store = IPAMStore.open(paths.ipam_db, create=True)
    try:
        store.set_identity("02:00:00:00:00:01", "10.32.0.0/12")  # a write: -wal and -shm exist
        files = [paths.peer_file, paths.targets_file, paths.launch_config, paths.ipam_db,
                 paths.ipam_db.with_name("ipam.db-wal"), paths.ipam_db.with_name("ipam.db-shm")]
        assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    finally:
        store.close()


def test_an_existing_world_writable_state_dir_is_tightened(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "state", tmp_path / "run")
    paths.state_dir.mkdir(mode=0o777)
    state.ensure_dirs(paths)
    assert not mode(paths.state_dir) & 0o022


def test_accept_ra_writer_without_ipv6_and_with_a_vanished_device(tmp_path: Path) -> None:
    assert links.accept_ra_off(None, ["weave"], conf=tmp_path / "no-ipv6") == []
    conf = tmp_path / "conf"
    (conf / "weave").mkdir(parents=True)
    (conf / "weave" / "accept_ra").write_text("1\n")
    (conf / "weave-vxhb").mkdir()
    (conf / "weave-vxhb" / "accept_ra").write_text("0\n")
    assert links.accept_ra_off(None, ["weave", "weave-vxhb", "gone"], conf=conf) == ["weave"]
    assert (conf / "weave" / "accept_ra").read_text() == "0\n"
    none = links.Link(3, "weave", "bridge", 1376, True, None, "", None, 1, accept_ra=None)
    assert not links.ra_on(none) and not links.accept_ra_off_early(None, none)


def test_local_ports_follow_the_mesh_port_and_read_back_from_the_table() -> None:
    assert nft.LocalPorts.for_mesh_port() == nft.LocalPorts((6782, 6783, 6784), (6783, 6784))
    other = nft.LocalPorts.for_mesh_port(7000)
    assert other == nft.LocalPorts((6782, 6784, 7000), (7000, 7001))
    chains = nft.desired([], ports=other)
    assert nft.ports_of(nft.canonical(chains)) == other
    assert nft.ports_of(None) is None and nft.ports_of(frozenset()) is None
    with pytest.raises(ValueError):
        nft.LocalPorts((6783, 6782), (6783,))
    with pytest.raises(ValueError):
        nft.LocalPorts((6782, 6782, 6783), (6783,))
    with pytest.raises(ValueError):
        nft.LocalPorts(tuple(range(7000, 7017)), (6783,))  # 17 ports: the comment overflows
    moved = nft.LocalPorts.for_mesh_port(7000, listeners=(7782, 7784))
    assert moved == nft.LocalPorts((6784, 7000, 7782, 7784), (7000, 7001))
    assert nft.ports_of(nft.canonical(nft.desired([], ports=moved))) == moved
    text = nft.script(chains)
    assert 'iifname "weave" udp dport { 7000, 7001 } counter drop' in text
    assert 'iifname "weave-vxhb" counter drop comment "weave:guard heartbeat device in"' in text
    assert nft.canonical(chains) != nft.canonical(nft.desired([]))  # a new port is a rewrite
