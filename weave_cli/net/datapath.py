"""The data path of one host as a whole: ``ensure`` it (the keeper), ``remove_all`` (reset).

Objects weave owns in the router's network namespace, all named in ``weave_cli.names``:

    bridge ``weave``                       created by ``ensure``, with our MTU, up
    ``weave-vxlan``, ``weave-vxhb``          fastdp's VXLAN devices (``net/overlay.py``)
    ``weave-sleeve``                       the sleeve forwarder's TAP, a port of the bridge
    veths ``vethwepl<inode>``              one per attached namespace (peer ``ethwe`` there)
    addresses on the bridge                ``weave expose``
    nftables ``table inet weave``          input guard of the router's ports, forward
                                           accepts, masquerade of exposed subnets
    ``accept_ra`` 0 on all these devices   a container's IPv6 router advertisements are ignored
    iptables rules commented ``weave:*``   in DOCKER-USER, or FORWARD when its policy is DROP
    nftables ``inet``/``bridge weave-npc``  the policy controller's tables (``weave_cli.npc``);
                                           only ``remove_all`` touches them here

``ensure`` is idempotent and cheap when nothing changed (netlink reads, one ``nft -j list``,
one ``iptables -S`` when iptables exists); it returns one line per repair. The bridge comes
first; the ``accept_ra`` sweep, the nft table and the iptables rules are tried independently,
and a failure of any is raised after all were tried. ``remove_all`` deletes
exactly these objects and nothing else (deleting a veth removes its ``ethwe`` in the container
too), tries every step even when one fails, and then reports what failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Interface

from weave_cli.names import BRIDGE, NFT_FAMILY, NFT_TABLE, NPC_TABLE, VETH_HOST_PREFIX
from weave_cli.net import bridge, firewall, links, overlay
from weave_cli.net.bridge import DEFAULT_MTU, BridgeSpec
from weave_cli.net.errors import DatapathError
from weave_cli.net.netns import open_ipr
from weave_cli.net.nft import LocalPorts
from weave_cli.net.overlay import OverlaySpec


def ensure(router_ns: str | None = None, mtu: int = DEFAULT_MTU,
           overlay_spec: OverlaySpec | None = None, exposed: Sequence[str] = ()) -> list[str]:
    """Bridge, ports, overlay devices, nft table and iptables rules as desired; one line per
    repair. Without ``overlay_spec`` the overlay devices are left as they are. ``exposed`` are
    the host's addresses IPAM holds for ``weave expose``: a bridge made anew (it was deleted)
    gets them back; an existing bridge's addresses are left to expose and hide."""
    with open_ipr(router_ns) as ipr:
        existed = links.get_link(ipr, BRIDGE) is not None
        repairs = bridge.ensure(ipr, BridgeSpec(BRIDGE, mtu), router_ns)
        br = bridge.require(ipr)
        if not existed and exposed:
            for cidr in exposed:
                links.add_addr(ipr, br, IPv4Interface(cidr))
            repairs.append(f"bridge {BRIDGE}: exposed {' '.join(exposed)} again")
        if overlay_spec is not None:
            repairs += overlay.ensure(ipr, br, overlay_spec, router_ns)
        exposed_now = links.ipv4_addrs(ipr, br.index)
        ra_on = [link.name for link in links.all_links(ipr) if _owned(link) and links.ra_on(link)]
    failed = []
    # Independent steps: without nft (an iptables-only host) the Docker rules still matter.
    try:
        repairs += links.ra_repair(links.accept_ra_off(router_ns, ra_on))
    except DatapathError as err:
        failed.append(err.message)
    ports = (LocalPorts.for_mesh_port(overlay_spec.port, overlay_spec.vxlan_from,
                                      overlay_spec.listeners)
             if overlay_spec is not None else None)
    try:
        repairs += firewall.ensure_table(router_ns, exposed_now, ports=ports)
    except DatapathError as err:
        failed.append(err.message)
    try:
        repairs += firewall.ensure_forward_rules(router_ns)
    except DatapathError as err:
        failed.append(err.message)
    if failed:
        raise DatapathError("; ".join(failed))
    return repairs


def remove_all(router_ns: str | None = None) -> list[str]:
    """Delete every kernel object weave made in the namespace; what was removed.

    Raises ``DatapathError`` listing the steps that failed, after trying all of them.
    Running it when nothing is left removes nothing and succeeds.
    """
    removed: list[str] = []
    failed: list[str] = []
    try:
        with open_ipr(router_ns) as ipr:
            for link in links.all_links(ipr):
                if not _owned(link):
                    continue
                try:
                    if links.delete_link(ipr, link):
                        removed.append(link.name)
                except DatapathError as err:
                    failed.append(err.message)
    except DatapathError as err:
        failed.append(err.message)
    try:
        if firewall.remove_table(router_ns):
            removed.append(f"nft table {NFT_FAMILY} {NFT_TABLE}")
    except DatapathError as err:
        failed.append(err.message)
    try:
        from weave_cli.npc import kernel as npc_kernel

        if npc_kernel.remove(router_ns):
            removed.append(f"nft tables inet and bridge {NPC_TABLE}")
    except DatapathError as err:
        failed.append(err.message)
    try:
        count = firewall.remove_forward_rules(router_ns)
        if count:
            removed.append(f"{count} iptables rules")
    except DatapathError as err:
        failed.append(err.message)
    if failed:
        raise DatapathError(
            "could not remove everything weave made: " + "; ".join(failed),
            "run 'weave reset' again; see the message for what is left",
        )
    return removed


def _owned(link: links.Link) -> bool:
    if link.name == BRIDGE:
        return link.kind == "bridge"
    if overlay.owned(link):
        return True
    return link.name.startswith(VETH_HOST_PREFIX) and link.kind == "veth"
