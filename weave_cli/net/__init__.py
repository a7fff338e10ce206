"""The data path on one host: the ``weave`` bridge, container attachment, expose, firewall.

Modules, pure first (docs/datapath.md tells the whole story):

    addrspec    ADDR words (ip:, net:, net:default) and their rules against IPAM     [pure]
    target      TARGET words, IPAM idents, veth names and aliases                   [pure]
    nft         the ``inet weave`` table as data; render, compare with a listing     [pure]
    iptables    our ACCEPT rules for DOCKER-USER / FORWARD: parse -S, plan           [pure]
    bridge      the bridge's desired state, plans, and ``ensure``                    [pure + kernel]
    errors      the data path's errors and exit codes                                [pure]
    netns       resolving targets; netlink sockets inside a namespace (setns)        [kernel]
    links       one netlink operation per function (pyroute2), errors translated     [kernel]
    firewall    running nft and iptables in the router's namespace                   [proc]
    docker      Docker container → pid (Docker API over its socket; SDK only for TLS)  [docker]
    ipamclient  addresses from the router's IPAM (HTTP) and ``obtain`` with give-back [net-io]
    attach      attach / detach with rollback                                        [wiring]
    expose      expose / hide                                                        [wiring]
    ps          what is attached, from the kernel                                    [kernel]
    datapath    ``ensure`` and ``remove_all`` of everything above                    [wiring]
    keeper      the router's reconcile task                                          [task]

pyroute2 is imported only inside functions, so importing these modules stays cheap.
"""
