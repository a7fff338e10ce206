"""The router <-> forwarder control codec: round trips and strict validation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.errors import ProtocolError
from weave_cli.sleeve import control
from weave_cli.sleeve.control import ControlError, SleeveConfig

P1, P2, P3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def config(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "op": "config", "local": P1, "neighbours": {P2: ["198.18.0.2", 6783]},
        "routes": {P2: P2, P3: P2}, "sleeve_peers": [P2, P3], "macs": {"02:aa:00:00:00:01": P3},
    }
    base.update(kw)
    return base


def test_config_round_trip() -> None:
    cfg = control.decode_request(json.dumps(config()).encode())
    assert cfg == SleeveConfig(local=P1, neighbours={P2: ("198.18.0.2", 6783)},
                               routes={P2: P2, P3: P2}, sleeve_peers=frozenset({P2, P3}),
                               macs={"02:aa:00:00:00:01": P3})
    assert isinstance(cfg, SleeveConfig)
    assert control.decode_request(cfg.encode()) == cfg


def test_names_are_lower_cased() -> None:
    cfg = control.decode_request(json.dumps(config(local=P1.upper())).encode())
    assert isinstance(cfg, SleeveConfig) and cfg.local == P1


def test_stats_request() -> None:
    assert isinstance(control.decode_request(b'{"op":"stats"}'), control.StatsRequest)


@pytest.mark.parametrize("bad", [
    b"", b"[]", b"{", b'"config"', b'{"op":"nope"}', b'{"op":"stats","x":1}',
    b"[" * 100_000,
    json.dumps(config(local="nope")).encode(),
    json.dumps(config(neighbours={P2: ["198.18.0.300", 6783]})).encode(),
    json.dumps(config(neighbours={P2: ["198.18.0.2", 0]})).encode(),
    json.dumps(config(neighbours={P2: ["198.18.0.2", True]})).encode(),
    json.dumps(config(neighbours={P2: ["::1", 6783]})).encode(),
    json.dumps(config(neighbours={P2: "198.18.0.2:6783"})).encode(),
    json.dumps(config(routes={P2: 5})).encode(),
    json.dumps(config(sleeve_peers=P2)).encode(),
    json.dumps(config(macs={"ff": P2})).encode(),
    json.dumps(config(extra=1)).encode(),
    json.dumps({k: v for k, v in config().items() if k != "macs"}).encode(),
    b'{"op":"config"' + b" " * control.MAX_MESSAGE + b"}",
])
def test_bad_requests_are_refused(bad: bytes) -> None:
    with pytest.raises(ControlError):
        control.decode_request(bad)


def test_too_many_entries() -> None:
    many = {f"02:00:00:00:{i // 256:02x}:{i % 256:02x}": P2 for i in range(control.MAX_PEERS + 1)}
    with pytest.raises(ControlError):
        control.decode_request(json.dumps(config(routes=many)).encode())


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_control_error(data: bytes) -> None:
    for decode in (control.decode_request, control.decode_event):
        try:
            decode(data)
        except ControlError as err:
            assert isinstance(err, ProtocolError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4), max_leaves=20)


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["op", "local", "neighbours", "routes", "sleeve_peers",
                                        "macs", "ev", "peer", "addr", "mtu"]), json_values))
def test_any_json_object_decodes_or_raises_control_error(obj: dict[str, object]) -> None:
    obj.setdefault("op", "config")
    for decode in (control.decode_request, control.decode_event):
        try:
            decode(json.dumps(obj).encode())
        except ControlError:
            pass


@pytest.mark.parametrize("event", [
    control.Ready("weave-sleeve", 6783), control.Failed("cannot create TAP"),
    control.Heard(P2, ("198.18.0.2", 6783)), control.Pmtu(P2, 634),
    control.Stats({"udp_rx": 5, "tap_tx": 0}),
])
def test_events_round_trip(event: control.Event) -> None:
    assert control.decode_event(control.encode_event(event)) == event


def test_event_wire_form_is_the_contract() -> None:
    assert json.loads(control.encode_event(control.Ready("weave-sleeve", 6783))) == {
        "ev": "ready", "ifname": "weave-sleeve", "port": 6783}
    assert json.loads(control.encode_event(control.Heard(P2, ("198.18.0.2", 6783)))) == {
        "ev": "heard", "peer": P2, "addr": ["198.18.0.2", 6783]}
    assert json.loads(control.encode_event(control.Pmtu(P2, 634))) == {
        "ev": "pmtu", "peer": P2, "mtu": 634}
    with pytest.raises(ControlError):
        control.decode_event(b'{"ev":"stats","x":"1"}')
