"""The sleeve's crypto state, pure: the replay window (S09, S10), epochs and rekeying, rx key
switches with grace (S30), the key book across configs, nonce uniqueness, and the keys in the
control codec (strict, never shown)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.sleeve import control, seal
from weave_cli.sleeve.control import ControlError, SleeveConfig, SleeveKeys
from weave_cli.sleeve.keybook import KeyBook
from weave_cli.sleeve.replay import SIZE, ReplayWindow
from weave_cli.sleeve.seal import GRACE, RxKey, RxState, SecretKey, TxState, nonce

K1, K2, K3, K4 = (SecretKey(bytes([i]) * 32) for i in range(1, 5))
AAD = b"h" * 40


def test_window_duplicates_reorder_and_below() -> None:
    w = ReplayWindow()
    for seq in (0, 1, 5, 3, 2):  # reordering inside the window: each accepted once
        assert w.fresh(seq)
        w.commit(seq)
    assert not any(w.fresh(s) for s in (0, 1, 2, 3, 5))
    assert w.fresh(4) and w.fresh(6)
    w.commit(4 + SIZE)  # the window is now 5 .. 4 + SIZE
    assert not w.fresh(4) and not w.fresh(5) and w.fresh(6)  # below; seen; the oldest slot
    w.commit(6 + SIZE)
    assert not w.fresh(6) and w.fresh(7)


def test_forged_huge_sequence_does_not_move_the_window() -> None:  # S10
    tx, rx = TxState(K1, 0.0), RxState(RxKey(K1))
    first, _ = tx.reserve(1, 0.0)
    good = tx.aead.encrypt(nonce(first), b"frame", AAD)
    forged = bytearray(good)
    forged[-1] ^= 1
    out = bytearray(5)
    assert not rx.open(0, 2**32 - 1, bytes(forged), AAD, out, 0.0)
    assert rx.rejected == 1 and rx.primary.cur.window.top == -1
    assert rx.open(0, first, good, AAD, out, 0.0) and out == b"frame"
    assert not rx.open(0, first, good, AAD, out, 0.0) and rx.replayed == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3 * SIZE), max_size=200))
def test_window_accepts_each_number_at_most_once(seqs: list[int]) -> None:
    w, seen = ReplayWindow(), set()
    for s in seqs:
        if w.fresh(s):
            assert s not in seen and s > w.top - SIZE
            w.commit(s)
            seen.add(s)
        else:
            assert s in seen or s <= w.top - SIZE


def seal_one(tx: TxState, data: bytes, now: float) -> tuple[int, int, bytes]:
    first, k = tx.reserve(1, now)
    assert k == 1
    return tx.epoch & 0xFFFF, first, tx.aead.encrypt(nonce(first), data, AAD)


def test_epochs_roll_on_count_and_time_and_in_flight_old_ones_pass() -> None:
    tx, rx = TxState(K1, 0.0, limit=3, period=10.0), RxState(RxKey(K1))
    sent = [seal_one(tx, bytes([i]), 0.0) for i in range(7)]
    assert [(e, s) for e, s, _ in sent] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2),
                                           (2, 0)]
    assert seal_one(tx, b"t", 10.0)[:2] == (3, 0)  # the period ran out
    out = bytearray(1)
    order = [3, 0, 4, 1, 6, 5, 2]  # epoch 1 arrives before the rest of epoch 0, ...
    took = [rx.open(*sent[i], AAD, out, 0.0) for i in order]
    # ... epoch 2 makes 1 the previous and 0 forgotten: epoch 0's last datagram is refused
    assert took == [True, True, True, True, True, True, False]
    assert rx.rekeys == 2 and rx.primary.cur.epoch == 2 and rx.primary.prev is not None
    assert epoch_keys_differ()


def epoch_keys_differ() -> bool:
    keys = {seal.epoch_key(K1, e) for e in range(50)} | {seal.epoch_key(K2, e) for e in range(50)}
    return len(keys) == 100 and seal.epoch_key(K1, 0) == K1.reveal()


def test_newer_epoch_adopted_only_if_it_authenticates() -> None:
    rx = RxState(RxKey(K1))
    other = TxState(K2, 0.0, limit=1)  # the wrong key, epochs 0, 1, 2 ...
    out = bytearray(1)
    for _ in range(3):
        assert not rx.open(*seal_one(other, b"x", 0.0), AAD, out, 0.0)
    assert rx.primary.cur.epoch == 0 and rx.rekeys == 0
    tx = TxState(K1, 0.0, limit=1)
    for _ in range(5):
        seal_one(tx, b"x", 0.0)  # lost: the receiver skips epochs 0..4
    assert rx.open(*seal_one(tx, b"y", 0.0), AAD, out, 0.0) and rx.primary.cur.epoch == 5


def test_key_switch_keeps_the_old_rx_key_for_the_grace() -> None:  # S30
    rx = RxState(RxKey(K1))
    old, new = TxState(K1, 0.0), TxState(K2, 0.0)
    in_flight = [seal_one(old, bytes([i]), 0.0) for i in range(3)]
    out = bytearray(1)
    assert rx.open(*in_flight[0], AAD, out, 0.0)
    assert rx.switch(RxKey(K2), 1.0) == []
    assert rx.open(*seal_one(new, b"n", 1.0), AAD, out, 1.0)
    assert rx.open(*in_flight[1], AAD, out, 1.0 + GRACE - 0.01)
    assert not rx.open(*in_flight[2], AAD, out, 1.0 + GRACE)  # the grace is over
    assert [k.base for k in rx.expire(1.0 + GRACE)] == [K1] and len(rx.keys) == 1


def test_key_book_keeps_states_across_configs_and_never_restarts_a_key() -> None:
    book = KeyBook()
    p = b"\x02\x00\x00\x00\x00\x02"
    book.configure({p: (K1, K2)}, 0.0)
    tx = book.tx[p]
    tx.reserve(10, 0.0)
    book.configure({p: (K1, K2)}, 1.0)  # unchanged keys: the same states
    assert book.tx[p] is tx and book.switches == 0
    book.configure({}, 2.0)  # the peer leaves ...
    book.configure({p: (K1, K2)}, 3.0)  # ... and comes back with the same keys
    assert book.tx[p] is tx and tx.pseq == 10
    book.configure({p: (K3, K4)}, 4.0)  # re-established: new keys
    assert book.tx[p].base == K3 and book.tx[p].pseq == 0 and book.switches == 1
    assert [k.base for k in book.rx[p].keys] == [K4, K2]
    book.expire(4.0 + GRACE)
    assert [k.base for k in book.rx[p].keys] == [K4]
    book.configure({p: (K1, K2)}, 5.0)  # an old pair again: its old states, not fresh ones
    assert book.tx[p] is tx and tx.pseq == 10


def test_nonces_never_repeat_over_a_long_run() -> None:
    tx = TxState(K1, 0.0, limit=1000, period=5.0)
    used: set[tuple[int, int]] = set()
    now = 0.0
    for i in range(20000):
        now += 0.001
        first, k = tx.reserve(1 + i % 64, now)
        for s in range(first, first + k):
            assert (tx.epoch, s) not in used and s < 1000
            used.add((tx.epoch, s))
    assert tx.epoch > 100 and len(used) > 20000


def test_secret_keys_never_show() -> None:
    raw = os.urandom(32)
    keys = SleeveKeys(SecretKey(raw), SecretKey(os.urandom(32)))
    cfg = SleeveConfig(local="02:00:00:00:00:01", encrypted=True,
                       keys={"02:00:00:00:00:02": keys})
    for text in (repr(keys), repr(cfg), str(keys.tx), repr(TxState(keys.tx, 0.0)),
                 repr(RxKey(keys.rx))):
        assert raw.hex() not in text and raw.hex().upper() not in text
    decoded = control.decode_request(cfg.encode())
    assert decoded == cfg and raw.hex() not in repr(decoded)


def config(**kw: object) -> bytes:
    base: dict[str, object] = {"op": "config", "local": "02:00:00:00:00:01", "neighbours": {},
                               "routes": {}, "sleeve_peers": [], "macs": {}}
    base.update(kw)
    return json.dumps(base).encode()


@pytest.mark.parametrize("bad", [
    {"encrypted": 1},
    {"encrypted": False, "keys": {"02:00:00:00:00:02": {"tx": "11" * 32, "rx": "22" * 32}}},
    {"encrypted": True, "keys": {"02:00:00:00:00:02": {"tx": "11" * 32}}},
    {"encrypted": True, "keys": {"02:00:00:00:00:02": {"tx": "11" * 31, "rx": "22" * 32}}},
    {"encrypted": True, "keys": {"02:00:00:00:00:02": {"tx": "zz" * 32, "rx": "22" * 32}}},
    {"encrypted": True, "keys": {"02:00:00:00:00:02": {"tx": "11" * 32, "rx": "11" * 32}}},
    {"encrypted": True, "keys": {"02:00:00:00:00:02": ["11" * 32, "22" * 32]}},
    {"encrypted": True, "keys": {"nope": {"tx": "11" * 32, "rx": "22" * 32}}},
    {"encrypted": True, "keys": {f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}":
                                 {"tx": "11" * 32, "rx": "22" * 32} for i in range(4097)}},
])
def test_bad_keys_are_refused_without_quoting_them(bad: dict[str, object]) -> None:
    with pytest.raises(ControlError) as err:
        control.decode_request(config(**bad))
    assert "11" * 16 not in str(err.value) and "22" * 16 not in str(err.value)


def test_keys_are_optional_and_round_trip() -> None:
    plain = control.decode_request(config())
    assert isinstance(plain, SleeveConfig) and not plain.encrypted and plain.keys == {}
    cfg = control.decode_request(config(encrypted=True, keys={
        "02:00:00:00:00:02": {"tx": "AB" * 32, "rx": "cd" * 32}}))
    assert isinstance(cfg, SleeveConfig) and cfg.encrypted
    pair = cfg.keys["02:00:00:00:00:02"]
    assert pair.tx.reveal() == b"\xab" * 32 and pair.rx.reveal() == b"\xcd" * 32
