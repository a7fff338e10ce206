"""IPAM's durable state in SQLite: the ring, the Paxos state and who owns which address.

One file, ``$WEAVE_STATE_DIR/ipam.db`` (mode 0600), in WAL mode with ``synchronous=FULL``:
every logical change — an allocation with the ring entry it touched, a claim, a free, a Paxos
step — is one transaction, committed before the router answers or gossips, so a crash at any
point leaves either the old or the new state and an address is never handed out twice.

Tables:
    meta(key TEXT PRIMARY KEY, value BLOB)   schema, peer name, range, ring bytes, paxos bytes
    owned(ident TEXT, cidr TEXT, PRIMARY KEY (ident, cidr))   addresses by container id

The byte formats of ring and Paxos state belong to their modules; the store keeps them opaque.
A file that SQLite cannot read, that fails ``PRAGMA quick_check`` or whose schema is not ours
is reported as ``StateError`` naming the file and the ways out, and is never overwritten.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from weave_cli.errors import StateError

SCHEMA_VERSION = b"1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS owned (ident TEXT NOT NULL, cidr TEXT NOT NULL,
                                  PRIMARY KEY (ident, cidr));
"""
RECOVER_HINT = (
    "restore a copy of the file, or start with --ipam-recover=relearn to keep this peer's name "
    "and re-learn its ranges from the other peers before allocating anything"
)


@dataclass
class StoredState:
    """What a previous run left: all fields empty on a brand-new database."""

    peer_name: str | None = None
    range: str | None = None
    ring: bytes | None = None
    paxos: bytes | None = None
    owned: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One logical change, written in one transaction. ``None`` leaves a field as it is."""

    ring: bytes | None = None
    paxos: bytes | None = None
    clear_paxos: bool = False
    add: Iterable[tuple[str, str]] = ()
    remove: Iterable[tuple[str, str]] = ()
    remove_idents: Iterable[str] = ()


class IPAMStore:
    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path, self._db = path, conn

    @classmethod
    def open(cls, path: Path, *, create: bool) -> IPAMStore:
        """Open (or with ``create`` make) the database; corruption is a clear StateError."""
        exists = path.exists()
        if not exists and not create:
            raise StateError(f"IPAM database {path} is missing", RECOVER_HINT)
        if exists and not create and path.stat().st_size == 0:
            # SQLite would take an empty file for a new database: a silent reset. Ours always
            # holds at least its header page once opened, so an empty one lost its contents.
            raise StateError(f"IPAM database {path} is corrupt (the file is empty)", RECOVER_HINT)
        if not exists:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if exists:
                row = conn.execute("PRAGMA quick_check").fetchone()
                if row is None or row[0] != "ok":
                    raise sqlite3.DatabaseError(f"integrity check failed: {row}")
            conn.executescript(_SCHEMA)
            version = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version is None:
                if exists and conn.execute("SELECT count(*) FROM owned").fetchone()[0]:
                    raise sqlite3.DatabaseError("schema marker missing")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif bytes(version[0]) != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"unknown schema {bytes(version[0])!r}")
        except sqlite3.DatabaseError as err:
            raise StateError(f"IPAM database {path} is corrupt ({err})", RECOVER_HINT) from None
        os.chmod(path, 0o600)
        return cls(path, conn)

    def load(self) -> StoredState:
        state = StoredState()
        meta = {k: bytes(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        state.peer_name = meta["peer"].decode() if "peer" in meta else None
        state.range = meta["range"].decode() if "range" in meta else None
        state.ring, state.paxos = meta.get("ring"), meta.get("paxos")
        for ident, cidr in self._db.execute("SELECT ident, cidr FROM owned ORDER BY ident, cidr"):
            state.owned.setdefault(ident, []).append(cidr)
        return state

    def set_identity(self, peer_name: str, ipalloc_range: str) -> str | None:
        """Record who we are and which range the ring belongs to. A new range or a new peer name
        discards the ring, the Paxos state and the owned addresses; returns why, or None."""
        with self._tx() as db:
            old = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('range', 'peer')"))
            old_range = bytes(old["range"]).decode() if "range" in old else None
            old_peer = bytes(old["peer"]).decode() if "peer" in old else None
            why = None
            if old_range is not None and old_range != ipalloc_range:
                why = f"the allocation range changed from {old_range} to {ipalloc_range}"
            elif old_peer is not None and old_peer != peer_name:
                why = f"the peer name changed from {old_peer} to {peer_name}"
            if why is not None:
                db.execute("DELETE FROM meta WHERE key IN ('ring', 'paxos')")
                db.execute("DELETE FROM owned")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('peer', ?)", (peer_name.encode(),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('range', ?)", (ipalloc_range.encode(),))
        return why

    def apply(self, change: Change) -> None:
        """Write one logical change durably (returns after the commit is on disk)."""
        with self._tx() as db:
            if change.ring is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('ring', ?)", (change.ring,))
            if change.clear_paxos:
                db.execute("DELETE FROM meta WHERE key='paxos'")
            elif change.paxos is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('paxos', ?)", (change.paxos,))
            db.executemany("INSERT OR IGNORE INTO owned VALUES (?, ?)", list(change.add))
            db.executemany("DELETE FROM owned WHERE ident=? AND cidr=?", list(change.remove))
            db.executemany("DELETE FROM owned WHERE ident=?", [(i,) for i in change.remove_idents])

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def load_nicknames(self) -> dict[str, str]:
        """Peer name -> nickname as last saved (so rmpeer by nickname works after a restart)."""
        import json

        row = self._db.execute("SELECT value FROM meta WHERE key='nicknames'").fetchone()
        try:
            data = json.loads(bytes(row[0])) if row is not None else {}
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}

    def save_nicknames(self, nicknames: dict[str, str]) -> None:
        import json

        blob = json.dumps(nicknames, sort_keys=True).encode()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('nicknames', ?)", (blob,))

    def close(self) -> None:
        self._db.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, _value: object, _tb: object) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")
