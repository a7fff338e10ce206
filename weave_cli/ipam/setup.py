"""Start-up of IPAM in the router: options, the host-route check, the database, the allocator.

Decisions about the database, in order:

* IPAM disabled (``--ipalloc-range ''``): nothing is opened.
* A first start (no peer file before this start): a new database is created.
* The peer existed before but ``ipam.db`` is missing or unreadable: refuse to start, naming the
  file and the choices (restore a copy, or ``--ipam-recover=relearn``). Never a silent reset.
* ``--ipam-recover=relearn``: a missing database is created, a corrupt one is first moved aside
  to ``ipam.db.corrupt-<unix time>``; this run is an observer that adopts the ring (and so its
  own ranges, by peer name) from the others before allocating anything.
* A stored ring for another range or another peer name is discarded, with a log line.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass

from weave_cli.config import LaunchConfig
from weave_cli.errors import StateError, UsageError
from weave_cli.ipam.allocator import Allocator
from weave_cli.ipam.allocator_wire import InitMode, Observer
from weave_cli.ipam.options import host_routes, overlapping_routes, parse_init, parse_range
from weave_cli.ipam.store import IPAMStore
from weave_cli.names import Paths
from weave_cli.router.peer import PeerName

log = logging.getLogger("weave.ipam")


@dataclass
class IPAMSetup:
    allocator: Allocator
    store: IPAMStore


def check_routes(cfg: LaunchConfig) -> None:
    """The default range must not overlap a route of this host; an explicit one only warns."""
    universe = parse_range(cfg.ipam_range)
    overlaps = overlapping_routes(universe, host_routes())
    if not overlaps:
        return
    message = f"IP allocation range {universe} overlaps existing route(s) {', '.join(overlaps)}"
    if cfg.ipalloc_range is None:
        raise UsageError(
            f"the default {message}",
            "choose a free range with --ipalloc-range (e.g. 10.96.0.0/12)",
        )
    log.warning("%s; addresses there may be unreachable", message)


def _open_store(paths: Paths, peer_existed: bool, relearn: bool) -> tuple[IPAMStore, bool]:
    """The database and whether this run re-learns (a new database for an existing peer)."""
    db = paths.ipam_db
    if not relearn:
        return IPAMStore.open(db, create=not peer_existed), False
    if db.exists():
        try:
            return IPAMStore.open(db, create=False), False
        except StateError as err:
            aside = db.with_name(f"{db.name}.corrupt-{int(time.time())}")
            os.replace(db, aside)
            for suffix in ("-wal", "-shm"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
            log.warning("%s; moved it to %s and re-learning", err.message, aside)
    else:
        log.warning("IPAM database %s is missing; re-learning this peer's ranges", db)
    return IPAMStore.open(db, create=True), True


def open_ipam(
    paths: Paths, cfg: LaunchConfig, me: PeerName, rng: random.Random, *, peer_existed: bool
) -> IPAMSetup | None:
    if not cfg.ipam_range:
        log.info("IP address allocation is disabled")
        return None
    check_routes(cfg)
    universe = parse_range(cfg.ipam_range)
    subnet = parse_range(cfg.ipalloc_default_subnet) if cfg.ipalloc_default_subnet else None
    store, relearning = _open_store(paths, peer_existed, cfg.ipam_recover == "relearn")
    try:
        why = store.set_identity(str(me), str(universe))
        if why is not None:
            log.warning("discarding the persisted IPAM state: %s", why)
        stored = store.load()
        init: InitMode = Observer() if relearning else parse_init(cfg.ipalloc_init or "consensus")
        alloc = Allocator(
            me, universe, init, rng,
            default_subnet=subnet, ring=stored.ring, paxos=stored.paxos, owned=stored.owned,
        )  # fmt: skip
    except BaseException:
        store.close()
        raise
    if stored.ring is not None:
        log.info("IPAM: restored the ring and %d address(es) from %s",
                 sum(len(v) for v in stored.owned.values()), paths.ipam_db)  # fmt: skip
    return IPAMSetup(alloc, store)
