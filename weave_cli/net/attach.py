"""Attaching a network namespace to the bridge, and detaching it; all or nothing.

``attach`` in order, each step undone if a later one fails:

1. ask IPAM for its view (so a router that is down fails before anything changes) and check
   the ADDR specs against it (pure);
2. look at the kernel: the bridge must exist; the target is *new* (no ``vethwepl<inode>``
   here, no ``ethwe`` there), *attached* (both), *stale* (our veth without its peer: deleted
   and redone) or *foreign* (an ``ethwe`` we did not make: refused);
3. refuse explicit addresses that contradict what the target has (``addrspec.conflicts``);
4. take the addresses from IPAM (claims for explicit ones) → undo: free what was new;
5. create the veth pair with ``ethwe`` made directly inside the target namespace (no move),
   MTU from the bridge; on the host end IPv6 router advertisements ignored (``accept_ra`` 0,
   while it is still down), then labelled, IPv6 autoconf off, plugged into the bridge and up
   → undo: delete it (its peer goes with it);
6. add the missing addresses to ``ethwe``, bring it up, add the 224.0.0.0/4 route (unless
   ``multicast_route`` is off) → undo for an existing attachment: remove what was added.

The route to the weave range is the connected route of the address itself (an address
allocated in the default subnet carries the range's prefix, e.g. 10.32.0.1/12); addresses in a
narrower ``net:`` subnet get no wider route, which is what keeps subnets isolated (IT03).

``detach`` removes the chosen addresses from ``ethwe`` (the whole veth when none remain),
then frees them in IPAM: the kernel first, so an address is never handed out again while a
namespace still uses it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from weave_cli.names import CONTAINER_IFNAME
from weave_cli.net import bridge, links
from weave_cli.net.addrspec import AddrSpec, check_specs, conflicts, ip_words, missing, select
from weave_cli.net.errors import AttachConflictError, NotAttachedError
from weave_cli.net.ipamclient import AddressBook, give_back, obtain
from weave_cli.net.links import IPRoute, Link
from weave_cli.net.netns import open_ipr
from weave_cli.net.target import NetnsRef, make_alias, parse_alias

MULTICAST = IPv4Network("224.0.0.0/4")


@dataclass(frozen=True)
class Attachment:
    ident: str
    addrs: list[IPv4Interface]
    created: bool  # False: the target was attached already


def attach(
    book: AddressBook,
    ref: NetnsRef,
    specs: list[AddrSpec],
    router_ns: str | None = None,
    multicast_route: bool = True,
) -> Attachment:
    view = book.view()
    specs = check_specs(specs, view)
    with open_ipr(router_ns) as host, open_ipr(ref.path) as guest:
        br = bridge.require(host)
        veth = links.get_link(host, ref.host_veth)
        ethwe = links.get_link(guest, CONTAINER_IFNAME)
        if ethwe is not None and veth is None:
            raise AttachConflictError(
                f"{ref.label} already has an interface {CONTAINER_IFNAME} that weave on this "
                "host did not create",
                "is it attached from another host? remove it first",
            )
        if veth is not None and ethwe is None:
            links.delete_link(host, veth)  # stale: its peer was moved or renamed away
            veth = None
        recorded = parse_alias(veth.alias) if veth is not None else None
        ident = recorded[0] if recorded else ref.ident
        held = links.ipv4_addrs(guest, ethwe.index) if ethwe is not None else []
        explicit = [s.address for s in specs if s.address is not None]
        _refuse_conflicts(ref, held, explicit)
        addrs, new = obtain(book, ident, specs, view)
        made: Link | None = None
        added: list[IPv4Interface] = []
        try:
            _refuse_conflicts(ref, held, addrs)
            if veth is None:
                made = _plug(host, br, ref, ident, router_ns)
                ethwe = links.get_link(guest, CONTAINER_IFNAME)
            assert ethwe is not None
            for addr in missing(held, addrs):
                links.add_addr(guest, ethwe, addr)
                added.append(addr)
            links.set_up(guest, ethwe)
            if multicast_route:
                links.add_route(guest, ethwe, MULTICAST)
        except BaseException:
            _undo(host, guest, made, ethwe, added)
            give_back(book, ident, new)
            raise
    return Attachment(ident, addrs, made is not None)


def _refuse_conflicts(
    ref: NetnsRef, held: list[IPv4Interface], wanted: list[IPv4Interface]
) -> None:
    problems = conflicts(held, wanted)
    if problems:
        raise AttachConflictError(
            f"{ref.label} is already attached and {problems[0]}",
            f"detach it first (weave detach {ref.label}), or give an address in another subnet",
        )


def _plug(host: IPRoute, br: Link, ref: NetnsRef, ident: str, router_ns: str | None) -> Link:
    """The veth pair, host end labelled, in the bridge and up; deleted again if a step fails."""
    fd = os.open(ref.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        veth = links.create_veth(host, ref.host_veth, br.mtu, CONTAINER_IFNAME, fd)
    finally:
        os.close(fd)
    try:
        if links.ra_on(veth):
            links.accept_ra_off(router_ns, [veth.name])
        links.plug_port(host, veth, make_alias(ident, ref.path), br)
    except BaseException:
        _quietly(lambda: links.delete_link(host, veth))
        raise
    return veth


def _undo(
    host: IPRoute, guest: IPRoute, made: Link | None, ethwe: Link | None,
    added: list[IPv4Interface],
) -> None:
    """Put the kernel back: delete the veth we made (its peer goes with it), or remove the
    addresses we added to an existing attachment. Best effort: the first error is reported."""
    if made is not None:
        _quietly(lambda: links.delete_link(host, made))
    elif ethwe is not None:
        for addr in added:
            _quietly(lambda a=addr: links.del_addr(guest, ethwe, a))  # type: ignore[misc]


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 - the original error is what the operator must see
        pass


def detach(
    book: AddressBook, ref: NetnsRef, specs: list[AddrSpec], router_ns: str | None = None
) -> list[IPv4Interface]:
    """Remove the chosen addresses (all when ``specs`` is empty); the addresses removed."""
    view = book.view()
    with open_ipr(router_ns) as host, open_ipr(ref.path) as guest:
        veth = links.get_link(host, ref.host_veth)
        ethwe = links.get_link(guest, CONTAINER_IFNAME)
        if veth is None:
            raise NotAttachedError(
                f"{ref.label} is not attached to weave on this host", "see 'weave ps'"
            )
        recorded = parse_alias(veth.alias)
        ident = recorded[0] if recorded else ref.ident
        held = links.ipv4_addrs(guest, ethwe.index) if ethwe is not None else []
        chosen, unmatched = select(held, specs, view) if specs else (held, [])
        if unmatched:
            raise NotAttachedError(
                f"{ref.label} has no address matching {unmatched[0]}",
                f"its addresses: {ip_words(held) or 'none'}",
            )
        remaining = [a for a in held if a not in chosen]
        if remaining and ethwe is not None:
            for addr in chosen:
                links.del_addr(guest, ethwe, addr)
        else:
            links.delete_link(host, veth)
    if view.enabled:
        if remaining:
            for addr in chosen:
                book.free(ident, addr.ip)
        else:
            book.free(ident)
    return chosen
