"""The encrypted mesh connection, sans-I/O: handshake, auth failures, hostile frames (S01-S08)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weave_cli.crypto.handshake import Handshake
from weave_cli.crypto.kdf import password_key
from weave_cli.crypto.secret import Secret
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import (
    MAGIC,
    ONLY_HERE,
    ONLY_THERE,
    TAMPERED,
    WRONG_PASSWORD,
    Closed,
    ConnectionProtocol,
    Event,
    HandshakeDone,
    LocalIdentity,
    MessageReceived,
    MessageTag,
    ProtocolSettings,
)

A = LocalIdentity(PeerName.parse("02:00:00:00:00:0a"), "alpha", 11)
B = LocalIdentity(PeerName.parse("02:00:00:00:00:0b"), "beta", 22)
PW = password_key(Secret(b"sesame"), n=2**10)
OTHER = password_key(Secret(b"sesame2"), n=2**10)
SMALL = ProtocolSettings(max_frame=1024)
_seeds = itertools.count(1)


def hs(pw: Secret | None, outbound: bool) -> Handshake | None:
    return None if pw is None else Handshake(pw, next(_seeds).to_bytes(32, "big"),
                                             outbound=outbound)


def proto(ident: LocalIdentity, pw: Secret | None, outbound: bool,
          settings_: ProtocolSettings = SMALL) -> ConnectionProtocol:
    return ConnectionProtocol(ident, outbound=outbound, conn_id=7 if outbound else 9, now=0.0,
                              settings=settings_, handshake=hs(pw, outbound))


def events(p: ConnectionProtocol) -> list[Event]:
    out = []
    while (ev := p.next_event()) is not None:
        out.append(ev)
    return out


def pump(a: ConnectionProtocol, b: ConnectionProtocol) -> tuple[list[Event], list[Event]]:
    for _ in range(10):
        ab, ba = a.data_to_send(), b.data_to_send()
        if not ab and not ba:
            break
        b.receive_data(ab, 0.0)
        a.receive_data(ba, 0.0)
    return events(a), events(b)


def established(pa: Secret | None = PW, pb: Secret | None = PW,
                ) -> tuple[ConnectionProtocol, ConnectionProtocol]:
    a, b = proto(A, pa, True), proto(B, pb, False)
    ea, eb = pump(a, b)
    assert [type(e) for e in ea] == [HandshakeDone] == [type(e) for e in eb]
    return a, b


def reason(evs: list[Event]) -> str:
    assert evs and isinstance(evs[-1], Closed), evs
    return evs[-1].reason


def test_encrypted_handshake_and_messages_both_ways() -> None:
    a, b = established()
    assert a.encrypted and b.encrypted and a.link_secret == b.link_secret != b""
    a.send_message(MessageTag.GOSSIP, b"secret gossip")
    wire = a.data_to_send()
    assert b"secret gossip" not in wire and len(wire) == 4 + 1 + 13 + 16
    b.receive_data(wire, 1.0)
    assert events(b) == [MessageReceived(MessageTag.GOSSIP, b"secret gossip")]
    b.send_message(MessageTag.OVERLAY_CONTROL, b"")
    a.receive_data(b.data_to_send(), 1.0)
    assert events(a) == [MessageReceived(MessageTag.OVERLAY_CONTROL, b"")]
    a.handle_timer(5.0)  # heartbeats are sealed too
    b.receive_data(a.data_to_send(), 5.0)
    assert events(b) == [] and b.state == "established"


def test_the_features_never_travel_in_plaintext() -> None:
    a = proto(A, PW, True)
    b = proto(B, PW, False)
    a_pre = a.data_to_send()
    assert a_pre[:7] == MAGIC + b"\x01\x01\x01" and len(a_pre) == 7 + 32
    b.receive_data(a_pre, 0.0)
    assert b"alpha" not in a_pre and b"beta" not in b.data_to_send()


@pytest.mark.parametrize("pa, pb", [(PW, OTHER), (OTHER, PW)])
def test_a_different_password_fails_at_the_first_frame_on_both_sides(
        pa: Secret, pb: Secret) -> None:
    a, b = proto(A, pa, True), proto(B, pb, False)
    ea, eb = pump(a, b)
    assert reason(ea) == reason(eb) == WRONG_PASSWORD
    assert "auth_failed" in WRONG_PASSWORD and a.remote is None and b.remote is None
    assert not any(isinstance(e, HandshakeDone) for e in ea + eb)


def test_a_password_on_one_side_only_is_refused_by_both() -> None:
    for pa, pb in [(PW, None), (None, PW)]:
        a, b = proto(A, pa, True), proto(B, pb, False)
        ea, eb = pump(a, b)
        expected = (ONLY_HERE, ONLY_THERE) if pa else (ONLY_THERE, ONLY_HERE)
        assert (reason(ea), reason(eb)) == expected
        assert "encryption" in ONLY_THERE and "auth_failed" in ONLY_HERE


def test_a_plaintext_peer_never_sees_our_features_when_we_have_a_password() -> None:
    secure, plain = proto(A, PW, True), proto(B, None, False)
    sent_by_plain = plain.data_to_send()  # its preamble, drained at once as the driver does
    plain.receive_data(secure.data_to_send(), 0.0)
    assert plain.data_to_send() == b"" and reason(events(plain)) == ONLY_THERE
    secure.receive_data(sent_by_plain, 0.0)
    assert secure.data_to_send() == b"" and reason(events(secure)) == ONLY_HERE


def test_replayed_reordered_tampered_and_dropped_frames_close() -> None:
    def frames() -> tuple[ConnectionProtocol, ConnectionProtocol, bytes, bytes]:
        a, b = established()
        a.send_message(MessageTag.GOSSIP, b"one")
        f1 = a.data_to_send()
        a.send_message(MessageTag.GOSSIP, b"two")
        return a, b, f1, a.data_to_send()

    cases = {"replay": lambda f1, f2: f1 + f1, "reorder": lambda f1, f2: f2 + f1,
             "drop": lambda f1, f2: f2, "flip": lambda f1, f2: f1[:9] + bytes([f1[9] ^ 4])
             + f1[10:], "length": lambda f1, f2: (int.from_bytes(f1[:4], "big") - 1)
             .to_bytes(4, "big") + f1[4:-1]}
    for name, mangle in cases.items():
        _, b, f1, f2 = frames()
        b.receive_data(mangle(f1, f2), 1.0)
        evs = events(b)
        assert b.state == "closed", name
        assert reason(evs) == TAMPERED, name


def test_oversized_and_undersized_lengths_are_refused_before_buffering() -> None:
    _, b = established()
    b.receive_data((1024 + 1 + 16 + 1).to_bytes(4, "big"), 1.0)
    assert reason(events(b)) == "invalid frame length 1042 (limit 1041)"
    _, b = established()
    b.receive_data((16).to_bytes(4, "big"), 1.0)  # no room for a tag byte and the MAC
    assert reason(events(b)).startswith("invalid frame length 16")
    a, b = established()
    a.send_message(MessageTag.GOSSIP, b"x" * 1024)  # max_frame exactly: accepted
    b.receive_data(a.data_to_send(), 1.0)
    assert [type(e) for e in events(b)] == [MessageReceived]


def test_a_truncated_frame_then_eof_closes_cleanly() -> None:
    a, b = established()
    a.send_message(MessageTag.GOSSIP, b"payload")
    b.receive_data(a.data_to_send()[:-3], 1.0)
    assert events(b) == [] and b.state == "established"
    b.eof_received(1.0)
    assert reason(events(b)) == "connection closed by peer"


def test_reflected_preamble_and_bad_keys_are_refused() -> None:
    a = proto(A, PW, True)
    pre = a.data_to_send()
    a.receive_data(pre, 0.0)  # our own key reflected back
    assert reason(events(a)).startswith("auth_failed: peer sent our own")
    b = proto(B, PW, False)
    b.receive_data(MAGIC + b"\x01\x01\x01" + bytes(32), 0.0)
    assert reason(events(b)) == "auth_failed: peer's X25519 public key is invalid"
    c = proto(B, PW, False)
    c.receive_data(MAGIC + b"\x01\x01\x02", 0.0)
    assert "unsupported crypto field 2" in reason(events(c))


def test_the_key_may_arrive_byte_by_byte() -> None:
    a, b = proto(A, PW, True), proto(B, PW, False)
    for byte in a.data_to_send():
        b.receive_data(bytes([byte]), 0.0)
    a.receive_data(b.data_to_send(), 0.0)
    for byte in a.data_to_send():
        b.receive_data(bytes([byte]), 0.0)
    assert [type(e) for e in events(b)] == [HandshakeDone]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.integers(1, 64))
def test_garbage_after_a_valid_crypto_preamble_never_raises(junk: bytes, chunk: int) -> None:
    """S03: whatever follows the key, the result is a quiet state or one Closed event."""
    a, b = proto(A, PW, True), proto(B, PW, False)
    b.data_to_send()
    data = a.data_to_send() + junk
    for i in range(0, len(data), chunk):
        b.receive_data(data[i : i + chunk], 0.0)
    evs = events(b)
    assert all(isinstance(e, Closed) for e in evs) and len(evs) <= 1
    assert b.state == ("closed" if evs else "handshake")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=120), st.integers(0, 200))
def test_any_bit_flip_in_an_encrypted_stream_closes(junk: bytes, where: int) -> None:
    a, b = established()
    a.send_message(MessageTag.GOSSIP, junk)
    wire = bytearray(a.data_to_send())
    wire[where % len(wire)] ^= 1 << (where % 8)
    b.receive_data(bytes(wire), 1.0)
    evs = events(b)
    assert b.state in ("closed", "established")
    if b.state == "established":  # a flipped length bit that now asks for more: still waiting
        assert evs == []
        b.eof_received(1.0)
    assert isinstance(events(b)[-1] if not evs else evs[-1], Closed)


def test_both_sides_learn_a_wrong_password_even_when_one_fails_first() -> None:
    """B answers A's preamble with its own preamble and sealed FEATURES in one chunk; A fails
    on them at once, yet its FEATURES (queued just before) still reach B, which fails too."""
    a, b = proto(A, PW, True), proto(B, OTHER, False)
    a_out = a.data_to_send()  # A's preamble, sent as the connection opens
    b.receive_data(a_out, 0.0)
    a.receive_data(b.data_to_send(), 0.0)  # B's preamble + FEATURES arrive together
    assert reason(events(a)) == WRONG_PASSWORD
    lingering = a.data_to_send()
    assert lingering and a.data_to_send() == b""  # drained once
    b.receive_data(lingering, 0.0)
    assert reason(events(b)) == WRONG_PASSWORD
