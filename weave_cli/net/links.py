"""Thin netlink effects over a pyroute2 ``IPRoute``: read links and addresses, change them.

Every function takes an ``IPRoute`` already bound to the right namespace (``netns.open_ipr``)
and does one kernel operation; deciding what to do is left to the pure planners. pyroute2's
messages are turned into the small ``Link`` record right here, and every ``NetlinkError`` or
``OSError`` becomes a ``DatapathError`` naming the operation and the errno text, so no foreign
exception leaves this module.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from weave_cli.net.errors import DatapathError

IPRoute = Any  # a pyroute2.IPRoute; pyroute2 ships no type information

IFF_UP = 0x1
ADDR_GEN_MODE_NONE = 1
IPV6_CONF = Path("/proc/sys/net/ipv6/conf")


@dataclass(frozen=True)
class Link:
    """What the planners need to know about one network device."""

    index: int
    name: str
    kind: str | None
    mtu: int
    up: bool
    master: int | None
    mac: str
    alias: str | None
    addrgenmode: int | None
    accept_ra: int | None = None  # IPv6 conf of the device; None: no IPv6 on it (or disabled)


@contextmanager
def kernel(what: str) -> Iterator[None]:
    """Translate pyroute2 and OS errors of the body into ``DatapathError(what: reason)``."""
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    try:
        yield
    except NetlinkError as err:
        raise DatapathError(f"{what}: {os.strerror(err.code)}") from None
    except OSError as err:
        raise DatapathError(f"{what}: {err.strerror or err}") from None


def is_errno(err: DatapathError, code: int) -> bool:
    return err.message.endswith(os.strerror(code))


def _to_link(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    mode = accept_ra = None
    spec = msg.get_attr("IFLA_AF_SPEC")
    inet6 = spec.get_attr("AF_INET6") if spec is not None else None
    if inet6 is not None:
        mode = inet6.get_attr("IFLA_INET6_ADDR_GEN_MODE")
        conf = inet6.get_attr("IFLA_INET6_CONF")
        accept_ra = conf.get("accept_ra") if isinstance(conf, dict) else None
    return Link(
        index=int(msg["index"]),
        name=str(msg.get_attr("IFLA_IFNAME")),
        kind=kind,
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        up=bool(msg["flags"] & IFF_UP),
        master=msg.get_attr("IFLA_MASTER"),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
        alias=msg.get_attr("IFLA_IFALIAS"),
        addrgenmode=mode,
        accept_ra=accept_ra,
    )


def all_links(ipr: IPRoute) -> list[Link]:
    with kernel("cannot list network devices"):
        return [_to_link(m) for m in ipr.get_links()]


def get_link(ipr: IPRoute, name: str) -> Link | None:
    """The device called ``name``, or None."""
    try:
        with kernel(f"cannot read device {name}"):
            msgs = ipr.link("get", ifname=name)
    except DatapathError as err:
        if is_errno(err, errno.ENODEV):
            return None
        raise
    return _to_link(msgs[0]) if msgs else None


def ipv4_addrs(ipr: IPRoute, index: int) -> list[IPv4Interface]:
    with kernel("cannot list addresses"):
        msgs = ipr.get_addr(family=socket.AF_INET, index=index)
    return [IPv4Interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}") for m in msgs]


def add_addr(ipr: IPRoute, link: Link, addr: IPv4Interface) -> None:
    with kernel(f"cannot add {addr} to {link.name}"):
        ipr.addr("add", index=link.index, address=str(addr.ip), prefixlen=addr.network.prefixlen)


def del_addr(ipr: IPRoute, link: Link, addr: IPv4Interface) -> None:
    with kernel(f"cannot remove {addr} from {link.name}"):
        ipr.addr("del", index=link.index, address=str(addr.ip), prefixlen=addr.network.prefixlen)


def set_up(ipr: IPRoute, link: Link) -> None:
    with kernel(f"cannot bring {link.name} up"):
        ipr.link("set", index=link.index, state="up")


def set_mtu(ipr: IPRoute, link: Link, mtu: int) -> None:
    with kernel(f"cannot set the MTU of {link.name} to {mtu}"):
        ipr.link("set", index=link.index, mtu=mtu)


def set_master(ipr: IPRoute, link: Link, master: Link) -> None:
    with kernel(f"cannot add {link.name} to bridge {master.name}"):
        ipr.link("set", index=link.index, master=master.index)


def no_ipv6_autoconf(ipr: IPRoute, link: Link) -> None:
    """addrgenmode none: no IPv6 link-local address, so no router or neighbour solicitations."""
    spec = {"attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE]]}]]}
    with kernel(f"cannot turn off IPv6 address generation on {link.name}"):
        ipr.link("set", index=link.index, IFLA_AF_SPEC=spec)


def accept_ra_off(router_ns: str | None, names: list[str], conf: Path = IPV6_CONF) -> list[str]:
    """``accept_ra`` 0 on each device of the router's namespace; the names that were changed.

    Router advertisements a container sends onto the bridge (or onto a veth while it is out of
    the bridge) then change no route and no address of the host (CVE-2020-11091). There is no
    netlink request for it, so this writes ``conf/<dev>/accept_ra`` with the thread inside the
    namespace (``/proc/sys/net`` shows the namespace of the thread that opens it). A missing
    file is skipped: IPv6 disabled at boot (no ``/proc/sys/net/ipv6``), or the device is gone.
    """
    from weave_cli.net.netns import entered

    changed = []
    with entered(router_ns):
        for name in names:
            path = conf / name / "accept_ra"
            try:
                if path.read_bytes().strip() == b"0":
                    continue
                path.write_bytes(b"0\n")
            except FileNotFoundError:
                continue
            except OSError as err:
                raise DatapathError(f"cannot turn off IPv6 router advertisements on {name}: "
                                    f"{err.strerror or err}") from None
            changed.append(name)
    return changed


def accept_ra_off_early(router_ns: str | None, link: Link) -> bool:
    """``accept_ra_off`` before a device comes up or joins the bridge, when it is on; True
    when it was changed. A failure is left to the sweep at the end of ``datapath.ensure``,
    which reports it: one file that cannot be written must not keep the bridge down."""
    if not ra_on(link):
        return False
    try:
        return bool(accept_ra_off(router_ns, [link.name]))
    except DatapathError:
        return False


def ra_repair(names: list[str]) -> list[str]:
    """The keeper's log line for devices whose ``accept_ra`` had to be set again."""
    return [f"IPv6 router advertisements ignored on {' '.join(names)}"] if names else []


