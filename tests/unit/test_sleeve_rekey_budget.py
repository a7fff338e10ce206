"""What unauthenticated datagrams may cost the sleeve's receiver in key derivations: nothing
for the epochs kept ready (the current one's next ``AHEAD``), at most the key's token bucket
for epochs further ahead, while a genuine sender that skips epochs is still received (and
S10 holds in every epoch). Derivations are counted with a wrapper of ``epoch_key`` passed to
``RxKey``; the AEAD is the real one."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.ratelimit import TokenBucket
from weave_cli.sleeve import seal
from weave_cli.sleeve.keybook import KeyBook
from weave_cli.sleeve.seal import (
    AHEAD,
    DERIVE_BURST,
    DERIVE_RATE,
    FAR,
    RxKey,
    RxState,
    SecretKey,
    TxState,
    nonce,
)

K1, K2 = SecretKey(b"\x01" * 32), SecretKey(b"\x02" * 32)
AAD = b"h" * 40
Sealed = tuple[int, int, bytes]


class Counting:
    """``epoch_key``, recording the epochs it derives."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def __call__(self, base: SecretKey, epoch: int) -> bytes:
        self.epochs.append(epoch)
        return seal.epoch_key(base, epoch)


def receiver() -> tuple[RxState, Counting]:
    derive = Counting()
    rx = RxState(RxKey(K1, derive))
    assert derive.epochs == list(range(1, AHEAD + 1))  # kept ready from the start
    derive.epochs.clear()
    return rx, derive


def seal_one(tx: TxState, data: bytes, now: float = 0.0) -> Sealed:
    first, k = tx.reserve(1, now)
    assert k == 1
    return tx.epoch & 0xFFFF, first, tx.aead.encrypt(nonce(first), data, AAD)


def skip(tx: TxState, epochs: int) -> None:
    """The sender (``limit=1``) seals one datagram in each of ``epochs`` epochs, all lost."""
    for _ in range(epochs):
        seal_one(tx, b"lost")


def opens(rx: RxState, sealed: Sealed, now: float = 0.0) -> bool:
    return rx.open(*sealed, AAD, bytearray(len(sealed[2]) - 16), now)


def forged(epoch: int, pseq: int = 0, size: int = 20) -> Sealed:
    return epoch, pseq, os.urandom(size + 16)


def test_the_usual_rekey_derives_only_after_authenticating() -> None:
    rx, derive = receiver()
    for e in range(0x10000):  # forged datagrams of every epoch, current and ahead included
        assert not opens(rx, forged(e))
    assert derive.epochs == list(range(AHEAD + 1, AHEAD + 1 + DERIVE_BURST))  # the budget's
    tried = 1 + AHEAD + DERIVE_BURST + 0x8000  # current, ahead, the budget's, older
    assert rx.rejected == tried and rx.throttled == 0x10000 - tried
    derive.epochs.clear()
    tx = TxState(K1, 0.0, limit=1)
    for e in range(20):  # the sender moves on with every datagram; each one is received
        derived_already = e == 0 or e + AHEAD in rx.primary.far  # the flood's, kept in far
        assert opens(rx, seal_one(tx, bytes([e]))) and rx.primary.cur.epoch == e
        assert derive.epochs == ([] if derived_already else [e + AHEAD])  # entering ahead
        derive.epochs.clear()
        assert not opens(rx, forged(e + 1)) and not opens(rx, forged(e + AHEAD))
        assert derive.epochs == []
    assert rx.rekeys == 19 and rx.primary.cur.window.top == 0


def test_a_sender_that_skips_epochs_is_received() -> None:
    rx, derive = receiver()
    tx = TxState(K1, 0.0, limit=1)
    assert opens(rx, seal_one(tx, b"e0"))
    skip(tx, 1)  # nothing of epoch 1 arrives ...
    assert opens(rx, seal_one(tx, b"e2")) and rx.primary.cur.epoch == 2  # ... 2 does
    assert derive.epochs == [5, 6]  # after it authenticated: ``ahead`` is 3 .. 6 again
    derive.epochs.clear()
    skip(tx, AHEAD)  # lost: 3 .. 6, all that is kept ready
    assert opens(rx, seal_one(tx, b"e7"), now=1.0) and rx.primary.cur.epoch == 7
    assert derive.epochs == [7, *range(8, 8 + AHEAD)]  # one before (a token), AHEAD after
    skip(tx, 1000)
    assert opens(rx, seal_one(tx, b"far"), now=2.0) and rx.primary.cur.epoch == 1008
    assert rx.rekeys == 3 and rx.rejected == rx.throttled == 0


def test_forged_huge_sequence_moves_no_window_in_any_epoch() -> None:  # S10
    rx, _ = receiver()
    tx = TxState(K1, 0.0, limit=1)
    good = seal_one(tx, b"zero")
    for epoch in (0, 1, AHEAD, AHEAD + 1, 0x7FFF):  # current, ahead, and far
        bad = bytearray(seal_one(TxState(K1, 0.0), b"zero")[2])
        bad[-1] ^= 1
        assert not opens(rx, (epoch, 2**63 - 1, bytes(bad)))
    key = rx.primary
    assert rx.rejected == 5 and rx.rekeys == 0 and key.cur.epoch == 0
    assert all(e.window.top == -1 for e in (key.cur, *key.ahead, *key.far.values()))
    assert opens(rx, good) and key.cur.window.top == 0
    skip(tx, AHEAD)  # the next genuine one is far ahead: its forged twin was derived already
    assert opens(rx, seal_one(tx, b"far")) and key.cur.epoch == AHEAD + 1


