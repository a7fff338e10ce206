"""The sleeve's per-link encryption state: secret keys, epochs (rekeying) and opening sealed
datagrams. Pure apart from the cipher itself; time is an argument.

Keys. The router gives, per neighbour, a pair (tx, rx) of 32-byte base keys such that A's tx
key for B is B's rx key for A, so each direction of each link has its own key. They are
``SecretKey`` objects: the repr never shows them, equality is constant-time, and nothing here
logs or counts them.

Epochs. A base key is only the key of epoch 0; epoch ``e >= 1`` uses
``HKDF-SHA256(base, salt=None, info="weave sleeve epoch" || u32 e)``. Each (key, epoch) has its
own sequence space: ``pseq`` counts the datagrams sealed in it from 0, and the 12-byte nonce is
``pseq`` big-endian. A sender (``TxState``) moves to ``e + 1`` once ``limit`` datagrams
(default 2**32, so ``pseq`` fits its u32 field) or ``period`` seconds (default 120) are used
up; so (key, nonce) never repeats under one base key. Only the low 16 bits of the epoch travel
(``wire.SEALED``); the receiver rebuilds the full number from its own: the same, the one it
kept before, or one newer within 2**15.

Receiving (``RxState``). Per rx base key an ``RxKey`` keeps the current and the previous epoch,
each with its ``ReplayWindow``. A newer epoch is adopted only when a datagram of it
authenticates, the current one becoming the previous one (in-flight datagrams of the old epoch
still pass). A newer epoch's cipher must exist before its datagram can be checked, and anyone
can put any epoch in a header, so (docs/sleeve.md, "Encryption"): the ciphers of the next
``AHEAD`` epochs are derived in advance, when an epoch is adopted (the usual step, and up to
``AHEAD - 1`` epochs lost whole, cost an unauthenticated datagram no derivation); one further
ahead is derived for the datagram that names it only for a token of the key's
``TokenBucket`` (``DERIVE_BURST``, then ``DERIVE_RATE`` a second) and kept among ``FAR``
candidates; with no token left the datagram is dropped untried (``RxState.throttled``). When
the router hands over a NEW rx key (the control connection was re-established) it becomes the
primary, and the old one stays usable for ``GRACE`` seconds for datagrams in flight. ``open``
tries the keys in that order: window check first, then the AEAD, and only a successful
decryption moves a window or adopts an epoch.

Cipher: AES-256-GCM (16-byte tag). On this project's machines (AES-NI, VAES) one 1400-byte
datagram costs 0.96 us against 1.69 us for ChaCha20-Poly1305 (printed first by
``bench/sleeve_crypto.py``), and the per-datagram AEAD is what bounds encrypted throughput.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from enum import Enum
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from weave_cli.ratelimit import TokenBucket
from weave_cli.sleeve.replay import ReplayWindow

Buffer = bytes | bytearray | memoryview
Cipher = AESGCM
KEY_SIZE = 32
TAG_SIZE = 16
REKEY_AFTER_MESSAGES = 1 << 32
REKEY_AFTER_SECONDS = 120.0
GRACE = 5.0
EPOCH_MASK = 0xFFFF
_NEWER = 0x8000  # a wire epoch this far ahead (mod 2**16) or more counts as older
AHEAD = 4  # epochs after the current one whose ciphers a receiver keeps ready
FAR = 4  # epochs further ahead, derived for a datagram, kept until adopted or evicted
DERIVE_RATE = 4.0  # derivations a second per rx key for epochs beyond ``AHEAD`` ...
DERIVE_BURST = 8  # ... after a first burst of this many


class SecretKey:
    """32 secret bytes that never show in a repr, a log line or an error message."""

    __slots__ = ("_key", "_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a sleeve key is {KEY_SIZE} bytes")
        self._key = bytes(key)
        self._id = hash(sha256(b"weave sleeve key id" + self._key).digest())

    def reveal(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return "SecretKey(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretKey) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return self._id


def epoch_key(base: SecretKey, epoch: int) -> bytes:
    """The key of ``epoch`` under ``base`` (one HKDF for ``epoch >= 1``)."""
    if epoch == 0:
        return base.reveal()
    info = b"weave sleeve epoch" + epoch.to_bytes(4, "big")
    return HKDF(algorithm=SHA256(), length=KEY_SIZE, salt=None, info=info).derive(base.reveal())


Derive = Callable[[SecretKey, int], bytes]  # epoch_key's type


def nonce(pseq: int) -> bytes:
    return pseq.to_bytes(12, "big")


class TxState:
    """The sending side of one link direction: the epoch in use, its cipher and next pseq."""

    __slots__ = ("base", "epoch", "aead", "pseq", "deadline", "limit", "period", "rekeys")

    def __init__(self, base: SecretKey, now: float, limit: int = REKEY_AFTER_MESSAGES,
                 period: float = REKEY_AFTER_SECONDS) -> None:
        self.base = base
        self.limit = max(1, min(limit, REKEY_AFTER_MESSAGES))
        self.period = period
        self.epoch = 0
        self.aead = Cipher(base.reveal())
        self.pseq = 0
        self.deadline = now + period
        self.rekeys = 0

    def reserve(self, count: int, now: float) -> tuple[int, int]:
        """(first, k): ``k`` (1 <= k <= count) consecutive sequence numbers from ``first``, all
        in the current epoch (``self.epoch``/``self.aead``), moving to the next epoch first
        when this one's numbers or time are used up."""
        if self.pseq >= self.limit or now >= self.deadline:
            self.epoch += 1
            self.aead = Cipher(epoch_key(self.base, self.epoch))
            self.pseq = 0
            self.deadline = now + self.period
            self.rekeys += 1
        first = self.pseq
        k = min(count, self.limit - first)
        self.pseq = first + k
        return first, k

    def __repr__(self) -> str:
        return f"TxState(epoch={self.epoch}, pseq={self.pseq})"


