"""``weave attach``, ``detach``, ``ps``, ``expose`` and ``hide``: containers and the host on
the weave network of this host.

Thin: parse the words (``weave_cli.net.addrspec`` / ``target``), check root, call
``weave_cli.net`` with the router's IPAM as address book, print what the original printed
(the IPs, space-separated; ``ps`` lines ``<id> <mac> <cidr>...``). Everything heavy is
imported inside the commands.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Interface
from typing import Annotated, Optional

import typer

from weave_cli.errors import PrivilegeError, WeaveError

ATTACH_USAGE = "usage: weave attach [ADDR...] TARGET (TARGET: ns:NAME, pid:N or a container)"
DETACH_USAGE = "usage: weave detach [ADDR...] TARGET"
Words = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="ADDR is ip:CIDR, CIDR, net:CIDR or net:default; TARGET is ns:NAME, pid:N or a "
        "Docker container.",
        show_default=False,
        metavar="[ADDR]... TARGET",
    ),
]
Addrs = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="ip:CIDR, CIDR, net:CIDR or net:default.", show_default=False, metavar="[ADDR]..."
    ),
]


def _say(addrs: list[IPv4Interface]) -> None:
    if addrs:
        print(" ".join(str(a.ip) for a in addrs))


def _root(what: str) -> None:
    if os.geteuid() != 0:
        raise PrivilegeError(f"weave {what} needs root", "run it with sudo")


def attach(
    words: Words = None,
    no_multicast_route: Annotated[
        bool, typer.Option("--no-multicast-route", help="No 224.0.0.0/4 route via ethwe.")
    ] = False,
) -> None:
    """Attach TARGET to the weave network: it gets ethwe with the ADDRs (allocated from the
    default subnet when none) and prints its IPs."""
    from weave_cli.net import addrspec, netns, target
    from weave_cli.net import attach as net_attach
    from weave_cli.net.ipamclient import RouterAddressBook

    specs, word = addrspec.split_args(words or [], ATTACH_USAGE)
    tgt = target.parse_target(word)
    _root("attach")
    ref = netns.resolve(tgt)
    book = RouterAddressBook()
    done = net_attach.attach(book, ref, specs, multicast_route=not no_multicast_route)
    _say(done.addrs)


def detach(words: Words = None) -> None:
    """Remove ADDRs (all when none) from TARGET's ethwe, the interface when none remain, and
    free them in IPAM; prints the IPs removed."""
    from weave_cli.net import addrspec, netns, target
    from weave_cli.net import attach as net_attach
    from weave_cli.net.errors import TargetNotFoundError
    from weave_cli.net.ipamclient import RouterAddressBook

    specs, word = addrspec.split_args(words or [], DETACH_USAGE)
    tgt = target.parse_target(word)
    _root("detach")
    book = RouterAddressBook()
    try:
        ref = netns.resolve(tgt)
    except TargetNotFoundError:
        if tgt.kind != "ns" or specs:
            raise
        # The namespace is gone (and its veth with it): free what IPAM still holds for it.
        ident = target.ns_ident(tgt.value)
        try:
            left = book.lookup(ident) if book.view().enabled else []
        except WeaveError:
            left = []  # no router to ask: the missing namespace is the news
        if not left:
            raise
        book.free(ident)
        _say(left)
        return
    _say(net_attach.detach(book, ref, specs))


def ps(
    targets: Annotated[
        Optional[list[str]],
        typer.Argument(help="Only these targets (ns:NAME, pid:N, container).", show_default=False),
    ] = None,
) -> None:
    """List what is attached to this host's bridge: '<id> <mac> <cidr>...', the host's own
    exposed addresses first as weave:expose."""
    from weave_cli.net import netns, target
    from weave_cli.net import ps as net_ps
    from weave_cli.net.errors import NotAttachedError

    _root("ps")
    if not targets:
        for entry in net_ps.entries():
            print(net_ps.format_line(entry))
        return
    for word in targets:
        ref = netns.resolve(target.parse_target(word))
        found = net_ps.attachment_of(None, ref.path, ref.inode)
        if found is None:
            raise NotAttachedError(f"{ref.label} is not attached to weave on this host")
        print(net_ps.format_line(found))


def expose(addrs: Addrs = None) -> None:
    """Give this host addresses on the weave network (allocated as weave:expose when none are
    given) with masquerading of their subnets to the outside; prints the IPs."""
    from weave_cli.net import addrspec
    from weave_cli.net import expose as net_expose
    from weave_cli.net.ipamclient import RouterAddressBook

    specs = [addrspec.parse_addr(w) for w in addrs or []]
    _root("expose")
    _say(net_expose.expose(RouterAddressBook(), specs))


def hide(addrs: Addrs = None) -> None:
    """Remove this host's exposed addresses (those in the default subnet when none are given)
    and their masquerading; prints the IPs removed."""
    from weave_cli.net import addrspec
    from weave_cli.net import expose as net_expose
    from weave_cli.net.ipamclient import RouterAddressBook

    specs = [addrspec.parse_addr(w) for w in addrs or []]
    _root("hide")
    _say(net_expose.hide(RouterAddressBook(), specs))
