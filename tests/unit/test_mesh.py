"""MeshCore driven by hand: the driver contract, targets, limits, self-connection, status."""

from __future__ import annotations

import random

from weave_cli.router.mesh import Close, Dial, MeshConfig, MeshCore, Send, TargetsChanged
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import MessageTag, encode_frame

A, B = PeerName(0x020000000001), PeerName(0x020000000002)


def core(name: PeerName = A, targets: tuple[str, ...] = (), **kw: object) -> MeshCore:
    config = MeshConfig(name=name, nickname=f"n{int(name) & 0xff}", uid=int(name) + 7, **kw)  # type: ignore[arg-type]
    return MeshCore(config, now=0.0, rng=random.Random(int(name)), targets=targets)


def sends(actions: list[object], conn: int) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send) and a.conn == conn)


def pipe(x: MeshCore, xc: int, y: MeshCore, yc: int, now: float, rounds: int = 10) -> None:
    """Shuttle bytes between connection xc of x and yc of y until both are quiet."""
    for _ in range(rounds):
        if x is y:
            out = x.actions()
            to_y, to_x = sends(out, xc), sends(out, yc)
        else:
            to_y, to_x = sends(x.actions(), xc), sends(y.actions(), yc)
        if not to_x and not to_y:
            return
        if to_y:
            y.connection_data(yc, to_y, now)
        if to_x:
            x.connection_data(xc, to_x, now)


def test_targets_are_dialled_on_the_first_tick_and_persisted_on_change() -> None:
    c = core(targets=("10.0.0.2",))
    assert c.actions() == [] and c.next_deadline() == 0.0
    c.tick(0.0)
    assert c.actions() == [Dial("10.0.0.2:6783", "10.0.0.2", 6783)]
    c.connect(["10.0.0.3:7000"], 1.0)
    assert c.actions() == [TargetsChanged(("10.0.0.2", "10.0.0.3:7000")),
                           Dial("10.0.0.3:7000", "10.0.0.3", 7000)]
    c.connect(["10.0.0.3:7000"], 1.0, replace=True)
    assert c.actions() == [TargetsChanged(("10.0.0.3:7000",))]
    c.forget(["10.0.0.3:7000"], 2.0)
    assert c.actions() == [TargetsChanged(())]


def test_dial_failures_back_off_and_say_why() -> None:
    c = core(targets=("10.0.0.2",))
    c.tick(0.0)
    c.actions()
    c.dial_failed("10.0.0.2:6783", "dial tcp 10.0.0.2:6783: connection refused", 0.0)
    [row] = c.status(0.0, wall=1_700_000_000.0)["Connections"]  # type: ignore[misc]
    assert row["State"] == "failed" and row["Info"].startswith(
        "dial tcp 10.0.0.2:6783: connection refused, retry: 2023-11-14T22:13:2")
    deadline = c.next_deadline()
    assert deadline is not None and 1.0 <= deadline <= 3.0
    c.tick(deadline)
    assert [type(a) for a in c.actions()] == [Dial]
    [row] = c.status(deadline)["Connections"]  # type: ignore[misc]
    assert (row["State"], row["Info"]) == ("retrying", "dial tcp 10.0.0.2:6783: connection refused")


def test_connecting_to_ourselves_is_never_retried() -> None:
    c = core(targets=("10.0.0.1",))
    c.tick(0.0)
    assert [type(a) for a in c.actions()] == [Dial]
    c.connection_opened(1, ("10.0.0.1", 6783), True, 0.0, target="10.0.0.1:6783")
    c.connection_opened(2, ("10.0.0.1", 40000), False, 0.0)
    pipe(c, 1, c, 2, 0.0)
    assert c.conns == {} and c.active == {}
    [row] = c.status(0.0)["Connections"]  # type: ignore[misc]
    assert (row["State"], row["Info"]) == ("failed", "cannot connect to ourself, retry: never")
    c.tick(10_000.0)
    assert not any(isinstance(a, Dial) for a in c.actions())


def test_inbound_beyond_the_conn_limit_is_closed_with_the_reason() -> None:
    c = core(conn_limit=1)
    c.connection_opened(1, ("10.0.0.5", 40000), False, 0.0)
    c.connection_opened(2, ("10.0.0.6", 40001), False, 0.0)
    assert Close(2, "Connection limit reached (1)") in c.actions()
    assert list(c.conns) == [1]


def connected_pair() -> tuple[MeshCore, MeshCore]:
    a, b = core(A), core(B)
    a.connection_opened(1, ("10.0.0.2", 6783), True, 0.0)
    b.connection_opened(9, ("10.0.0.1", 40000), False, 0.0)
    pipe(a, 1, b, 9, 0.0)
    return a, b


def test_two_routers_exchange_topology_and_report_it() -> None:
    a, b = connected_pair()
    assert a.peer_names() == b.peer_names() == [A, B]
    st = a.status(0.0)
    assert [p["Name"] for p in st["Peers"]] == [str(A), str(B)]  # type: ignore[index, union-attr]
    assert st["Peers"][1]["Connections"] == [  # type: ignore[index]
        {"Name": str(A), "NickName": "n1", "Address": "10.0.0.1:40000", "Outbound": False,
         "Established": True}]
    [row] = st["Connections"]  # type: ignore[misc]
    assert row == {"Address": "10.0.0.2:6783", "Outbound": True, "State": "established",
                   "Info": f"none   {B}(n2)", "Attrs": {}}
    assert st["UnicastRoutes"] == [{"Dest": str(A), "Via": "00:00:00:00:00:00"},
                                   {"Dest": str(B), "Via": str(B)}]
    assert {k for k in st} >= {"Protocol", "ProtocolMinVersion", "ProtocolMaxVersion",
                               "Encryption", "PeerDiscovery", "Name", "NickName", "Port",
                               "ConnLimit", "BroadcastRoutes", "TerminationCount", "Targets",
                               "TrustedSubnets"}


def test_garbage_gossip_closes_that_connection_with_a_reason() -> None:
    a, b = connected_pair()
    b.connection_data(9, encode_frame(MessageTag.GOSSIP, b"\x08topology" + bytes(6) + b"\x07"),
                      1.0)
    [close] = [x for x in b.actions() if isinstance(x, Close)]
    assert close.conn == 9 and "topology" in close.reason
    assert b.termination_count == 1 and b.active == {}


def test_channels_broadcast_and_unicast() -> None:
    got: list[tuple[str, PeerName, bytes]] = []

    class Echo:
        def on_broadcast(self, src: PeerName, payload: bytes) -> bytes | None:
            got.append(("b", src, payload))
            return None

        def on_unicast(self, src: PeerName, payload: bytes) -> None:
            got.append(("u", src, payload))

        def on_gossip(self, sender: PeerName, payload: bytes) -> tuple[list[bytes], bytes | None]:
            return [], None

        def digest(self) -> bytes:
            return b""

    a, b = core(A), core(B)
    for c in (a, b):
        c.register_channel("echo", Echo())
    a.connection_opened(1, ("10.0.0.2", 6783), True, 0.0)
    b.connection_opened(9, ("10.0.0.1", 40000), False, 0.0)
    pipe(a, 1, b, 9, 0.0)
    a.broadcast("echo", b"hello")
    a.unicast("echo", B, b"direct")
    pipe(a, 1, b, 9, 0.0)
    assert got == [("b", A, b"hello"), ("u", A, b"direct")]
