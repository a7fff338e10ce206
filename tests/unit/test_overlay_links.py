"""The per-link choice between fastdp and sleeve (weave_cli/overlay/links.py)."""

from __future__ import annotations

from weave_cli.overlay.links import LinkSettings, LinkTable, PeerReport
from weave_cli.router.peer import PeerName

P = PeerName(0x0A0000000001)
BOTH = PeerReport(fastdp_capable=True, hears_fastdp=True, hears_sleeve=True)
SLEEVE_ONLY = PeerReport(fastdp_capable=True, hears_fastdp=False, hears_sleeve=True)


def table(**kw: object) -> LinkTable:
    t = LinkTable(LinkSettings(**kw))  # type: ignore[arg-type]
    t.set_neighbours({P: "198.18.0.2"}, 0.0)
    return t


def beat(t: LinkTable, now: float, fastdp: bool = True, sleeve: bool = True,
         report: PeerReport = BOTH) -> None:
    if fastdp:
        t.heard(P, "fastdp", now)
    if sleeve:
        t.heard(P, "sleeve", now)
    t.peer_report(P, report, now)


def test_new_link_is_unconfirmed_until_heartbeats_in_both_directions() -> None:
    t = table()
    t.tick(0.1)
    assert t.states()[P].mode == "none"
    t.heard(P, "fastdp", 0.5)  # we hear them, but they have not said they hear us
    t.tick(0.5)
    assert t.states()[P].mode == "none"
    assert not t.states()[P].confirmed
    t.peer_report(P, BOTH, 0.6)
    assert t.tick(0.6)[P].mode == "fastdp"
    assert t.states()[P].mtu == 1450 and t.states()[P].reason == ""


def test_falls_back_to_sleeve_and_returns_after_the_recovery_delay() -> None:
    t = table(fastdp_recover=2.0, heartbeat_timeout=3.0)
    for i in range(4):
        beat(t, i * 0.5)
    t.tick(1.5)
    assert t.states()[P].mode == "fastdp"
    # fastdp blocked: only sleeve heartbeats and reports from now on
    now = 1.5
    while now < 6.0:
        now += 0.5
        beat(t, now, fastdp=False, report=SLEEVE_ONLY)
        t.tick(now)
    state = t.states()[P]
    assert state.mode == "sleeve" and "no fastdp heartbeat" in state.reason
    t.sleeve_mtu(P, 1398)
    t.tick(now)
    assert t.states()[P].mtu == 1398
    # unblocked: fastdp must stay up for fastdp_recover seconds before the link moves back
    beat(t, now + 0.5)
    t.tick(now + 0.5)
    assert t.states()[P].mode == "sleeve" and "recovering" in t.states()[P].reason
    for k in range(2, 6):
        beat(t, now + k * 0.5)
        t.tick(now + k * 0.5)
    assert t.states()[P].mode == "fastdp"


def test_no_fastdp_uses_sleeve_and_says_why() -> None:
    t = table(fastdp_enabled=False)
    beat(t, 0.5, fastdp=False, report=PeerReport(True, False, True))
    t.tick(0.5)
    state = t.states()[P]
    assert state.mode == "sleeve" and "--no-fastdp" in state.reason
    assert not t.our_report(P, 0.5).fastdp_capable


def test_peer_without_fastdp_is_named_as_the_reason() -> None:
    t = table()
    beat(t, 0.5, fastdp=False, report=PeerReport(False, False, True))
    t.tick(0.5)
    assert t.states()[P].reason == "fastdp disabled on the peer"


def test_silence_on_both_transports_unconfirms_the_link() -> None:
    t = table(heartbeat_timeout=3.0)
    beat(t, 0.5)
    t.tick(0.5)
    assert t.states()[P].confirmed
    t.tick(4.0)
    assert t.states()[P].mode == "none"


def test_a_new_address_starts_the_link_afresh_and_vanished_peers_are_forgotten() -> None:
    t = table()
    beat(t, 0.5)
    t.tick(0.5)
    t.set_neighbours({P: "198.18.0.9"}, 0.6)
    t.tick(0.6)
    assert t.states()[P].mode == "none"
    t.set_neighbours({}, 0.7)
    assert t.states() == {}
    t.heard(P, "fastdp", 0.8)  # a late heartbeat of a forgotten peer is ignored
    assert t.neighbours() == {}


def test_our_report_tells_what_we_hear() -> None:
    t = table()
    t.heard(P, "sleeve", 1.0)
    rep = t.our_report(P, 1.0)
    assert rep == PeerReport(fastdp_capable=True, hears_fastdp=False, hears_sleeve=True)
    assert not t.our_report(P, 10.0).hears_sleeve


def test_a_new_connection_from_the_same_address_starts_afresh() -> None:
    t = LinkTable(LinkSettings())
    t.set_neighbours({P: "198.18.0.2"}, 0.0, {P: 7})
    beat(t, 0.5)
    t.tick(0.5)
    assert t.states()[P].confirmed
    t.set_neighbours({P: "198.18.0.2"}, 0.6, {P: 8})  # replaced connection, same address
    t.tick(0.6)
    assert t.states()[P].mode == "none"


def test_a_heartbeat_send_error_is_the_reason() -> None:
    t = table(heartbeat_timeout=3.0)
    t.fastdp_errors({P: "Message too long"})
    beat(t, 4.0, fastdp=False, report=SLEEVE_ONLY)
    t.tick(4.0)
    assert t.states()[P].reason == "cannot send fastdp heartbeats: Message too long"
