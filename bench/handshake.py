"""What encryption costs the control plane: handshakes, frames, and one offline password guess.

    python bench/handshake.py        # prints a table; writes nothing; exit 1 if a goal is missed

In process, with the real code: two ``ConnectionProtocol`` objects exchange bytes until both
report ``HandshakeDone`` (preamble, key exchange, sealed FEATURES), plaintext and encrypted;
the encrypted one includes drawing the two ephemeral X25519 keys. "Guess" is one evaluation
of ``weave_cli.crypto.kdf.password_key`` with the shipped scrypt parameters: what an attacker
holding one captured handshake pays per password tried (the per-connection HKDF/X25519 work
comes on top of it). Each figure is the median of its repeats. Goals (docs/encryption.md):
a guess costs >= 30 ms and >= 100 encrypted handshakes; an encrypted handshake < 5 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

from weave_cli.crypto.handshake import Handshake, PasswordKeys
from weave_cli.crypto.kdf import SCRYPT_N, SCRYPT_P, SCRYPT_R, password_key
from weave_cli.crypto.secret import Secret
from weave_cli.router.peer import PeerName
from weave_cli.router.protocol import (
    ConnectionProtocol,
    HandshakeDone,
    LocalIdentity,
    MessageReceived,
    MessageTag,
)

A = LocalIdentity(PeerName.parse("02:00:00:00:00:0a"), "alpha", 11, {"ShortID": "1"})
B = LocalIdentity(PeerName.parse("02:00:00:00:00:0b"), "beta", 22, {"ShortID": "2"})
KEY = password_key(Secret(b"benchmark password"))
NEXT = password_key(Secret(b"the next benchmark password"))
# The worst pair a rotation puts side by side: each end opens the other's first frame only with
# its second candidate (one failed AEAD open and one more session derivation on each side).
SWITCHED, BEGUN = PasswordKeys(NEXT, KEY, "switched"), PasswordKeys(KEY, NEXT, "begun")
FRAME = 64 * 1024


def median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def connect(encrypted: bool, rotating: bool = False,
            ) -> tuple[ConnectionProtocol, ConnectionProtocol]:
    def hs(outbound: bool) -> Handshake | None:
        keys = (SWITCHED if outbound else BEGUN) if rotating else KEY
        return Handshake(keys, os.urandom(32), outbound=outbound) if encrypted else None

    a = ConnectionProtocol(A, outbound=True, conn_id=1, now=0.0, handshake=hs(True))
    b = ConnectionProtocol(B, outbound=False, conn_id=2, now=0.0, handshake=hs(False))
    done = 0
    while done < 2:
        b.receive_data(a.data_to_send(), 0.0)
        a.receive_data(b.data_to_send(), 0.0)
        for p in (a, b):
            while (ev := p.next_event()) is not None:
                assert isinstance(ev, HandshakeDone), ev
                done += 1
    return a, b


def frames_per_second(encrypted: bool, count: int = 200) -> float:
    a, b = connect(encrypted)
    body = os.urandom(FRAME)
    start = time.perf_counter()
    for _ in range(count):
        a.send_message(MessageTag.GOSSIP, body)
        b.receive_data(a.data_to_send(), 0.0)
        assert isinstance(b.next_event(), MessageReceived)
    return count * FRAME / (time.perf_counter() - start) / 1e6


def main() -> int:
    plain = median(lambda: connect(False), 300)
    secure = median(lambda: connect(True), 300)
    rotating = median(lambda: connect(True, rotating=True), 300)
    guess = median(lambda: password_key(Secret(b"one guess")), 7)
    mb_plain, mb_secure = frames_per_second(False), frames_per_second(True)
    print(f"scrypt n=2**{SCRYPT_N.bit_length() - 1} r={SCRYPT_R} p={SCRYPT_P}")
    print(f"{'handshake, plaintext':<34}{plain * 1e3:>9.3f} ms")
    print(f"{'handshake, encrypted':<34}{secure * 1e3:>9.3f} ms   "
          f"({secure / plain:.1f}x plaintext)")
    print(f"{'handshake, encrypted, mid-rotation':<34}{rotating * 1e3:>9.3f} ms   "
          f"({rotating / secure:.2f}x encrypted)")
    print(f"{'one offline password guess':<34}{guess * 1e3:>9.1f} ms   "
          f"({guess / secure:.0f}x an encrypted handshake)")
    print(f"{'64 KiB frames, plaintext':<34}{mb_plain:>9.0f} MB/s")
    print(f"{'64 KiB frames, encrypted':<34}{mb_secure:>9.0f} MB/s")
    goals = [("guess >= 30 ms", guess >= 0.03), ("guess >= 100 handshakes", guess >= 100 * secure),
             ("encrypted handshake < 5 ms", secure < 0.005),
             ("mid-rotation handshake < 1.5x encrypted", rotating < 1.5 * secure)]
    missed = [what for what, ok in goals if not ok]
    print("goals: " + ("all met" if not missed else "MISSED " + ", ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
