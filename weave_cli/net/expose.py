"""``expose`` and ``hide``: the host's own addresses on the bridge, and their masquerading.

Exposing gives the router's namespace an address on the weave network: IPAM hands it out under
the ident ``weave:expose`` (or records an explicit one), it goes onto the bridge (the kernel then
routes that subnet to the bridge, so the host reaches the containers in it), and the nftables
table is rewritten with the masquerade rules for that subnet (``nft.desired``). The addresses
on the bridge *are* the record of what is exposed: nothing else is stored, and the keeper
derives the same table from them.

Both are idempotent: exposing again returns the same address (IPAM gives an ident its address
in a subnet again), hiding what is not exposed does nothing. ``expose`` undoes its own changes
on failure (addresses added, IPAM addresses taken, the table rewritten back).
"""

from __future__ import annotations

from ipaddress import IPv4Interface

from weave_cli.names import EXPOSE_IDENT
from weave_cli.net import bridge, firewall, links
from weave_cli.net.addrspec import (
    DEFAULT,
    AddrSpec,
    check_specs,
    conflicts,
    missing,
    select,
)
from weave_cli.net.errors import AttachConflictError
from weave_cli.net.ipamclient import AddressBook, give_back, obtain
from weave_cli.net.links import IPRoute, Link
from weave_cli.net.netns import open_ipr


def expose(
    book: AddressBook, specs: list[AddrSpec], router_ns: str | None = None
) -> list[IPv4Interface]:
    """Put the addresses on the bridge and masquerade their subnets; the addresses."""
    view = book.view()
    specs = check_specs(specs, view)
    with open_ipr(router_ns) as host:
        br = bridge.require(host)
        held = links.ipv4_addrs(host, br.index)
        _refuse(held, [s.address for s in specs if s.address is not None])
        addrs, new = obtain(book, EXPOSE_IDENT, specs, view)
        added: list[IPv4Interface] = []
        try:
            _refuse(held, addrs)
            for addr in missing(held, addrs):
                links.add_addr(host, br, addr)
                added.append(addr)
            firewall.ensure_table(router_ns, links.ipv4_addrs(host, br.index))
        except BaseException:
            for addr in added:
                _quietly_del(host, br, addr)
            give_back(book, EXPOSE_IDENT, new)
            try:
                firewall.ensure_table(router_ns, links.ipv4_addrs(host, br.index))
            except Exception:  # noqa: BLE001 - the keeper retries; the first error matters
                pass
            raise
    return addrs


def _refuse(held: list[IPv4Interface], wanted: list[IPv4Interface]) -> None:
    problems = conflicts(held, wanted)
    if problems:
        raise AttachConflictError(
            f"the host is already exposed and {problems[0]}",
            "hide it first (weave hide), or expose an address in another subnet",
        )


def _quietly_del(host: IPRoute, br: Link, addr: IPv4Interface) -> None:
    try:
        links.del_addr(host, br, addr)
    except Exception:  # noqa: BLE001 - best effort while another error propagates
        pass


def hide(
    book: AddressBook, specs: list[AddrSpec], router_ns: str | None = None
) -> list[IPv4Interface]:
    """Remove exposed addresses (``net:default`` when none given) and free them; the removed."""
    view = book.view()
    with open_ipr(router_ns) as host:
        br = bridge.require(host)
        held = links.ipv4_addrs(host, br.index)
        if not specs and not view.enabled:
            chosen = held
        else:
            chosen, _ = select(held, specs or [DEFAULT], view)
        for addr in chosen:
            links.del_addr(host, br, addr)
        firewall.ensure_table(router_ns, [a for a in held if a not in chosen])
    if view.enabled:
        recorded, _ = select(book.lookup(EXPOSE_IDENT), specs or [DEFAULT], view)
        for addr in {*chosen, *recorded}:
            book.free(EXPOSE_IDENT, addr.ip)
    return chosen