def ra_on(link: Link) -> bool:
    """True when the device has IPv6 and would act on router advertisements."""
    return link.accept_ra is not None and link.accept_ra != 0


def create_bridge(ipr: IPRoute, name: str, mtu: int, mac: str) -> Link:
    """A new bridge (STP off, no forwarding delay) with a fixed MAC, left down."""
    with kernel(f"cannot create bridge {name}"):
        ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=mac, br_forward_delay=0)
    link = get_link(ipr, name)
    if link is None:
        raise DatapathError(f"bridge {name} vanished right after it was created")
    return link


def create_veth(ipr: IPRoute, name: str, mtu: int, peer: str, peer_ns_fd: int) -> Link:
    """A veth pair: ``name`` here, ``peer`` created directly in the namespace of the fd."""
    with kernel(f"cannot create veth {name}"):
        ipr.link(
            "add", ifname=name, kind="veth", mtu=mtu,
            peer={"ifname": peer, "mtu": mtu, "net_ns_fd": peer_ns_fd},
        )
    link = get_link(ipr, name)
    if link is None:
        raise DatapathError(f"veth {name} vanished right after it was created")
    return link


def plug_port(ipr: IPRoute, link: Link, alias: str, master: Link) -> None:
    """Label, IPv6 autoconf off, enslave to ``master`` and up, in one netlink request."""
    spec = {"attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE]]}]]}
    with kernel(f"cannot plug {link.name} into {master.name}"):
        ipr.link("set", index=link.index, ifalias=alias, master=master.index, state="up",
                 IFLA_AF_SPEC=spec)


def set_alias(ipr: IPRoute, link: Link, alias: str) -> None:
    with kernel(f"cannot label {link.name}"):
        ipr.link("set", index=link.index, ifalias=alias)


def delete_link(ipr: IPRoute, link: Link) -> bool:
    """Delete a device; False when it was already gone."""
    try:
        with kernel(f"cannot delete {link.name}"):
            ipr.link("del", index=link.index)
    except DatapathError as err:
        if is_errno(err, errno.ENODEV):
            return False
        raise
    return True


def add_route(ipr: IPRoute, link: Link, dst: IPv4Network) -> None:
    """A route for ``dst`` through the device; one that is already there is fine."""
    try:
        with kernel(f"cannot add a route for {dst} via {link.name}"):
            ipr.route("add", dst=str(dst), oif=link.index)
    except DatapathError as err:
        if not is_errno(err, errno.EEXIST) or dst not in routes_via(ipr, link):
            raise


def routes_via(ipr: IPRoute, link: Link) -> list[IPv4Network]:
    with kernel(f"cannot list routes of {link.name}"):
        msgs = ipr.get_routes(family=socket.AF_INET, oif=link.index)
    return [IPv4Network(f"{m.get_attr('RTA_DST') or '0.0.0.0'}/{m['dst_len']}") for m in msgs]
