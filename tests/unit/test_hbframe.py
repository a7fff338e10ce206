"""fastdp heartbeat frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from weave_cli.overlay import hbframe
from weave_cli.router.peer import PeerName

A, B = PeerName(0x020000000001), PeerName(0x020000000002)


def test_heartbeat_is_as_large_as_the_overlay_mtu_and_decodes_at_its_destination() -> None:
    payload = hbframe.encode(0x5757, A, B, 1450)
    assert len(payload) == 8 + 1450 + 14  # VXLAN header + inner frame of mtu + 14
    assert payload[:8] == bytes.fromhex("0800000000575700")
    frame = payload[8:]
    assert hbframe.decode(frame, B) == (A, 1464)
    assert hbframe.decode(frame, A) is None  # not for us


@given(st.binary(max_size=100))
def test_garbage_never_decodes(data: bytes) -> None:
    assert hbframe.decode(data, B) is None