class RxEpoch:
    __slots__ = ("epoch", "aead", "window")

    def __init__(self, epoch: int, aead: AESGCM) -> None:
        self.epoch = epoch
        self.aead = aead
        self.window = ReplayWindow()


class Miss(Enum):
    """Why ``RxKey.find`` has no epoch for a datagram."""

    OLD = "older than the epochs kept"
    BUDGET = "far ahead, and the derivation budget is spent"


class RxKey:
    """One rx base key. ``cur`` and ``prev`` are the epochs in use; ``ahead[i]`` is epoch
    ``cur.epoch + 1 + i``, always ``AHEAD`` of them, derived and with untouched windows;
    ``far`` holds derived epochs beyond those (not yet adopted; at most ``FAR``, oldest first),
    paid for by ``budget``; ``expires`` is None while this is the primary key, else the end of
    its grace. ``derive`` is ``epoch_key`` (a parameter, so tests can count derivations)."""

    __slots__ = ("base", "derive", "cur", "prev", "ahead", "far", "budget", "expires")

    def __init__(self, base: SecretKey, derive: Derive = epoch_key) -> None:
        self.base = base
        self.derive = derive
        self.cur = RxEpoch(0, Cipher(base.reveal()))
        self.prev: RxEpoch | None = None
        self.ahead = [self._epoch(e) for e in range(1, AHEAD + 1)]
        self.far: dict[int, RxEpoch] = {}
        self.budget = TokenBucket(DERIVE_RATE, DERIVE_BURST)
        self.expires: float | None = None

    def _epoch(self, epoch: int) -> RxEpoch:
        return RxEpoch(epoch, Cipher(self.derive(self.base, epoch)))

    def find(self, wire_epoch: int, now: float) -> RxEpoch | Miss:
        """The epoch a datagram belongs to, from its 16 wire bits: ``cur``, ``prev`` or a newer
        one within 2**15. Only an epoch beyond ``ahead`` and ``far`` is derived here, before
        the datagram authenticates, so that takes a token (``Miss.BUDGET`` when none is left)."""
        cur = self.cur
        d = (wire_epoch - cur.epoch) & EPOCH_MASK
        if d == 0:
            return cur
        prev = self.prev
        if prev is not None and wire_epoch == prev.epoch & EPOCH_MASK:
            return prev
        if d >= _NEWER:
            return Miss.OLD
        if d <= AHEAD:
            return self.ahead[d - 1]
        full = cur.epoch + d
        st = self.far.get(full)
        if st is None:
            if not self.budget.take(now):
                return Miss.BUDGET
            st = self.far[full] = self._epoch(full)
            if len(self.far) > FAR:
                del self.far[next(iter(self.far))]
        return st

    def adopt(self, st: RxEpoch) -> None:
        """Make ``st``, newer than ``cur``, the current epoch (a datagram of it has just
        authenticated): ``cur`` becomes ``prev`` and ``ahead`` is refilled from what is derived
        already, deriving the rest: one epoch for the usual step, at most ``AHEAD`` for any."""
        e = st.epoch
        known = {x.epoch: x for x in (*self.ahead, *self.far.values()) if x.epoch > e}
        self.prev, self.cur = self.cur, st
        self.ahead = [known.pop(x) if x in known else self._epoch(x)
                      for x in range(e + 1, e + AHEAD + 1)]
        self.far = known  # what is left lies beyond the new ``ahead``, still oldest first

    def __repr__(self) -> str:
        return f"RxKey(epoch={self.cur.epoch})"


