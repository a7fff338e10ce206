"""The data path's and the password's view of ``MeshCore``: neighbours, link secrets, verdicts.

``LinkPlane`` is the part of the core that the overlay task (``overlay/service.py``) and a
password rotation (``router/rotation.py``) call, through ``MeshDriver.query``, so inside the
core's owner task like every other call. Pure: it reads the connections and, for the calls
that change something, closes connections or marks the topology dirty, then ends with
``_finish`` as every public call of the core does.
"""

from __future__ import annotations

from collections.abc import Callable

from weave_cli.crypto.handshake import PasswordKeys
from weave_cli.router import mesh_crypto
from weave_cli.router.mesh_types import Conn
from weave_cli.router.peer import PeerName


class LinkPlane:
    conns: dict[int, Conn]
    active: dict[PeerName, int]
    password_keys: PasswordKeys | None
    _local_dirty: bool

    def _pump(self, c: Conn, now: float) -> None:
        raise NotImplementedError

    def _finish(self, now: float) -> None:
        raise NotImplementedError

    def link_secrets(self) -> dict[PeerName, bytes]:
        """Every peer with an active connection and its 32-byte sleeve secret (b"" when the
        link's data path is plaintext: no password, or both ends trust each other)."""
        return {name: mesh_crypto.link_secret(self.conns[cid]) for name, cid in self.active.items()}

    def link_crypto(self) -> dict[PeerName, tuple[bytes, bool]]:
        """Per active connection: its 32-byte link secret (b"" without a password) and whether
        both ends trust each other's subnet, so its data path may go unencrypted."""
        return {name: (self.conns[cid].proto.link_secret, self.conns[cid].data_plaintext)
                for name, cid in self.active.items()}

    def drop_connections(self, reason: str, now: float,
                         which: Callable[[Conn], bool] = lambda c: True) -> int:
        """Close every connection (or those ``which`` picks); their targets reconnect as after
        any failure. Returns how many were closed."""
        closed = 0
        for c in list(self.conns.values()):
            if c.id in self.conns and which(c):
                c.proto.close(reason)
                self._pump(c, now)
                closed += 1
        self._finish(now)
        return closed

    def set_password_keys(self, keys: PasswordKeys, now: float) -> int:
        """A password rotation step: new connections use ``keys``; those keyed with a password
        no longer accepted, and when a key is no longer accepted those not keyed yet, are
        closed (and redialled). Returns how many were closed."""
        old = self.password_keys
        if old is None:
            raise ValueError("this router has no password: a rotation needs one")
        self.password_keys = keys
        return self.drop_connections(
            "password rotation: this connection used a password no longer accepted", now,
            lambda c: mesh_crypto.rests_on_dropped_key(old, keys, c))

    def neighbour_connections(self) -> dict[PeerName, int]:
        """The id of the active connection to each neighbour (a new one: a new link)."""
        return dict(self.active)

    def neighbours(self) -> dict[PeerName, str]:
        """Every peer with an active connection, and its underlay IP address."""
        return {name: self.conns[cid].address[0] for name, cid in self.active.items()}

    def set_overlay(self, peer: PeerName, overlay: str, confirmed: bool,
                    attrs: dict[str, object], now: float) -> None:
        """The overlay's verdict on the link to ``peer``: what carries it, and whether its data
        path is confirmed (a change of that is a topology change)."""
        c = self.conns.get(self.active.get(peer, -1))
        if c is not None:
            c.overlay, c.extra = overlay, dict(attrs)
            if c.data_path_confirmed != confirmed:
                c.data_path_confirmed = confirmed
                self._local_dirty = True
        self._finish(now)
