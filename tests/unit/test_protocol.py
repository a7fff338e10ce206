"""The sans-I/O mesh connection: preamble, framing, features, negotiation, timers, garbage."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weave_cli.errors import ProtocolError
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import (
    FEATURES_MAX_BODY,
    MAGIC,
    Closed,
    ConnectionProtocol,
    Event,
    HandshakeDone,
    LocalIdentity,
    MessageReceived,
    MessageTag,
    ProtocolSettings,
    decode_features,
    encode_features,
    encode_frame,
)

A = LocalIdentity(PeerName.parse("02:00:00:00:00:0a"), "alpha", 11, {"ShortID": "7"})
B = LocalIdentity(PeerName.parse("02:00:00:00:00:0b"), "beta", 22)
FAST = ProtocolSettings(handshake_timeout=10, heartbeat_interval=5, heartbeat_timeout=20)
USER = [MessageTag.GOSSIP, MessageTag.GOSSIP_UNICAST, MessageTag.GOSSIP_BROADCAST,
        MessageTag.OVERLAY_CONTROL]
PREAMBLE = MAGIC + b"\x01\x01\x00"


def events(p: ConnectionProtocol) -> list[Event]:
    out = []
    while (ev := p.next_event()) is not None:
        out.append(ev)
    return out


def closed_reason(p: ConnectionProtocol) -> str:
    evs = events(p)
    assert p.state == "closed"
    assert isinstance(evs[-1], Closed), evs
    return evs[-1].reason


def pump(a: ConnectionProtocol, b: ConnectionProtocol, now: float = 0.0) -> None:
    for _ in range(10):
        ab, ba = a.data_to_send(), b.data_to_send()
        if not ab and not ba:
            return
        b.receive_data(ab, now)
        a.receive_data(ba, now)


def pair(sa: ProtocolSettings = FAST, sb: ProtocolSettings = FAST,
         ) -> tuple[ConnectionProtocol, ConnectionProtocol]:
    a = ConnectionProtocol(A, outbound=True, conn_id=0x1234, now=0.0, settings=sa)
    b = ConnectionProtocol(B, outbound=False, conn_id=0x00FF, now=0.0, settings=sb)
    pump(a, b)
    return a, b


def features_frame(features: dict[str, str]) -> bytes:
    return encode_frame(MessageTag.FEATURES, encode_features(features))


GOOD = {"Name": "02:00:00:00:00:0b", "NickName": "beta", "UID": "22", "ConnID": "5"}


def fed(*chunks: bytes, settings_: ProtocolSettings = FAST) -> ConnectionProtocol:
    """A fresh protocol for peer A that has been fed ``chunks`` at time 0."""
    p = ConnectionProtocol(A, outbound=True, conn_id=1, now=0.0, settings=settings_)
    for chunk in chunks:
        p.receive_data(chunk, 0.0)
    return p


# -- handshake between two instances -------------------------------------------------------


def test_back_to_back_handshake_and_messages() -> None:
    a, b = pair()
    done_a, done_b = events(a), events(b)
    assert len(done_a) == 1 and isinstance(done_a[0], HandshakeDone)
    assert len(done_b) == 1 and isinstance(done_b[0], HandshakeDone)
    assert done_a[0].remote.name == B.name and done_a[0].remote.nickname == "beta"
    assert done_b[0].remote.uid == 11 and dict(done_b[0].remote.features) == {"ShortID": "7"}
    assert done_a[0].conn_uid == done_b[0].conn_uid == 0x1234 ^ 0x00FF
    assert done_a[0].version == done_b[0].version == 1
    assert a.state == b.state == "established" and a.remote is not None and a.version == 1
    a.send_message(MessageTag.GOSSIP, b"hello")
    b.send_message(MessageTag.OVERLAY_CONTROL, b"")
    pump(a, b)
    assert events(b) == [MessageReceived(MessageTag.GOSSIP, b"hello")]
    assert events(a) == [MessageReceived(MessageTag.OVERLAY_CONTROL, b"")]


def test_constructor_queues_only_the_preamble() -> None:
    p = ConnectionProtocol(A, outbound=True, conn_id=1, now=0.0)
    assert p.data_to_send() == PREAMBLE and p.data_to_send() == b""
    assert p.state == "handshake" and p.remote is None and p.version is None


def test_features_are_sent_after_the_remote_preamble() -> None:
    p = fed(PREAMBLE)
    out = p.data_to_send()
    assert out.startswith(PREAMBLE) and out[len(PREAMBLE) + 4] == MessageTag.FEATURES
    sent = decode_features(out[len(PREAMBLE) + 5 :])
    assert sent == {"Name": str(A.name), "NickName": "alpha", "UID": "11", "ConnID": "1",
                    "ShortID": "7"}


def test_send_message_rules() -> None:
    p = ConnectionProtocol(A, outbound=True, conn_id=1, now=0.0)
    with pytest.raises(ProtocolError):
        p.send_message(MessageTag.GOSSIP, b"x")  # not established yet
    a, _ = pair(sa=ProtocolSettings(max_frame=16))
    a.send_message(MessageTag.GOSSIP, b"x" * 16)
    with pytest.raises(ProtocolError):
        a.send_message(MessageTag.GOSSIP, b"x" * 17)
    for internal in (MessageTag.HEARTBEAT, MessageTag.FEATURES):
        with pytest.raises(ProtocolError):
            a.send_message(internal, b"")
    a.close("bye")
    with pytest.raises(ProtocolError):
        a.send_message(MessageTag.GOSSIP, b"x")


def test_bad_local_identity_is_a_programming_error() -> None:
    for bad in (LocalIdentity(A.name, "bad nick!", 1), LocalIdentity(A.name, "ok", 0),
                LocalIdentity(A.name, "ok", 1, {"UID": "3"}),
                LocalIdentity(A.name, "ok", 1, {"X": "v" * 1025})):
        with pytest.raises(ValueError):
            ConnectionProtocol(bad, outbound=True, conn_id=1, now=0.0)
    with pytest.raises(ValueError):
        ProtocolSettings(min_version=2, max_version=1)


# -- framing ---------------------------------------------------------------------------------


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(st.tuples(st.sampled_from(USER), st.binary(max_size=300)), max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
def test_any_split_of_the_stream_gives_the_same_events(
        bodies: list[tuple[MessageTag, bytes]], cuts: list[int]) -> None:
    stream = PREAMBLE + features_frame(GOOD) + encode_frame(MessageTag.HEARTBEAT, b"")
    stream += b"".join(encode_frame(tag, body) for tag, body in bodies)
    whole = fed(stream)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[i:j] for i, j in zip([0, *points], [*points, len(stream)], strict=True)]
    split = fed(*chunks)
    expected = events(whole)
    assert events(split) == expected
    assert isinstance(expected[0], HandshakeDone)
    assert expected[1:] == [MessageReceived(tag, body) for tag, body in bodies]
    assert split.data_to_send() == whole.data_to_send()


def test_oversized_length_is_rejected_before_buffering() -> None:
    p = fed(PREAMBLE, features_frame(GOOD))
    assert p.state == "established"
    p.receive_data(b"\xff\xff\xff\xff" + b"abc", 0.0)
    assert "invalid frame length 4294967295" in closed_reason(p)
    assert len(p._inbuf) == 0
    p.receive_data(b"x" * 1000, 0.0)  # ignored once closed
    assert len(p._inbuf) == 0 and p.data_to_send() == b"" and p.next_event() is None


def test_frame_limit_is_max_frame_after_and_features_bound_during_handshake() -> None:
    small = ProtocolSettings(max_frame=10)
    p = fed(PREAMBLE, features_frame(GOOD), settings_=small)
    p.receive_data(encode_frame(MessageTag.GOSSIP, b"x" * 10), 0.0)
    assert events(p)[-1] == MessageReceived(MessageTag.GOSSIP, b"x" * 10)
    p.receive_data((12).to_bytes(4, "big"), 0.0)
    assert "invalid frame length 12" in closed_reason(p)
    q = fed(PREAMBLE, (FEATURES_MAX_BODY + 2).to_bytes(4, "big"))
    assert "invalid frame length" in closed_reason(q)
    r = fed(PREAMBLE, b"\x00\x00\x00\x00")
    assert "invalid frame length 0" in closed_reason(r)


def test_partial_frame_buffer_stays_bounded() -> None:
    p = fed(PREAMBLE, features_frame(GOOD))
    p.receive_data((1001).to_bytes(4, "big") + bytes([MessageTag.GOSSIP]) + b"y" * 500, 0.0)
    assert p.state == "established" and len(p._inbuf) == 505
    p.receive_data(b"y" * 500, 0.0)
    assert len(p._inbuf) == 0 and events(p)[-1] == MessageReceived(MessageTag.GOSSIP, b"y" * 1000)


@pytest.mark.parametrize("tail, reason", [
    (encode_frame(MessageTag.FEATURES, b""), "unexpected message tag 8"),
    (encode_frame(MessageTag.HEARTBEAT, b"x"), "heartbeat frame with a body"),
    (b"\x00\x00\x00\x01\x02", "unexpected message tag 2"),
    (b"\x00\x00\x00\x01\xff", "unexpected message tag 255"),
])
def test_bad_frames_after_handshake(tail: bytes, reason: str) -> None:
    p = fed(PREAMBLE, features_frame(GOOD), tail)
    assert reason in closed_reason(p)


# -- preamble: magic, versions, crypto --------------------------------------------------------


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"\x00", b"WVPX\x01\x01", b"wex"])
def test_bad_magic(data: bytes) -> None:
    assert "not a weave peer" in closed_reason(fed(data))


def test_go_original_is_named() -> None:
    reason = closed_reason(fed(b"weave\x01\x02"))
    assert "Go weave protocol" in reason and "not a weave peer" in reason


def test_partial_magic_waits() -> None:
    p = fed(MAGIC[:3])
    assert p.state == "handshake" and events(p) == []


@pytest.mark.parametrize("ours, theirs, result", [
    ((1, 1), (1, 1), 1),
    ((1, 3), (2, 5), 3),
    ((2, 5), (1, 3), 3),
    ((1, 4), (4, 9), 4),
    ((1, 1), (2, 2), "remote version range [2,2] is incompatible with ours [1,1]"),
    ((3, 4), (1, 2), "remote version range [1,2] is incompatible with ours [3,4]"),
    ((1, 2), (0, 0), "remote version range [0,0] is incompatible with ours [1,2]"),
    ((1, 2), (5, 1), "remote version range [5,1] is incompatible with ours [1,2]"),
])
def test_version_negotiation(ours: tuple[int, int], theirs: tuple[int, int],
                             result: int | str) -> None:
    s = ProtocolSettings(min_version=ours[0], max_version=ours[1])
    p = fed(MAGIC + bytes(theirs) + b"\x00", features_frame(GOOD), settings_=s)
    if isinstance(result, int):
        assert p.version == result and p.state == "established"
        done = events(p)[0]
        assert isinstance(done, HandshakeDone) and done.version == result
    else:
        assert closed_reason(p) == result


def test_two_instances_agree_on_a_version() -> None:
    a, b = pair(sa=ProtocolSettings(min_version=1, max_version=3),
                sb=ProtocolSettings(min_version=2, max_version=7))
    assert a.version == b.version == 3


def test_nonzero_crypto_field_is_rejected() -> None:
    reason = closed_reason(fed(MAGIC + b"\x01\x01\x01" + b"k" * 32))
    assert "encryption" in reason


# -- features ------------------------------------------------------------------------------


@pytest.mark.parametrize("change, reason", [
    ({"Name": None}, "missing required features: Name"),
    ({"UID": None, "ConnID": None}, "missing required features: UID, ConnID"),
    ({"Name": "zz:00:00:00:00:0b"}, "invalid feature Name"),
    ({"Name": "020000000000b"}, "invalid feature Name"),
    ({"NickName": "bad nick"}, "invalid feature NickName"),
    ({"UID": "0"}, "UID=0"),
    ({"UID": "-1"}, "invalid feature UID"),
    ({"UID": str(2**64)}, "invalid feature UID"),
    ({"UID": "٣"}, "invalid feature UID"),
    ({"ConnID": "0x10"}, "invalid feature ConnID"),
    ({"Name": "02:00:00:00:00:0a"}, "cannot connect to ourself"),
])
def test_bad_required_features(change: dict[str, str | None], reason: str) -> None:
    feats = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    got = closed_reason(fed(PREAMBLE, features_frame(feats)))
    assert reason in got if reason != "cannot connect to ourself" else got == reason


def test_extreme_valid_features_are_accepted() -> None:
    feats = dict(GOOD, UID=str(2**64 - 1), ConnID="0")
    feats.update({f"k{i:02d}" + "x" * 61: "v" * 1024 for i in range(60)})
    body = encode_features(feats)
    assert len(body) <= FEATURES_MAX_BODY
    p = fed(PREAMBLE, encode_frame(MessageTag.FEATURES, body))
    done = events(p)[0]
    assert isinstance(done, HandshakeDone) and len(done.remote.features) == 60
    assert done.remote.uid == 2**64 - 1


def entry(key: bytes, value: bytes) -> bytes:
    return bytes([len(key)]) + key + len(value).to_bytes(2, "big") + value


@pytest.mark.parametrize("body", [
    b"",
    b"\x41",  # 65 entries announced
    b"\x01",  # truncated
    b"\x01" + entry(b"Key", b"v")[:-1],
    b"\x01" + entry(b"Key", b"v") + b"!",  # trailing byte
    b"\x01" + entry(b"", b"v"),
    b"\x01" + entry(b"k" * 65, b"v"),
    b"\x01" + entry(b"bad key", b"v"),
    b"\x01" + entry(b"K", b"\xff\xfe"),  # not UTF-8
    b"\x01" + entry(b"K", b"line\nbreak"),
    b"\x01" + b"\x01K" + (1025).to_bytes(2, "big") + b"v" * 1025,
    b"\x02" + entry(b"K", b"1") + entry(b"K", b"2"),  # duplicate
])
def test_garbage_features_close_cleanly(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_features(body)
    reason = closed_reason(fed(PREAMBLE, encode_frame(MessageTag.FEATURES, body)))
    assert "features" in reason and "\n" not in reason


def test_first_frame_must_be_features() -> None:
    reason = closed_reason(fed(PREAMBLE, encode_frame(MessageTag.GOSSIP, b"x")))
    assert reason == "expected the features frame first, got tag 4"


@given(st.dictionaries(st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z"),
                       st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=200),
                       max_size=64))
def test_features_round_trip(feats: dict[str, str]) -> None:
    assert decode_features(encode_features(feats)) == feats


# -- hostile input ---------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_random_bytes_never_raise(chunks: list[bytes], with_preamble: bool) -> None:
    p = fed(*(([PREAMBLE] if with_preamble else []) + chunks))
    evs = events(p)
    if p.state == "closed":
        assert isinstance(evs[-1], Closed) and "internal error" not in evs[-1].reason
        assert "\n" not in evs[-1].reason and len(p._inbuf) == 0
    assert len(p._inbuf) <= 5 + FEATURES_MAX_BODY


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_frames_after_handshake_never_raise(data: bytes) -> None:
    p = fed(PREAMBLE, features_frame(GOOD), data)
    for ev in events(p):
        assert not isinstance(ev, Closed) or "internal error" not in ev.reason


# -- timers ----------------------------------------------------------------------------------


def test_heartbeats_at_the_interval_and_silent_peer_closed() -> None:
    a, b = pair()
    events(a)
    assert a.get_timer() == 5.0
    a.handle_timer(4.9)
    assert a.data_to_send() == b""
    beats = []
    for t in (5.0, 10.0, 15.0):
        assert a.get_timer() == t
        a.handle_timer(t)
        beats.append(a.data_to_send())
    assert beats == [encode_frame(MessageTag.HEARTBEAT, b"")] * 3
    assert a.get_timer() == 20.0  # both the next beat and the receive deadline
    a.handle_timer(20.0)
    assert closed_reason(a) == "heartbeat timeout: nothing received for 20s"
    assert a.get_timer() is None and a.data_to_send() == b""


def test_received_heartbeats_keep_the_connection_alive() -> None:
    a, b = pair()
    events(a), events(b)
    for t in range(5, 100, 5):
        b.handle_timer(float(t))
        a.receive_data(b.data_to_send(), float(t))
        a.handle_timer(float(t))
        b.receive_data(a.data_to_send(), float(t))
    assert a.state == b.state == "established" and events(a) == events(b) == []
    assert a.get_timer() == 100.0


def test_late_timer_sends_one_heartbeat_not_a_burst() -> None:
    a, _ = pair()
    a.receive_data(encode_frame(MessageTag.HEARTBEAT, b""), 17.0)
    a.handle_timer(17.0)
    assert a.data_to_send() == encode_frame(MessageTag.HEARTBEAT, b"")
    assert a.get_timer() == 20.0


def test_handshake_timeout() -> None:
    p = fed(PREAMBLE)
    assert p.get_timer() == 10.0
    p.handle_timer(9.99)
    assert p.state == "handshake"
    p.handle_timer(10.0)
    assert closed_reason(p) == "handshake timed out after 10s"


def test_handshake_completing_after_deadline_is_refused() -> None:
    p = fed(PREAMBLE)
    p.receive_data(features_frame(GOOD), 10.5)
    assert closed_reason(p) == "handshake timed out after 10s"


# -- closing ---------------------------------------------------------------------------------


def test_close_is_terminal_and_emitted_once() -> None:
    a, _ = pair()
    events(a)
    a.send_message(MessageTag.GOSSIP, b"unsent")
    a.close("stopping:\n  operator asked")
    a.close("again")
    a.eof_received(1.0)
    assert events(a) == [Closed("stopping: operator asked")]
    assert a.data_to_send() == b""  # bytes queued before close are dropped
    a.receive_data(encode_frame(MessageTag.GOSSIP, b"x"), 1.0)
    a.handle_timer(100.0)
    assert events(a) == [] and a.state == "closed"


def test_eof() -> None:
    p = fed(PREAMBLE[:3])
    p.eof_received(1.0)
    assert closed_reason(p) == "connection closed by peer"
