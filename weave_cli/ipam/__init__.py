"""IPAM: automatic, conflict-free container addresses across the mesh.

Pure modules (no I/O, clock or randomness; those are passed in by the allocator):

    address   IPv4 addresses as ints, half-open ``Range``, ``CIDR``, aligned splitting
    space     one peer's owned and free addresses (allocate lowest, free, donate)
    ring      the ring CRDT: who owns which range, merge, validation, wire format
    paxos     consensus on the initial set of peers

Side effects: ``store`` (SQLite persistence). See docs/ipam.md.
"""