class RxState:
    """The receiving side of one link: the primary rx key first, then old ones in grace."""

    __slots__ = ("keys", "replayed", "rejected", "throttled", "rekeys")

    def __init__(self, key: RxKey) -> None:
        self.keys = [key]
        self.replayed = 0  # duplicates and datagrams below the window
        self.rejected = 0  # did not authenticate (or an epoch nothing keeps)
        self.throttled = 0  # an epoch far ahead, not tried: no derivation budget left
        self.rekeys = 0  # newer epochs adopted

    @property
    def primary(self) -> RxKey:
        return self.keys[0]

    def switch(self, key: RxKey, now: float) -> list[RxKey]:
        """Make ``key`` the primary; the old primary stays for ``GRACE`` seconds. Returns the
        keys dropped (expired), for the caller to remember."""
        old = self.keys[0]
        if old is key:
            return []
        old.expires = now + GRACE
        key.expires = None
        rest = [k for k in self.keys if k is not key]
        self.keys = [key, *rest]
        return self.expire(now)

    def expire(self, now: float) -> list[RxKey]:
        gone = [k for k in self.keys[1:] if k.expires is not None and now >= k.expires]
        if gone:
            self.keys = [k for k in self.keys if k not in gone]
        return gone

    def open(self, wire_epoch: int, pseq: int, data: Buffer, aad: Buffer, out: Buffer,
             now: float) -> bool:
        """Decrypt ``data`` (ciphertext + tag) into ``out``; False (counted) when no key
        takes it. Only success moves a window or adopts an epoch."""
        replay = throttled = False
        for key in self.keys:
            if key.expires is not None and now >= key.expires:
                continue
            st = key.find(wire_epoch, now)
            if isinstance(st, Miss):
                throttled |= st is Miss.BUDGET
                continue
            if not st.window.fresh(pseq):
                replay = True
                continue
            try:
                st.aead.decrypt_into(nonce(pseq), data, aad, out)
            except (InvalidTag, ValueError):
                continue
            st.window.commit(pseq)
            if st.epoch > key.cur.epoch:
                key.adopt(st)
                self.rekeys += 1
            return True
        if replay:
            self.replayed += 1
        elif throttled:
            self.throttled += 1
        else:
            self.rejected += 1
        return False
