"""``weave ps``: what is attached to this host's bridge, read from the kernel alone.

One line per attachment in the original's format, ``<id> <mac> <cidr>...``, the first being
``weave:expose <bridge mac> <exposed cidrs>``. Attachments are found from the bridge side: every
``vethwepl*`` veth here is one; its alias gives the ident and a path to the namespace, its name
the namespace's inode (used to find the namespace again when the path is stale, e.g. a process
that exited while its namespace lives on). The MAC and addresses are ``ethwe``'s, read inside
that namespace. No router is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface

from weave_cli.names import BRIDGE, CONTAINER_IFNAME, EXPOSE_IDENT, VETH_HOST_PREFIX
from weave_cli.net import bridge, links
from weave_cli.net.errors import DatapathError, TargetNotFoundError
from weave_cli.net.netns import find_path, open_ipr
from weave_cli.net.target import display_ident, inode_of_veth, parse_alias


@dataclass(frozen=True)
class Entry:
    """One line of ``weave ps``; ``netns`` is a path that enters the namespace, if found."""

    ident: str
    mac: str
    addrs: list[IPv4Interface]
    host_veth: str = ""
    netns: str | None = None


def format_line(entry: Entry) -> str:
    words = [display_ident(entry.ident), entry.mac or "-", *(str(a) for a in entry.addrs)]
    return " ".join(words)


def entries(router_ns: str | None = None) -> list[Entry]:
    """The expose entry, then every attachment sorted by ident."""
    with open_ipr(router_ns) as host:
        br = bridge.require(host, BRIDGE)
        found = [Entry(EXPOSE_IDENT, br.mac, links.ipv4_addrs(host, br.index), BRIDGE)]
        ours = [
            link for link in links.all_links(host)
            if link.name.startswith(VETH_HOST_PREFIX) and link.kind == "veth"
        ]
    attached = [_entry(link) for link in ours]
    return found + sorted(attached, key=lambda e: e.ident)


def _entry(link: links.Link) -> Entry:
    recorded = parse_alias(link.alias)
    ident, hint = recorded if recorded else (link.name, None)
    inode = inode_of_veth(link.name)
    path = find_path(inode, hint) if inode is not None else None
    if path is None:
        return Entry(ident, "", [], link.name)
    try:
        with open_ipr(path) as guest:
            ethwe = links.get_link(guest, CONTAINER_IFNAME)
            if ethwe is None:
                return Entry(ident, "", [], link.name, path)
            return Entry(ident, ethwe.mac, links.ipv4_addrs(guest, ethwe.index), link.name, path)
    except (TargetNotFoundError, DatapathError):
        return Entry(ident, "", [], link.name)  # the namespace went away while we looked


def attachment_of(router_ns: str | None, netns_path: str, inode: int) -> Entry | None:
    """The attachment of one namespace to this router's bridge, or None."""
    from weave_cli.net.target import host_veth_name

    with open_ipr(router_ns) as host:
        link = links.get_link(host, host_veth_name(inode))
    if link is None or link.kind != "veth":
        return None
    return _entry(link)
