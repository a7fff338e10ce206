"""weave_cli.crypto: key derivation, Secret, frame ciphers, the X25519 handshake (no I/O)."""

from __future__ import annotations

import pickle
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weave_cli.crypto import kdf
from weave_cli.crypto.frames import ACCEPTOR, DIALLER, OVERHEAD, FrameCipher, FrameError
from weave_cli.crypto.handshake import Handshake, HandshakeError, PasswordKeys, Session
from weave_cli.crypto.secret import Secret
from weave_cli.router.peer import PeerName

PW = kdf.password_key(Secret(b"correct horse"), n=2**10)
OTHER = kdf.password_key(Secret(b"battery staple"), n=2**10)
A, B = PeerName(0x020000000001), PeerName(0x020000000002)


def keypair(seed: int, pw: Secret = PW, outbound: bool = True) -> Handshake:
    return Handshake(pw, bytes([seed]) * 32, outbound=outbound)


def test_scrypt_parameters_are_the_documented_ones_and_slow() -> None:
    """S29: each offline guess against a captured handshake costs one scrypt(2**15, 8, 1)."""
    assert (kdf.SCRYPT_N, kdf.SCRYPT_R, kdf.SCRYPT_P, kdf.KEY_SIZE) == (2**15, 8, 1, 32)
    assert kdf.PASSWORD_SALT == b"weave-net-py/v1 password"
    start = time.perf_counter()
    key = kdf.password_key(Secret(b"pw"))
    assert time.perf_counter() - start > 0.02  # 128 * n * r bytes of memory-hard work
    assert len(key.reveal()) == 32 and key == kdf.password_key(Secret(b"pw"))
    assert key != kdf.password_key(Secret(b"pw"), n=2**10)


def test_password_key_is_deterministic_and_password_dependent() -> None:
    assert kdf.password_key(Secret(b"correct horse"), n=2**10) == PW
    assert PW != OTHER
    with pytest.raises(ValueError):
        kdf.password_key(Secret(b""), n=2**10)


def test_secret_never_shows_itself() -> None:
    s = Secret(b"hunter2")
    assert repr(s) == str(s) == f"{s}" == f"{s!r:>20}".strip() == "<redacted>"
    assert "hunter2" not in repr([s, {"k": s}]) and s.reveal() == b"hunter2"
    with pytest.raises(TypeError):
        hash(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)


def opened(sa: Session, sb: Session) -> tuple[Session, Session]:
    """Each side opens the other's first frame (FEATURES in the protocol), which keys it."""
    f = sa.tx.seal(8, b"features a")
    assert sb.open(f[:4], f[4:]) == (8, b"features a")
    f = sb.tx.seal(8, b"features b")
    assert sa.open(f[:4], f[4:]) == (8, b"features b")
    return sa, sb


def test_session_keys_agree_and_differ_per_connection() -> None:
    a, b = keypair(1, outbound=True), keypair(2, outbound=False)
    sa, sb = a.complete(b.public), b.complete(a.public)
    assert sa.link_secret == sb.link_secret == b""  # not known before the first frame opens
    opened(sa, sb)
    assert sa.link_secret == sb.link_secret and len(sa.link_secret) == 32
    frame = sa.tx.seal(4, b"hello")
    assert sb.open(frame[:4], frame[4:]) == (4, b"hello")
    back = sb.tx.seal(5, b"back")
    assert sa.open(back[:4], back[4:]) == (5, b"back")
    c = keypair(3, outbound=False)
    s1, s3 = keypair(1).complete(c.public), c.complete(keypair(1).public)
    assert opened(s1, s3)[0].link_secret != sa.link_secret


def test_a_different_password_gives_different_keys() -> None:
    a, b = keypair(1), keypair(2, pw=OTHER, outbound=False)
    sa, sb = a.complete(b.public), b.complete(a.public)
    frame = sa.tx.seal(8, b"features")
    with pytest.raises(FrameError):
        sb.open(frame[:4], frame[4:])
    with pytest.raises(FrameError):  # nothing is kept after a first frame that failed
        sb.open(frame[:4], frame[4:])
    assert sb.link_secret == b""


def test_both_preambles_are_bound_into_the_keys() -> None:
    """S28: a preamble altered on the way (a lower version, another crypto mode) gives the two
    ends different keys, so the first frame fails to open."""
    pre_a, pre_b = b"WVPY\x01\x02\x01" + bytes(32), b"WVPY\x01\x02\x01" + bytes([1] * 32)
    for seen_by_b in (b"WVPY\x01\x01\x01" + bytes(32), pre_a[:-1] + b"\x01"):
        a, b = keypair(1), keypair(2, outbound=False)
        sa = a.complete(b.public, local_preamble=pre_a, remote_preamble=pre_b)
        sb = b.complete(a.public, local_preamble=pre_b, remote_preamble=seen_by_b)
        frame = sa.tx.seal(8, b"features")
        with pytest.raises(FrameError):
            sb.open(frame[:4], frame[4:])
    a, b = keypair(1), keypair(2, outbound=False)
    sa = a.complete(b.public, local_preamble=pre_a, remote_preamble=pre_b)
    sb = b.complete(a.public, local_preamble=pre_b, remote_preamble=pre_a)
    opened(sa, sb)


