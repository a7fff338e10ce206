"""Hostile byte streams into one mesh connection (router/protocol.py): S03, S05, S17.

Only the driver's interface is used (the constructor, ``receive_data``, ``eof_received``,
``handle_timer``, ``next_event``, ``data_to_send``, ``send_message``), so these keep testing the
connection as its framing and encryption change. For every stream, in both roles, plaintext and
(when the crypto modules are there) encrypted, whatever the chunking:

* nothing raises, and no ``Closed`` says ``internal error`` (the catch-all that would hide a bug);
* the events are ``HandshakeDone``/``MessageReceived``/``Closed`` in that order, at most one
  ``Closed``, and after it no event and no byte more, whatever else arrives;
* random bytes (not starting with the magic) and garbage after a valid preamble give only
  ``Closed``; a mutated valid transcript never gives more messages than were sent;
* the input buffer stays within one frame (checked through ``_inbuf`` when it exists) and the
  output within what the protocol itself sends.

Fixed cases: a 4 GiB length prefix closes on its 4th byte with no allocation (tracemalloc), in
the handshake and after it; exactly ``max_frame`` is accepted and ``max_frame + 1`` refused
before its body arrives; a truncated frame then EOF closes cleanly; an unknown tag closes.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import (
    MAGIC,
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
SMALL = ProtocolSettings(max_frame=4096)
SLACK = 4 + 1 + 16 + 64 + 7  # length, tag, AEAD tag, preamble and key: generous on purpose


def _crypto() -> Callable[[bool, int], Any] | None:
    """A Handshake maker when encryption exists (weave_cli.crypto), else None."""
    try:
        from weave_cli.crypto.handshake import Handshake
        from weave_cli.crypto.kdf import password_key
        from weave_cli.crypto.secret import Secret
    except ImportError:
        return None
    key = password_key(Secret(b"fuzz-password"), n=2**10)
    return lambda outbound, seed: Handshake(key, bytes([seed]) * 32, outbound=outbound)


CRYPTO = _crypto()
MODES = ["plaintext"] + (["encrypted"] if CRYPTO is not None else [])


def make(ident: LocalIdentity, outbound: bool, mode: str,
         cfg: ProtocolSettings = SMALL) -> ConnectionProtocol:
    kwargs: dict[str, Any] = {}
    if mode == "encrypted":
        assert CRYPTO is not None
        kwargs["handshake"] = CRYPTO(outbound, 3 if ident is A else 5)  # fixed keys: replayable
    return ConnectionProtocol(ident, outbound=outbound, conn_id=7 if outbound else 9, now=0.0,
                              settings=cfg, **kwargs)


def transcript(outbound: bool, mode: str, bodies: list[bytes]) -> bytes:
    """Everything a genuine peer B sends to A (in role ``outbound``) up to ``bodies``."""
    a, b = make(A, outbound, mode), make(B, not outbound, mode)
    sent = bytearray()
    for _ in range(6):
        ab, ba = a.data_to_send(), b.data_to_send()
        sent += ba
        b.receive_data(ab, 0.1)
        a.receive_data(ba, 0.1)
    assert b.state == "established" and a.state == "established"
    for body in bodies:
        b.send_message(MessageTag.GOSSIP, body)
    return bytes(sent + b.data_to_send())


class Checker:
    """Feeds one connection and checks the invariants after every call."""

    def __init__(self, proto: ConnectionProtocol) -> None:
        self.p, self.now = proto, 0.0
        self.events: list[Event] = []
        self.limit = max(proto.settings.max_frame, 1 + 64 * (1 + 64 + 2 + 1024)) + SLACK
        self.closed_at: int | None = None
        self.drain()

    def drain(self) -> None:
        out = self.p.data_to_send()
        if self.closed_at is not None and self.closed_at < len(self.events):
            assert out == b"", "bytes produced after Closed was reported"
        assert len(out) <= self.limit
        while (ev := self.p.next_event()) is not None:
            assert isinstance(ev, (HandshakeDone, MessageReceived, Closed)), ev
            assert self.closed_at is None, f"event {ev!r} after Closed"
            if isinstance(ev, Closed):
                assert not ev.reason.startswith("internal error"), ev.reason
                assert "\n" not in ev.reason and len(ev.reason) < 400
                self.closed_at = len(self.events)
            self.events.append(ev)
        inbuf = getattr(self.p, "_inbuf", b"")
        assert len(inbuf) <= self.limit, f"input buffer {len(inbuf)} > one frame"

    def feed(self, data: bytes, dt: float = 0.0) -> None:
        self.now += dt
        self.p.receive_data(data, self.now)
        self.drain()
        if dt:
            self.p.handle_timer(self.now)
            self.drain()

    def kinds(self) -> list[type]:
        return [type(e) for e in self.events]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[i:j] for i, j in zip(points, points[1:], strict=False) if j > i]


roles = st.booleans()
modes = st.sampled_from(MODES)
cuts = st.lists(st.integers(0, 1 << 16), max_size=12)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(roles, modes, st.binary(max_size=4096), cuts)
def test_random_bytes_only_close(outbound: bool, mode: str, data: bytes, where: list[int]) -> None:
    c = Checker(make(A, outbound, mode))
    for piece in chunked(data, where):
        c.feed(piece, 0.01)
    c.p.eof_received(c.now)
    c.drain()
    if not data.startswith(MAGIC[: len(data)]) or len(data) >= 4 and data[:4] != MAGIC:
        assert c.kinds() == [Closed], c.events


@FUZZ
@given(roles, modes, st.binary(min_size=1, max_size=4096), cuts)
def test_garbage_after_a_valid_preamble_only_closes(outbound: bool, mode: str, junk: bytes,
                                                    where: list[int]) -> None:
    genuine = transcript(outbound, mode, [])
    preamble = genuine[: 7 + (32 if mode == "encrypted" else 0)]
    c = Checker(make(A, outbound, mode))
    for piece in chunked(preamble + junk, where):
        c.feed(piece)
    c.p.eof_received(c.now)
    c.drain()
    assert c.kinds() == [Closed], c.events
    c.feed(b"more bytes after the end", 1.0)
    assert c.kinds() == [Closed]


mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "cut"]),
                     st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8))


@FUZZ
@given(roles, modes, st.lists(st.binary(max_size=300), max_size=4),
       st.lists(mutation, min_size=1, max_size=4), cuts)
def test_mutated_transcripts_never_crash(outbound: bool, mode: str, bodies: list[bytes],
                                         changes: list[tuple[str, int, bytes]],
                                         where: list[int]) -> None:
    data = bytearray(transcript(outbound, mode, bodies))
    for kind, pos, value in changes:
        at = pos % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << (value[0] % 8)
        elif kind == "set" and at < len(data):
            data[at] = value[0]
        elif kind == "insert":
            data[at:at] = value
        elif kind == "delete":
            del data[at : at + value[0]]
        elif kind == "cut":
            del data[at:]
    c = Checker(make(A, outbound, mode))
    for piece in chunked(bytes(data), where):
        c.feed(piece, 0.01)
    c.p.eof_received(c.now)
    c.drain()
    kinds = c.kinds()
    assert kinds[-1] is Closed and kinds.count(HandshakeDone) <= 1
    assert kinds.count(MessageReceived) <= len(bodies)


def test_unmutated_transcript_is_accepted() -> None:
    for mode in MODES:
        for outbound in (True, False):
            c = Checker(make(A, outbound, mode))
            c.feed(transcript(outbound, mode, [b"one", b"two"]))
            assert c.kinds() == [HandshakeDone, MessageReceived, MessageReceived]


def established(outbound: bool, mode: str, cfg: ProtocolSettings) -> tuple[ConnectionProtocol,
                                                                           ConnectionProtocol]:
    a, b = make(A, outbound, mode, cfg), make(B, not outbound, mode, cfg)
    for _ in range(6):
        ab, ba = a.data_to_send(), b.data_to_send()
        b.receive_data(ab, 0.1)
        a.receive_data(ba, 0.1)
    assert a.state == b.state == "established"
    while a.next_event() is not None:
        pass
    return a, b


@pytest.mark.parametrize("stage", ["handshake", "established"])
@pytest.mark.parametrize("mode", MODES)
def test_a_4_gib_length_prefix_closes_before_allocating(stage: str, mode: str) -> None:
    if stage == "handshake":
        a = make(A, True, mode)
        head = transcript(True, mode, [])[: 7 + (32 if mode == "encrypted" else 0)]
        a.receive_data(head, 0.1)
    else:
        a, _ = established(True, mode, ProtocolSettings())  # the default 8 MiB limit
    a.data_to_send()
    tracemalloc.start()
    try:
        a.receive_data(b"\xff\xff\xff\xff", 0.2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    ev = a.next_event()
    assert isinstance(ev, Closed) and "length" in ev.reason, ev
    assert peak < 64 * 1024, peak


def test_max_frame_is_accepted_and_one_more_refused_before_its_body() -> None:
    cfg = ProtocolSettings(max_frame=1024)
    a, _ = established(True, "plaintext", cfg)
    a.receive_data((1025).to_bytes(4, "big") + bytes([MessageTag.GOSSIP]), 0.2)
    a.receive_data(b"x" * 1024, 0.2)
    assert a.next_event() == MessageReceived(MessageTag.GOSSIP, b"x" * 1024)
    a.receive_data((1026).to_bytes(4, "big"), 0.3)  # the length alone: no body sent yet
    ev = a.next_event()
    assert isinstance(ev, Closed) and "1026" in ev.reason, ev


def test_truncated_frame_then_eof_and_unknown_tag_close_cleanly() -> None:
    a, _ = established(False, "plaintext", SMALL)
    a.receive_data((100).to_bytes(4, "big") + bytes([MessageTag.GOSSIP]) + b"half", 0.2)
    assert a.next_event() is None
    a.eof_received(0.3)
    assert a.next_event() == Closed("connection closed by peer")
    b, _ = established(True, "plaintext", SMALL)
    b.receive_data((1).to_bytes(4, "big") + bytes([200]), 0.2)
    ev = b.next_event()
    assert isinstance(ev, Closed) and "tag 200" in ev.reason, ev
