"""MeshCore with a password: link secrets, status words, auth failures, trusted subnets, S20."""

from __future__ import annotations

import json
import random

from weave_cli.crypto.handshake import PasswordKeys
from weave_cli.crypto.kdf import password_key, sleeve_keys
from weave_cli.crypto.secret import Secret
from weave_cli.render import render_connections, render_status
from weave_cli.router.mesh import MeshConfig, MeshCore, Send
from weave_cli.router.peer import PeerName

A, B = PeerName(0x020000000001), PeerName(0x020000000002)
PASSWORD = b"open sesame 1234"
PW = password_key(Secret(PASSWORD), n=2**10)
OTHER = password_key(Secret(b"something else"), n=2**10)


def keys(pw: Secret | PasswordKeys | None) -> PasswordKeys | None:
    return PasswordKeys(pw) if isinstance(pw, Secret) else pw


def core(name: PeerName, pw: Secret | PasswordKeys | None, targets: tuple[str, ...] = (),
         trusted: tuple[str, ...] = ()) -> MeshCore:
    config = MeshConfig(name=name, nickname=f"n{int(name) & 0xff}", uid=int(name) + 7,
                        password_keys=keys(pw), trusted_subnets=trusted)
    rng = random.Random(int(name))
    return MeshCore(config, now=0.0, rng=rng, targets=targets, entropy=rng.randbytes)


def sends(actions: list[object], conn: int) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send) and a.conn == conn)


Keys = Secret | PasswordKeys | None


def link(pa: Keys, pb: Keys, ta: tuple[str, ...] = (),
         tb: tuple[str, ...] = (), now: float = 0.0) -> tuple[MeshCore, MeshCore]:
    """A dials B (10.0.0.2) from 10.0.0.1; bytes are shuttled until both are quiet."""
    a, b = core(A, pa, ("10.0.0.2",), ta), core(B, pb, (), tb)
    a.tick(now)
    a.actions()
    a.connection_opened(1, ("10.0.0.2", 6783), True, now, target="10.0.0.2:6783")
    b.connection_opened(1, ("10.0.0.1", 40000), False, now)
    for _ in range(10):
        to_b, to_a = sends(a.actions(), 1), sends(b.actions(), 1)
        if not to_a and not to_b:
            break
        if to_b:
            b.connection_data(1, to_b, now)
        if to_a:
            a.connection_data(1, to_a, now)
    return a, b


def report(c: MeshCore) -> dict[str, object]:
    return {"Version": "x", "Router": c.status(0.0, wall=1_700_000_000.0)}


def test_encrypted_link_status_and_secrets() -> None:
    a, b = link(PW, PW)
    assert a.connected_peers() == [B] and b.connected_peers() == [A]
    sa, sb = a.link_secrets(), b.link_secrets()
    assert len(sa[B]) == 32 and sa[B] == sb[A]
    a_tx, a_rx = sleeve_keys(sa[B], A, B)
    assert (a_tx, a_rx) == sleeve_keys(sb[A], B, A)[::-1]
    status = a.status(0.0)
    assert status["Encryption"] is True
    [row] = status["Connections"]  # type: ignore[misc]
    assert row["Attrs"] == {"encrypted": True}
    assert "Encryption: enabled" in render_status(report(a)).replace("  ", "")


def test_overlay_attrs_are_merged_not_clobbered() -> None:
    a, _ = link(PW, PW)
    a.set_overlay(B, "sleeve", True, {"mtu": 1376, "fastdp": "no heartbeat"}, 1.0)
    [row] = a.status(1.0)["Connections"]  # type: ignore[misc]
    assert row["Attrs"] == {"mtu": 1376, "fastdp": "no heartbeat", "encrypted": True}
    assert "encrypted=true" in render_connections(report(a))


def test_plaintext_mode_has_no_secrets_and_no_crypto_attrs() -> None:
    a, b = link(None, None)
    assert a.link_secrets() == {B: b""} and b.link_secrets() == {A: b""}
    status = a.status(0.0)
    assert status["Encryption"] is False
    [row] = status["Connections"]  # type: ignore[misc]
    assert row["Attrs"] == {}


def test_wrong_password_shows_auth_failed_and_backs_off() -> None:
    for pa, pb in [(PW, OTHER), (PW, None), (None, PW)]:
        a, b = link(pa, pb)
        assert a.active == {} and b.active == {} and b.conns == {}
        [row] = a.status(0.0, wall=1_700_000_000.0)["Connections"]  # type: ignore[misc]
        assert row["State"] == "failed" and "auth_failed" in row["Info"], row
        assert "auth_failed" in render_connections(report(a))
        assert b.topology.get(A) is None  # S01: the peer never appears in topology
        deadline = a.next_deadline()
        assert deadline is not None and deadline >= 1.0  # retried later, with backoff


def test_the_dial_retry_doubles_after_repeated_auth_failures() -> None:
    a, _ = link(PW, OTHER)
    first = a.targets.get("10.0.0.2:6783")
    assert first is not None
    waits = []
    now = 0.0
    for _ in range(3):
        due = a.next_deadline()
        assert due is not None
        waits.append(due - now)
        now = due
        a.tick(now)
        a.actions()
        a.connection_opened(9, ("10.0.0.2", 6783), True, now, target="10.0.0.2:6783")
        a.connection_closed(9, "connection closed by peer", now)
    assert waits[-1] > waits[0]