def test_a_flood_of_far_epochs_delays_a_genuine_jump_only_until_the_next_token() -> None:
    rx, derive = receiver()
    tx = TxState(K1, 0.0, limit=1)
    skip(tx, 100)
    genuine = seal_one(tx, b"after a long silence")  # epoch 100
    for e in range(200, 300):
        assert not opens(rx, forged(e), now=10.0)
    assert not opens(rx, genuine, now=10.0) and rx.throttled == 101 - DERIVE_BURST
    assert opens(rx, genuine, now=10.0 + 1 / DERIVE_RATE) and rx.primary.cur.epoch == 100
    assert len(derive.epochs) == DERIVE_BURST + 1 + AHEAD
    assert len(rx.primary.far) <= FAR


def test_a_far_epoch_named_again_costs_nothing_more() -> None:
    rx, derive = receiver()
    for _ in range(100):
        assert not opens(rx, forged(1000), now=0.0)
    assert derive.epochs == [1000] and rx.rejected == 100 and rx.throttled == 0
    n = FAR + 2  # within what is left of the burst
    for e in range(2000, 2000 + n):
        assert not opens(rx, forged(e), now=0.0)
    assert list(rx.primary.far) == list(range(2000 + n - FAR, 2000 + n)) and rx.throttled == 0


def test_the_counter_is_in_the_stats_and_kept_when_the_peer_leaves() -> None:
    book, peer = KeyBook(), b"\x02\x00\x00\x00\x00\x02"
    book.configure({peer: (K2, K1)}, 0.0)
    for e in range(100, 100 + DERIVE_BURST + 3):
        book.rx[peer].open(*forged(e), AAD, bytearray(20), 0.0)
    assert book.counters()["rx_epoch_throttled"] == 3
    assert book.counters()["rx_auth_failed"] == DERIVE_BURST
    book.configure({}, 1.0)
    assert book.counters()["rx_epoch_throttled"] == 3


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.floats(0, 3), st.integers(0, 2**32 - 1),
                          st.integers(0, 64)), max_size=120))
def test_forged_datagrams_cost_at_most_the_budget(
        dgs: list[tuple[int, float, int, int]]) -> None:
    rx, derive = receiver()
    now = t0 = 50.0
    for epoch, dt, pseq, size in dgs:
        now += dt
        assert not opens(rx, forged(epoch, pseq, size), now)
    assert len(derive.epochs) <= DERIVE_BURST + DERIVE_RATE * (now - t0) + 1e-6
    assert all(e > AHEAD for e in derive.epochs)  # never one of those kept ready
    assert len(derive.epochs) <= sum(AHEAD < e < 0x8000 for e, _, _, _ in dgs)
    assert len(rx.primary.far) <= FAR
    key = rx.primary
    assert rx.rekeys == 0 and key.cur.epoch == 0 and key.prev is None  # nothing adopted ...
    assert all(e.window.top == -1 for e in (key.cur, *key.ahead, *key.far.values()))
    assert rx.rejected + rx.throttled == len(dgs) and rx.replayed == 0
    tx = TxState(K1, 0.0, limit=1)
    assert opens(rx, seal_one(tx, b"genuine"), now)  # ... and the link still works, even
    skip(tx, 2 * AHEAD)  # after a jump, once a token is back
    assert opens(rx, seal_one(tx, b"far"), now + 1 / DERIVE_RATE)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9 * AHEAD), st.integers(1, 4)), max_size=40))
def test_a_lossy_genuine_link_is_never_throttled(steps: list[tuple[int, int]]) -> None:
    """Per step a second passes, ``lost`` datagrams are lost (whole epochs of 3 among them),
    then ``n`` arrive. The receiver takes every one, derives only while opening a datagram
    that authenticates and adopts its epoch, and no more keys than the sender did."""
    rx, derive = receiver()
    tx = TxState(K1, 0.0, limit=3)
    now, derived = 0.0, 0
    for lost, n in steps:
        now += 1.0
        for _ in range(lost):
            tx.reserve(1, now)
        for i in range(n):
            before = rx.primary.cur.epoch
            assert opens(rx, seal_one(tx, bytes([i]), now), now)
            assert not derive.epochs or rx.primary.cur.epoch > before
            derived += len(derive.epochs)
            derive.epochs.clear()
    assert rx.rejected == rx.throttled == rx.replayed == 0
    assert rx.primary.cur.epoch == tx.epoch and derived <= tx.epoch


def test_token_bucket_refills_at_its_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert not b.take(10.25) and b.take(10.5) and not b.take(10.5)
    assert not b.take(5.0)  # time running backwards mints nothing
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 100), st.integers(1, 20),
       st.lists(st.floats(-5, 5, allow_nan=False), max_size=300))
def test_token_bucket_never_gives_more_than_burst_plus_rate(
        rate: float, burst: int, steps: list[float]) -> None:
    b, now, taken = TokenBucket(rate, burst), 0.0, 0
    first = latest = now + (steps[0] if steps else 0.0)
    for dt in steps:
        now += dt
        latest = max(latest, now)
        taken += b.take(now)
    assert taken <= burst + rate * (latest - first) + 1e-6
    assert 0 <= b.tokens <= burst
