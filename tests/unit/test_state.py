"""Persistence of the peer name and targets; pid files; supervisor backoff."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from weave_cli.errors import StateError
from weave_cli.names import Paths
from weave_cli.router import state
from weave_cli.router.supervisor import STABLE_AFTER, next_streak, restart_delay


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(state_dir=tmp_path / "state", run_dir=tmp_path / "run")
    state.ensure_dirs(p)
    return p


def test_peer_name_is_created_once_and_kept(paths: Paths) -> None:
    first = state.load_or_create_peer_name(paths, None, random.Random(1))
    again = state.load_or_create_peer_name(paths, None, random.Random(2))
    assert first == again
    assert stat.S_IMODE(os.stat(paths.peer_file).st_mode) == 0o600


def test_requested_name_overrides_and_persists(paths: Paths) -> None:
    state.load_or_create_peer_name(paths, None, random.Random(1))
    name = state.load_or_create_peer_name(paths, "02:00:00:00:00:01", random.Random(1))
    assert str(name) == "02:00:00:00:00:01"
    assert state.load_or_create_peer_name(paths, None, random.Random(3)) == name


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"name": "nope"}', b"\x00\xff"])
def test_corrupt_peer_file_is_a_clear_error(paths: Paths, content: bytes) -> None:
    paths.peer_file.write_bytes(content)
    with pytest.raises(StateError, match=str(paths.peer_file)):
        state.load_or_create_peer_name(paths, None, random.Random(1))


def test_targets_round_trip(paths: Paths) -> None:
    assert state.load_targets(paths) == []
    state.save_targets(paths, ["h1", "10.0.0.2:7000"])
    assert state.load_targets(paths) == ["h1", "10.0.0.2:7000"]


def test_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot write"):
        state.ensure_dirs(Paths(state_dir=blocker / "state", run_dir=tmp_path / "run"))


def test_stale_pid_file_is_removed(paths: Paths) -> None:
    paths.launcher_pidfile.write_text("999999999\n")
    assert state.read_pid(paths.launcher_pidfile) is None
    assert not paths.launcher_pidfile.exists()
    # A live process that is not a weave router (pid reuse) does not count either.
    state.write_pid(paths.launcher_pidfile)
    assert state.read_pid(paths.launcher_pidfile) is None
    assert not paths.launcher_pidfile.exists()


def test_launcher_lock_is_exclusive_and_pid_files_are_removed_only_by_their_owner(
    paths: Paths,
) -> None:
    import subprocess
    import sys

    fd = state.acquire_launcher_lock(paths)
    assert fd is not None
    probe = (
        "import sys; from pathlib import Path; from weave_cli.names import Paths;"
        "from weave_cli.router import state;"
        "p = Paths(Path(sys.argv[1]), Path(sys.argv[2]));"
        "print(state.acquire_launcher_lock(p) is None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(paths.state_dir), str(paths.run_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.strip()
    assert out == "True"
    os.close(fd)
    paths.router_pidfile.write_text("1\n")
    state.remove_if_mine(paths.router_pidfile)
    assert paths.router_pidfile.exists()
    state.write_pid(paths.router_pidfile)
    state.remove_if_mine(paths.router_pidfile)
    assert not paths.router_pidfile.exists()


def test_restart_backoff_grows_and_caps() -> None:
    delays = [restart_delay(n) for n in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 30.0 and delays == sorted(delays)
    assert next_streak(5, STABLE_AFTER + 1) == 1
    assert next_streak(2, 1.0) == 3


def test_atomic_write_never_follows_a_planted_symlink(paths: Paths, tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("untouched")
    target_file = paths.run_dir / "launch.json"
    planted = target_file.with_name(f".launch.json.{os.getpid()}.tmp")
    planted.symlink_to(target)
    state.write_atomic(target_file, "secret")
    assert target.read_text() == "untouched"
    assert target_file.read_text() == "secret"
    assert stat.S_IMODE(os.stat(target_file).st_mode) == 0o600
