"""The IPAM store on a real SQLite file: durability shape, permissions, corruption handling."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from weave_cli.errors import StateError
from weave_cli.ipam.store import Change, IPAMStore


def test_new_database_is_empty_and_private(tmp_path: Path) -> None:
    store = IPAMStore.open(tmp_path / "ipam.db", create=True)
    state = store.load()
    assert state.ring is None and state.paxos is None and state.owned == {}
    assert stat.S_IMODE(os.stat(tmp_path / "ipam.db").st_mode) == 0o600
    store.close()


def test_changes_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ipam.db"
    store = IPAMStore.open(path, create=True)
    store.set_identity("02:00:00:00:00:01", "10.32.0.0/12")
    store.apply(
        Change(ring=b"ring-1", paxos=b"px", add=[("c1", "10.32.0.1/12"), ("c1", "10.32.0.2/12")])
    )
    store.apply(
        Change(remove=[("c1", "10.32.0.2/12")], add=[("c2", "10.32.0.3/12")], clear_paxos=True)
    )
    store.close()
    state = IPAMStore.open(path, create=False).load()
    assert state.peer_name == "02:00:00:00:00:01" and state.range == "10.32.0.0/12"
    assert state.ring == b"ring-1" and state.paxos is None
    assert state.owned == {"c1": ["10.32.0.1/12"], "c2": ["10.32.0.3/12"]}


def test_a_failed_change_leaves_nothing_half_written(tmp_path: Path) -> None:
    store = IPAMStore.open(tmp_path / "ipam.db", create=True)
    store.apply(Change(ring=b"old"))
    with pytest.raises(sqlite3.Error):
        store.apply(Change(ring=b"new", add=[("c1", object())]))  # type: ignore[list-item]
    assert store.load().ring == b"old"


def test_new_range_discards_the_old_ring(tmp_path: Path) -> None:
    store = IPAMStore.open(tmp_path / "ipam.db", create=True)
    store.set_identity("02:00:00:00:00:01", "10.32.0.0/12")
    store.apply(Change(ring=b"r", add=[("c1", "10.32.0.1/12")]))
    why = store.set_identity("02:00:00:00:00:01", "10.40.0.0/16")
    assert why == "the allocation range changed from 10.32.0.0/12 to 10.40.0.0/16"
    state = store.load()
    assert state.ring is None and state.owned == {} and state.range == "10.40.0.0/16"


def test_new_peer_name_discards_the_old_ring_and_same_identity_keeps_it(tmp_path: Path) -> None:
    store = IPAMStore.open(tmp_path / "ipam.db", create=True)
    assert store.set_identity("02:00:00:00:00:01", "10.32.0.0/12") is None
    store.apply(Change(ring=b"r", add=[("c1", "10.32.0.1/12")]))
    assert store.set_identity("02:00:00:00:00:01", "10.32.0.0/12") is None
    assert store.load().ring == b"r"
    why = store.set_identity("02:00:00:00:00:02", "10.32.0.0/12")
    assert why == "the peer name changed from 02:00:00:00:00:01 to 02:00:00:00:00:02"
    state = store.load()
    assert state.ring is None and state.owned == {} and state.peer_name == "02:00:00:00:00:02"


def test_missing_database_is_refused_when_not_creating(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="missing") as info:
        IPAMStore.open(tmp_path / "ipam.db", create=False)
    assert "--ipam-recover=relearn" in str(info.value)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty"])
def test_corrupt_database_is_refused_and_kept(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "ipam.db"
    store = IPAMStore.open(path, create=True)
    store.apply(Change(ring=b"x" * 10000, add=[(f"c{i}", f"10.32.0.{i}/12") for i in range(200)]))
    store.close()
    data = path.read_bytes()
    damaged = {"garbage": b"not a database at all" * 100, "truncate": data[: len(data) // 3]}
    path.write_bytes(damaged.get(damage, b""))
    before = path.read_bytes()
    with pytest.raises(StateError, match=str(path)):
        IPAMStore.open(path, create=False)
    assert path.read_bytes() == before