def test_a_rotation_accepts_either_password_and_keys_each_direction_by_its_sender() -> None:
    """During a rotation each side seals with its own send key and opens with any it accepts;
    both ends agree on the link secret, and say which keys the connection rests on."""
    begun = PasswordKeys(PW, OTHER, "begun")  # sends PW, accepts OTHER too
    switched = PasswordKeys(OTHER, PW, "switched")  # sends OTHER, accepts PW too
    for ka, kb in [(begun, switched), (switched, begun), (begun, PasswordKeys(PW)),
                   (PasswordKeys(OTHER), switched), (switched, switched)]:
        a, b = Handshake(ka, bytes([1]) * 32, outbound=True), \
            Handshake(kb, bytes([2]) * 32, outbound=False)
        sa, sb = opened(a.complete(b.public), b.complete(a.public))
        assert sa.link_secret == sb.link_secret and len(sa.link_secret) == 32
        assert sa.keys_used[0] == ka.send and sb.keys_used[0] == kb.send
        assert sa.keys_used[1] == kb.send and sb.keys_used[1] == ka.send
    a = Handshake(PasswordKeys(OTHER), bytes([1]) * 32, outbound=True)
    b = keypair(2, outbound=False)
    sa, sb = a.complete(b.public), b.complete(a.public)
    frame = sa.tx.seal(8, b"features")
    with pytest.raises(FrameError):  # no rotation on B: OTHER is not accepted
        sb.open(frame[:4], frame[4:])
    with pytest.raises(ValueError):
        PasswordKeys(PW, PW, "begun")
    with pytest.raises(ValueError):
        PasswordKeys(PW, OTHER)
    assert repr(begun) == "PasswordKeys(rotation='begun')"


def test_bad_remote_keys_are_refused() -> None:
    a = keypair(1)
    with pytest.raises(HandshakeError, match="own"):
        a.complete(a.public)
    with pytest.raises(HandshakeError, match="invalid"):
        keypair(1).complete(bytes(32))  # a low-order point: all-zero shared secret
    with pytest.raises(HandshakeError, match="size"):
        keypair(1).complete(b"\x09" * 31)
    b = keypair(2)
    b.complete(keypair(3).public)
    with pytest.raises(HandshakeError, match="already"):
        b.complete(keypair(4).public)


def test_frames_fail_on_replay_reorder_tamper_and_truncation() -> None:
    key = bytes(range(32))
    tx = FrameCipher(key, DIALLER)
    f0, f1, f2 = tx.seal(4, b"zero"), tx.seal(4, b"one"), tx.seal(4, b"two")
    assert len(f0) == 4 + 1 + 4 + OVERHEAD and int.from_bytes(f0[:4], "big") == len(f0) - 4

    def receiver_after_f0() -> FrameCipher:
        rx = FrameCipher(key, DIALLER)
        assert rx.open(f0[:4], f0[4:]) == (4, b"zero")
        return rx

    tampered = f1[:-1] + bytes([f1[-1] ^ 1])
    relabelled = (int.from_bytes(f1[:4], "big") + 1).to_bytes(4, "big")
    for header, sealed in [(f0[:4], f0[4:]),  # replayed
                           (f2[:4], f2[4:]),  # f1 dropped / f2 before f1
                           (tampered[:4], tampered[4:]),  # a flipped bit
                           (relabelled, f1[4:]),  # the length (the associated data) altered
                           (f1[:4], f1[4:-1]),  # truncated
                           (b"\x00\x00\x00\x05", b"x" * 5)]:  # shorter than the tag
        with pytest.raises(FrameError):
            receiver_after_f0().open(header, sealed)
    rx = receiver_after_f0()
    assert rx.open(f1[:4], f1[4:]) == (4, b"one") and rx.open(f2[:4], f2[4:]) == (4, b"two")


def test_the_same_key_in_the_other_direction_never_shares_a_nonce() -> None:
    key = bytes(32)
    d, a = FrameCipher(key, DIALLER), FrameCipher(key, ACCEPTOR)
    assert {d.nonce(i) for i in range(100)}.isdisjoint({a.nonce(i) for i in range(100)})
    frame = d.seal(4, b"x")
    with pytest.raises(FrameError):
        FrameCipher(key, ACCEPTOR).open(frame[:4], frame[4:])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=4, max_size=4, unique=True),
       st.integers(0, 5))
def test_nonce_and_key_separation_over_many_handshakes(seeds: list[bytes], count: int) -> None:
    """S08: per connection a new session; per direction a distinct (key, nonce) stream."""
    used: set[tuple[bytes, bytes]] = set()
    secrets = set()
    for i in (0, 2):
        a = Handshake(PW, seeds[i], outbound=True)
        b = Handshake(PW, seeds[i + 1], outbound=False)
        sa, sb = opened(a.complete(b.public), b.complete(a.public))
        secrets.add(sa.link_secret)
        for cipher in (sa.tx, sb.tx):
            for _ in range(count + 1):
                nonce = cipher.nonce(cipher.seq)
                key_id = cipher.seal(0, b"")[4:]  # ciphertext of the empty frame: key+nonce id
                assert (key_id, nonce) not in used
                used.add((key_id, nonce))
    assert len(secrets) == 2


def test_sleeve_keys_pair_up() -> None:
    secret = bytes(range(32))
    a_tx, a_rx = kdf.sleeve_keys(secret, A, B)
    b_tx, b_rx = kdf.sleeve_keys(secret, B, A)
    assert a_tx == b_rx and a_rx == b_tx and a_tx != a_rx
    assert len(a_tx) == len(a_rx) == 32
    assert kdf.sleeve_keys(bytes(32), A, B) != (a_tx, a_rx)
    with pytest.raises(ValueError):
        kdf.sleeve_keys(b"", A, B)
    with pytest.raises(ValueError):
        kdf.sleeve_keys(secret, A, A)
