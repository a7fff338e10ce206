"""The forwarder's key states per neighbour, carried across config messages. Pure.

Configs are full replacements and come often (every route or MAC change), so a neighbour whose
key pair is unchanged keeps its ``TxState`` and ``RxState`` as they are (epoch, sequence
numbers, replay windows). A NEW pair (the control connection was re-established) switches:

* tx: at once to the new key (epoch 0, pseq 0);
* rx: the new key becomes primary, the old one stays accepted for ``seal.GRACE`` seconds.

The one thing that must never happen is a sequence space restarting under a key that has
already sealed something (a repeated GCM nonce), nor a replay window restarting under a key
that has already opened something (old datagrams accepted again). So a state that is no
longer in use (its peer left the config, its key was replaced, its grace ran out) is kept
"retired", keyed by its key, and taken back if that key comes again. The retired stores are
bounded (``MAX_RETIRED`` each, oldest evicted first); the router gives fresh keys to every new
control connection, and when it has to start a new forwarder process it closes every control
connection first-thing so the reconnects bring new keys (``overlay/service.py``,
``_renew_link_keys``): a key coming back after 4096 others is not expected (docs/sleeve.md,
"Encryption").
"""

from __future__ import annotations

from weave_cli.sleeve.seal import (
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_SECONDS,
    RxKey,
    RxState,
    SecretKey,
    TxState,
)

MAX_RETIRED = 4096
Pair = tuple[SecretKey, SecretKey]  # (tx, rx)


class KeyBook:
    def __init__(self, limit: int = REKEY_AFTER_MESSAGES,
                 period: float = REKEY_AFTER_SECONDS) -> None:
        self.limit = limit
        self.period = period
        self.tx: dict[bytes, TxState] = {}
        self.rx: dict[bytes, RxState] = {}
        self._retired_tx: dict[SecretKey, TxState] = {}
        self._retired_rx: dict[SecretKey, RxKey] = {}
        self.switches = 0  # key pairs replaced by new ones
        self._gone = [0, 0, 0, 0]  # replayed, rejected, rekeys, throttled of RxStates gone

    def configure(self, keys: dict[bytes, Pair], now: float) -> None:
        for peer in [p for p in self.tx if p not in keys]:
            self._retire_tx(self.tx.pop(peer))
        for peer in [p for p in self.rx if p not in keys]:
            old = self.rx.pop(peer)
            self._gone[0] += old.replayed
            self._gone[1] += old.rejected
            self._gone[2] += old.rekeys
            self._gone[3] += old.throttled
            for key in old.keys:
                self._retire_rx(key)
        for peer, (tx_key, rx_key) in keys.items():
            tx = self.tx.get(peer)
            if tx is None or tx.base != tx_key:
                if tx is not None:
                    self._retire_tx(tx)
                    self.switches += 1
                resumed = self._retired_tx.pop(tx_key, None)
                self.tx[peer] = resumed or TxState(tx_key, now, self.limit, self.period)
            rx = self.rx.get(peer)
            if rx is None:
                self.rx[peer] = RxState(self._rx_key(rx_key))
            elif rx.primary.base != rx_key:
                kept = [k for k in rx.keys if k.base == rx_key]
                for gone in rx.switch(kept[0] if kept else self._rx_key(rx_key), now):
                    self._retire_rx(gone)
                if tx is not None and tx.base == tx_key:
                    self.switches += 1

    def expire(self, now: float) -> None:
        """End the grace of old rx keys whose time is up."""
        for rx in self.rx.values():
            if len(rx.keys) > 1:
                for gone in rx.expire(now):
                    self._retire_rx(gone)

    def counters(self) -> dict[str, int]:
        rxs = self.rx.values()
        return {
            "rx_replayed": self._gone[0] + sum(r.replayed for r in rxs),
            "rx_auth_failed": self._gone[1] + sum(r.rejected for r in rxs),
            "rekeys_rx": self._gone[2] + sum(r.rekeys for r in rxs),
            "rx_epoch_throttled": self._gone[3] + sum(r.throttled for r in rxs),
            "rekeys_tx": sum(t.rekeys for t in [*self.tx.values(), *self._retired_tx.values()]),
            "key_switches": self.switches,
        }

    def _rx_key(self, base: SecretKey) -> RxKey:
        resumed = self._retired_rx.pop(base, None)
        key = resumed or RxKey(base)
        key.expires = None
        return key

    def _retire_tx(self, tx: TxState) -> None:
        self._retired_tx.pop(tx.base, None)
        self._retired_tx[tx.base] = tx
        while len(self._retired_tx) > MAX_RETIRED:
            del self._retired_tx[next(iter(self._retired_tx))]

    def _retire_rx(self, key: RxKey) -> None:
        self._retired_rx.pop(key.base, None)
        self._retired_rx[key.base] = key
        while len(self._retired_rx) > MAX_RETIRED:
            del self._retired_rx[next(iter(self._retired_rx))]
