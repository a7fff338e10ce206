"""The sleeve: weave's userspace data path between hosts (UDP port 6783), run as its own
process so the router's asyncio loop stays responsive under full load. See docs/sleeve.md.

    wire.py       pure: the datagram header, byte-offset fragmentation, the bounded
                  Reassembler, heartbeat and PMTU probe/ack messages
    pmtu.py       pure: PMTU discovery per neighbour (binary search over acked DF probes)
    control.py    pure: the router <-> forwarder control messages (JSON over SEQPACKET)
    links.py      pure: neighbours, learned addresses, heartbeats, heard/pmtu events
    tap.py        kernel: the TAP device (ioctls) and virtio_net_hdr checks
    engine.py     kernel: the batched data path (TAP <-> UDP with GSO/GRO, relaying)
    forwarder.py  proc: the forwarder process (``python -m weave_cli.sleeve.forwarder``)
    client.py     proc: ``SleeveProcess``, the router's asyncio handle on that process
"""
