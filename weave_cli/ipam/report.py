"""The IPAM section of ``weave report``, built from an allocator and what the mesh knows. Pure.

Field names follow the original (``Range``, ``RangeNumIPs``, ``ActiveIPs``, ``DefaultSubnet``,
``Entries[{Token, Size, Peer, Nickname, IsKnownPeer, Version}]``, ``PendingClaims``,
``PendingAllocates``, ``Paxos``); ``Status`` (the status words) and ``Conflicts`` are ours.
``IsKnownPeer`` is true when the owner is reachable now, which is what ``weave status ipam``
marks as "unreachable!" otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from weave_cli.ipam.address import format_ip
from weave_cli.ipam.allocator import Allocator
from weave_cli.router.peer import PeerName


def ipam_report(
    alloc: Allocator, nicknames: Mapping[PeerName, str], reachable: set[PeerName]
) -> dict[str, Any]:
    ring = alloc.ring
    entries = []
    for e in ring.entries:
        entries.append({
            "Token": format_ip(e.token),
            "Size": ring.entry_size(e.token),
            "Peer": str(e.peer),
            "Nickname": nicknames.get(e.peer, ""),
            "IsKnownPeer": e.peer == alloc.me or e.peer in reachable,
            "Version": e.version,
            "Free": e.free,
        })
    paxos = None
    if alloc.paxos is not None:
        paxos = {
            "Elector": True,
            "KnownNodes": alloc.paxos.known_nodes(),
            "Quorum": alloc.paxos.quorum,
        }
    claims, allocates = alloc.pending_requests()
    return {
        "Status": alloc.status_words(reachable),
        "Range": str(alloc.universe),
        "RangeNumIPs": alloc.universe.size,
        "ActiveIPs": sum(len(cidrs) for cidrs in alloc.owned.values()),
        "DefaultSubnet": str(alloc.default_subnet),
        "Entries": entries,
        "PendingClaims": [{"Ident": ident, "CIDR": cidr} for ident, cidr in claims],
        "PendingAllocates": allocates,
        "Paxos": paxos,
        "Conflicts": list(dict.fromkeys(alloc.conflicts)),
    }
