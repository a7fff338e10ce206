"""Traffic between hosts: which transport carries each link, and the forwarding it implies.

Modules, pure first (docs/datapath.md, "Between hosts"):

    links      per-link choice of fastdp or sleeve from heartbeats and the peer's reports  [pure]
    channel    the ``overlay`` gossip channel: MAC table CRDT and heartbeat reports        [pure]
    plan       link modes + MAC table -> VXLAN FDB, bridge FDB, sleeve config             [pure]
    hbframe    the fastdp heartbeat datagram                                              [pure]
    service    the overlay task: heartbeats, reports, forwarding applied to the kernel    [task]

The kernel side is in ``weave_cli.net``: ``overlay`` (the VXLAN devices and overlay ports),
``fdb`` (reading and writing forwarding entries), ``heartbeat`` (fastdp heartbeat sockets),
``mtu`` (the overlay MTU from the underlay); the sleeve's forwarder is ``weave_cli.sleeve``.
"""
