"""The sleeve: weave's userspace data path between hosts (UDP port 6783), run as its own
process so the router's asyncio loop stays responsive under full load. See docs/sleeve.md.

    wire.py       pure: the datagram header, byte-offset fragmentation, the bounded
                  Reassembler, heartbeat and PMTU probe/ack messages
    pmtu.py       pure: PMTU discovery per neighbour (binary search over acked DF probes)
    control.py    pure: the router <-> forwarder control messages (JSON over SEQPACKET)
    replay.py     pure: the anti-replay window of one (key, epoch) sequence space
    seal.py       pure (+ AEAD): secret keys, epochs and rekeying, opening sealed datagrams
    keybook.py    pure: key states per neighbour across configs (switches, grace, retired)
    sealrun.py    pure: header/nonce blocks for a run of sealed datagrams (AEAD via map)
    links.py      pure: neighbours, learned addresses, heartbeats, heard/pmtu events
    tap.py        kernel: the TAP device (ioctls) and virtio_net_hdr checks
    engine.py     kernel: the batched data path (TAP <-> UDP with GSO/GRO, relaying)
    unseal.py     kernel: the receive side of sealed datagrams (open, deliver, re-seal)
    forwarder.py  proc: the forwarder process (``python -m weave_cli.sleeve.forwarder``)
    client.py     proc: ``SleeveProcess``, the router's asyncio handle on that process
"""
