"""The gossip body codec: round trips, layout, and malformed bodies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.errors import ProtocolError
from weave_cli.router.gossip import (
    CHANNEL_RE,
    GossipMessage,
    decode_gossip,
    encode_gossip,
    header_size,
)
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import MessageTag

KINDS = [MessageTag.GOSSIP, MessageTag.GOSSIP_UNICAST, MessageTag.GOSSIP_BROADCAST]
SRC = PeerName.parse("02:00:00:00:00:01")
DST = PeerName.parse("02:00:00:00:00:02")
names = st.integers(min_value=0, max_value=2**48 - 1).map(PeerName)
channels = st.from_regex(r"\A[A-Za-z0-9_-]{1,32}\Z")


@given(st.sampled_from(KINDS), channels, names, names, st.binary(max_size=500))
def test_round_trip(kind: MessageTag, channel: str, src: PeerName, dst: PeerName,
                    payload: bytes) -> None:
    msg = GossipMessage(channel, src, dst if kind == MessageTag.GOSSIP_UNICAST else None, payload)
    body = encode_gossip(kind, msg)
    assert len(body) == header_size(kind, channel) + len(payload)
    assert decode_gossip(kind, body) == msg


def test_exact_layout() -> None:
    body = encode_gossip(MessageTag.GOSSIP_UNICAST, GossipMessage("topology", SRC, DST, b"P"))
    assert body == b"\x08topology" + bytes.fromhex("020000000001") + \
        bytes.fromhex("020000000002") + b"P"
    body = encode_gossip(MessageTag.GOSSIP_BROADCAST, GossipMessage("t", SRC, None, b""))
    assert body == b"\x01t" + bytes.fromhex("020000000001")


@pytest.mark.parametrize("kind, body", [
    (MessageTag.GOSSIP, b""),
    (MessageTag.GOSSIP, b"\x00" + b"\x00" * 6),  # empty channel name
    (MessageTag.GOSSIP, b"\x21" + b"a" * 33 + b"\x00" * 6),  # channel too long
    (MessageTag.GOSSIP, b"\x05top"),  # channel truncated
    (MessageTag.GOSSIP, b"\x03a b" + b"\x00" * 6),  # bad character
    (MessageTag.GOSSIP, b"\x03ab\n" + b"\x00" * 6),
    (MessageTag.GOSSIP, b"\x03\xff\xfe\xfd" + b"\x00" * 6),
    (MessageTag.GOSSIP_BROADCAST, b"\x01t\x00\x00\x00\x00\x00"),  # src truncated
    (MessageTag.GOSSIP_UNICAST, b"\x01t" + b"\x00" * 6 + b"\x00" * 5),  # dst missing
    (MessageTag.HEARTBEAT, b"\x01t" + b"\x00" * 6),  # not a gossip tag
    (MessageTag.OVERLAY_CONTROL, b"\x01t" + b"\x00" * 6),
])
def test_malformed_bodies(kind: MessageTag, body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_gossip(kind, body)


@given(st.sampled_from(KINDS), st.binary(max_size=80))
def test_arbitrary_bytes_decode_or_raise_protocol_error(kind: MessageTag, body: bytes) -> None:
    try:
        msg = decode_gossip(kind, body)
    except ProtocolError:
        return
    assert encode_gossip(kind, msg) == body


def test_encode_misuse_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        encode_gossip(MessageTag.GOSSIP_UNICAST, GossipMessage("t", SRC, None, b""))
    with pytest.raises(ValueError):
        encode_gossip(MessageTag.GOSSIP_BROADCAST, GossipMessage("t", SRC, DST, b""))
    with pytest.raises(ValueError):
        encode_gossip(MessageTag.HEARTBEAT, GossipMessage("t", SRC, None, b""))
    for bad in ("", "a" * 33, "to pology", "topology\n", "é"):
        with pytest.raises(ValueError):
            GossipMessage(bad, SRC, None, b"")


def test_channel_re() -> None:
    assert CHANNEL_RE.match("IPallocation") and CHANNEL_RE.match("a-b_c9")
    assert not CHANNEL_RE.match("topology\n") and not CHANNEL_RE.match("a.b")
