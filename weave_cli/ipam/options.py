"""The IPAM launch options: parsing (pure) and the host-route overlap check.

``--ipalloc-range`` (default ``DEFAULT_RANGE``; "" disables IPAM), ``--ipalloc-default-subnet``,
``--ipalloc-init consensus[=N] | seed=NAME,... | observer``, ``--ipalloc-timeout`` and
``--ipam-recover=relearn``. Defaults for ``--ipalloc-init`` keep two rings from forming:
``launch`` alone is ``consensus=1``, ``launch PEER...`` is ``consensus=<peers + 1>``, ``join`` is
``observer`` (it only adopts the ring that exists).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from weave_cli.errors import UsageError
from weave_cli.ipam.address import CIDR
from weave_cli.ipam.allocator_wire import Consensus, InitMode, Observer, Seed
from weave_cli.names import BRIDGE
from weave_cli.router.peer import PeerName

DEFAULT_RANGE = "10.32.0.0/12"
RECOVER_MODES = ("relearn",)
INIT_HINT = "use consensus, consensus=N, seed=NAME,NAME,... or observer"


def parse_range(text: str, what: str = "--ipalloc-range") -> CIDR:
    """An aligned subnet of at least 4 addresses, e.g. 10.32.0.0/12."""
    try:
        return CIDR.parse_subnet(text)
    except ValueError as err:
        raise UsageError(f"invalid {what} {text!r}: {err}", "e.g. 10.32.0.0/12") from None


def default_init(peers: int, join: bool) -> str:
    if join:
        return "observer"
    return f"consensus={peers + 1}"


def parse_init(text: str) -> InitMode:
    kind, _, arg = text.partition("=")
    if kind == "observer" and not arg:
        return Observer()
    if kind == "consensus":
        if not arg:
            return Consensus(1)
        if not arg.isdigit() or not 1 <= int(arg) <= 1024:
            raise UsageError(f"invalid --ipalloc-init {text!r}: N must be 1..1024", INIT_HINT)
        return Consensus(int(arg))
    if kind == "seed" and arg:
        try:
            peers = tuple(PeerName.parse(p) for p in arg.split(","))
        except ValueError as err:
            raise UsageError(f"invalid --ipalloc-init {text!r}: {err}", INIT_HINT) from None
        return Seed(peers)
    raise UsageError(f"invalid --ipalloc-init {text!r}", INIT_HINT)


def check_options(
    ipalloc_range: str, default_subnet: str | None, init: str | None, recover: str | None
) -> None:
    """Validate the IPAM options together (raises UsageError naming the bad one)."""
    if recover is not None and recover not in RECOVER_MODES:
        raise UsageError(f"invalid --ipam-recover {recover!r}", "the only mode is 'relearn'")
    if not ipalloc_range:
        if default_subnet or (init and init != "observer"):
            raise UsageError(
                "--ipalloc-default-subnet and --ipalloc-init need IP allocation enabled",
                "drop them, or give --ipalloc-range",
            )
        return
    universe = parse_range(ipalloc_range)
    if default_subnet:
        subnet = parse_range(default_subnet, "--ipalloc-default-subnet")
        if not universe.range().contains_range(subnet.range()):
            raise UsageError(
                f"--ipalloc-default-subnet {default_subnet} is outside --ipalloc-range "
                f"{ipalloc_range}",
                "choose a subnet inside the range",
            )
    if init:
        parse_init(init)


def host_routes(proc_route: Path = Path("/proc/net/route")) -> list[CIDR]:
    """The IPv4 routes of this network namespace except the default route and the routes
    through the weave bridge (those are ours: ``expose`` puts the range's route there, and a
    restarted router must not refuse its own range because of it)."""
    out: list[CIDR] = []
    try:
        lines = proc_route.read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest, mask = int(fields[1], 16), int(fields[7], 16)
        if mask == 0 or fields[0] == BRIDGE:
            continue
        swap = int.from_bytes(dest.to_bytes(4, "little"), "big")
        prefix = bin(int.from_bytes(mask.to_bytes(4, "little"), "big")).count("1")
        out.append(CIDR(swap, prefix))
    return out


def overlapping_routes(universe: CIDR, routes: Iterable[CIDR]) -> list[str]:
    """Routes whose destination overlaps the allocation range."""
    r = universe.network.range()
    return [str(c.network) for c in routes if c.network.range().intersect(r) is not None]
