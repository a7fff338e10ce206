"""What IPAM ring gossip costs in bytes, and that it grows linearly with the ring.

    .venv/bin/python bench/ipam_ring_bytes.py [--quick]    # prints a table; writes nothing

The allocator always gossips its whole ring, as the original does. For N = 8, 32, 128 peers it
takes the cluster of ``bench/ipam_ready.py`` (N peers, a seeded ring cut by donations into
several entries per peer, every replica up to date), puts the peers in a full mesh in that
file's network model (real ``Allocator`` and ``IPAMChannel`` per peer) and measures:

  payload      one gossip payload: ``full_state()``, i.e. ``encode_gossip`` of the whole ring;
  B/entry      payload / ring entries;
  one change   everything sent for one change of ownership: peer 1 asks for a /24 in peer 2's
               range, peer 2 donates, answers with its ring and broadcasts it down its spanning
               tree (N-1 copies). Frames per connection crossed, with the gossip header.
               Free counts alone are not broadcast: anti-entropy carries them;
  anti-entropy one gossip interval (30 s) of neighbour anti-entropy: every peer sends its
               channel digest (``b"D"`` + full state) to k = min(N-1, 2*ceil(log2 N)) random
               neighbours, as ``MeshCore`` does, and a neighbour whose state differs answers
               ``b"R"`` + its own.

Goal: bytes per entry constant within ``TOLERANCE`` across N (a payload linear in the ring);
the script exits 1 otherwise.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass

from ipam_ready import (
    QUICK_SIZES,
    SIZES,
    SUBNETS,
    Model,
    Snapshot,
    build_cluster,
    name,
    run_bench,
)

from weave_cli.ipam.address import CIDR

TOLERANCE = 0.10


@dataclass
class Row:
    n: int
    entries: int
    payload: int
    change: dict[str, list[int]]  # kind -> [frames, bytes]
    anti_entropy: dict[str, list[int]]

    @property
    def per_entry(self) -> float:
        return self.payload / self.entries


def full_mesh(snapshot: Snapshot) -> Model:
    model = Model(snapshot.restore(seed=1))
    for a, b in itertools.combinations(sorted(model.nodes), 2):
        model.link(a, b)
    return model


def one_change(snapshot: Snapshot) -> dict[str, list[int]]:
    """The frames one donation of a fresh /24 costs the whole cluster, by kind."""
    model = full_mesh(snapshot)
    asker, donor = model.nodes[name(1)], model.nodes[name(2)]
    share = donor.alloc.ring.owned_ranges(donor.name)[0]
    subnet = CIDR(share.start + 256 * (SUBNETS + 1), 24)  # past the /24s given away in set-up
    model.handle(
        asker, lambda: model.task(asker, lambda: asker.alloc.allocate("one-change", subnet, 0.0))
    )
    model.run(lambda: model.in_flight == 0 and bool(asker.replies), limit=100)
    if not asker.replies or not isinstance(asker.replies[0][1].result, str):
        raise SystemExit("the change (a donation) did not complete")
    if model.traffic.by_kind["ring broadcast"][0] != len(model.nodes) - 1:
        raise SystemExit("the donor's broadcast did not take exactly N-1 frames")
    return model.traffic.by_kind


def anti_entropy(snapshot: Snapshot, seed: int = 1) -> dict[str, list[int]]:
    """The frames one anti-entropy round of every peer costs, by kind (digest, reply)."""
    model = full_mesh(snapshot)
    rng = random.Random(seed)
    for p in sorted(model.nodes):
        peers = sorted(model.nodes[p].links)
        k = min(len(peers), max(1, 2 * math.ceil(math.log2(len(peers) + 1))))
        for q in rng.sample(peers, k):
            digest = model.nodes[p].channel.digest()
            model.handle(model.nodes[p], functools.partial(model.gossip, p, q, digest))
    model.run(lambda: model.in_flight == 0, limit=100)
    return model.traffic.by_kind


def measure(n: int) -> Row:
    snapshot = build_cluster(n)
    model = full_mesh(snapshot)
    payload = len(model.nodes[name(1)].alloc.full_state())
    return Row(n, snapshot.entries(), payload, one_change(snapshot), anti_entropy(snapshot))


def total(kinds: dict[str, list[int]], only: str | None = None) -> tuple[int, int]:
    picked = [v for k, v in kinds.items() if only is None or k == only]
    return sum(f for f, _ in picked), sum(b for _, b in picked)


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'N':>4} {'entries':>7} {'payload B':>9} {'B/entry':>7} | {'change':>6}"
        f" {'KB':>7} {'bcast KB':>8} {'B/peer':>7} | {'AE msgs':>7} {'AE KB':>7}"
        f" {'replies KB':>10} {'AE/change':>9}"
    )
    for r in rows:
        frames, size = total(r.change)
        _, bcast = total(r.change, "ring broadcast")
        ae_frames, ae_size = total(r.anti_entropy)
        _, replies = total(r.anti_entropy, "digest reply")
        print(
            f"{r.n:>4} {r.entries:>7} {r.payload:>9} {r.per_entry:>7.2f} | {frames:>6}"
            f" {size / 1000:>7.1f} {bcast / 1000:>8.1f} {size / r.n:>7.0f} | {ae_frames:>7}"
            f" {ae_size / 1000:>7.1f} {replies / 1000:>10.1f} {ae_size / size:>9.1f}"
        )


def linear(rows: list[Row]) -> bool:
    """Print the linearity line; True if bytes per entry stay within the tolerance."""
    per_entry = [r.per_entry for r in rows]
    spread = max(per_entry) / min(per_entry) - 1
    ok = spread <= TOLERANCE
    first, last = rows[0], rows[-1]
    print(
        f"\npayload({last.n})/payload({first.n}) = {last.payload / first.payload:.1f} for "
        f"{last.entries / first.entries:.1f}x the entries; bytes/entry "
        f"{min(per_entry):.2f}..{max(per_entry):.2f}, spread {spread:.1%} "
        f"(linear within {TOLERANCE:.0%}: {'met' if ok else 'NOT met'})"
    )
    return ok


def report(quick: bool) -> bool:
    """Measure, print the table; True if the bytes are linear in the ring."""
    rows = [measure(n) for n in (QUICK_SIZES if quick else SIZES)]
    print_rows(rows)
    return linear(rows)


def main() -> None:
    run_bench(__doc__ or "", "N = 8, 32 only", report)


if __name__ == "__main__":
    main()