def test_trusted_subnets_allow_a_plaintext_data_path_only_both_ways() -> None:
    a, b = link(PW, PW, ta=("10.0.0.0/24",), tb=("10.0.0.0/24",))
    assert a.link_secrets() == {B: b""} and b.link_secrets() == {A: b""}
    [row] = a.status(0.0)["Connections"]  # type: ignore[misc]
    assert row["Attrs"] == {"encrypted": True, "data_plaintext": True}
    assert a.status(0.0)["TrustedSubnets"] == ["10.0.0.0/24"]
    for ta, tb in [(("10.0.0.0/24",), ()), ((), ("10.0.0.0/24",)),
                   (("10.0.0.0/24",), ("192.168.0.0/16",))]:
        a, b = link(PW, PW, ta=ta, tb=tb)
        assert len(a.link_secrets()[B]) == 32 and a.link_secrets()[B] == b.link_secrets()[A]
        [row] = a.status(0.0)["Connections"]  # type: ignore[misc]
        assert row["Attrs"] == {"encrypted": True}


def test_the_password_appears_in_no_status_or_repr() -> None:
    """S20 at unit level: the report, rendered status and reprs hold neither the password
    nor its derived key."""
    a, b = link(PW, PW)
    a.set_overlay(B, "sleeve", True, {"mtu": 1376}, 1.0)
    texts = [json.dumps(a.status(1.0)), json.dumps(b.status(1.0)), repr(a.config),
             render_status(report(a)), render_connections(report(a)), repr(a.conns),
             repr(vars(a.conns[1].proto))]
    key = PW.reveal()
    for text in texts:
        assert PASSWORD.decode() not in text
        assert key.hex() not in text and repr(key) not in text
        assert a.link_secrets()[B].hex() not in text


def test_the_refusing_side_shows_auth_failed_too_for_a_minute() -> None:
    for pa, pb in [(PW, OTHER), (PW, None), (None, PW)]:
        _a, b = link(pa, pb)
        rows = b.status(0.0)["Connections"]
        assert [(r["Address"], r["State"], r["Outbound"]) for r in rows] == [  # type: ignore[index]
            ("10.0.0.1:40000", "failed", False)], rows
        assert "auth_failed" in rows[0]["Info"]  # type: ignore[index]
        assert "auth_failed" in render_connections(report(b))
        assert b.status(61.0)["Connections"] == []  # forgotten a minute later


def test_a_rotation_never_splits_two_peers_and_finish_redials_the_old_key() -> None:
    """Every pair of phases a rolling rotation can put side by side connects; ``finish``
    closes only the connections still keyed with the old password, and they come back."""
    begun, switched, new = (PasswordKeys(PW, OTHER, "begun"), PasswordKeys(OTHER, PW, "switched"),
                            PasswordKeys(OTHER))
    for pa, pb in [(PW, begun), (begun, begun), (begun, switched), (switched, switched),
                   (switched, new), (new, switched), (new, new)]:
        a, b = link(pa, pb)
        assert a.connected_peers() == [B] and b.connected_peers() == [A], (pa, pb)
        assert len(a.link_secrets()[B]) == 32 and a.link_secrets()[B] == b.link_secrets()[A]
    for pa, pb in [(PW, switched), (PW, new), (begun, new)]:  # two steps apart: refused
        a, b = link(pa, pb)  # by the side that cannot open the other's frames (which closes)
        assert a.active == {} or b.active == {}, (pa, pb)
    assert link(begun, PW)[0].status(0.0)["PasswordRotation"] == "begun"
    a, b = link(begun, switched)  # B has switched, A not yet: each shows what the other uses
    [row_a], [row_b] = a.status(0.0)["Connections"], b.status(0.0)["Connections"]  # type: ignore[misc]
    assert row_a["Attrs"] == {"encrypted": True, "peer_password": "next"}
    assert row_b["Attrs"] == {"encrypted": True, "peer_password": "previous"}
    assert "peer_password=previous" in render_connections(report(b))
    [row] = link(begun, begun)[0].status(0.0)["Connections"]  # type: ignore[misc]
    assert row["Attrs"] == {"encrypted": True}  # both still seal with PW
    a, b = link(switched, switched)  # a connection made while both still accepted PW ...
    assert a.set_password_keys(new, 1.0) == 0  # ... keyed with OTHER both ways: kept
    a, b = link(begun, switched)  # A sends PW: after finish it must go
    assert b.set_password_keys(new, 1.0) == 1 and b.active == {}
    assert b.status(1.0)["PasswordRotation"] == ""
    try:
        link(None, None)[0].set_password_keys(new, 1.0)
    except ValueError as err:
        assert "no password" in str(err)
    else:
        raise AssertionError("a plaintext router took a password")


def test_finish_closes_connections_still_in_their_handshake() -> None:
    """A connection not keyed yet holds the candidates it was made with: once a key is no
    longer accepted it is closed, so the old password cannot finish a handshake later."""
    switched, new = PasswordKeys(OTHER, PW, "switched"), PasswordKeys(OTHER)
    for deliver_preamble in (False, True):
        b = core(B, switched)
        b.connection_opened(5, ("10.0.0.1", 40001), False, 0.0)
        attacker = core(A, PW)  # holds only the old password
        attacker.connection_opened(5, ("10.0.0.2", 6783), True, 0.0)
        first = sends(attacker.actions(), 5)
        if deliver_preamble:  # B has the attacker's key: a session, but no frame opened yet
            b.connection_data(5, first[:39], 0.0)
        assert 5 in b.conns
        assert b.set_password_keys(new, 1.0) == 1 and 5 not in b.conns
        b.connection_data(5, first[39:] if deliver_preamble else first, 1.0)
        assert b.active == {}
    b = core(B, switched)
    b.connection_opened(6, ("10.0.0.1", 40002), False, 0.0)
    assert b.set_password_keys(PasswordKeys(OTHER, PW, "switched"), 1.0) == 0  # nothing dropped
