"""``weave lab``: a multi-host weave network on one machine, hosts being network namespaces.

Modules, pure first:

    topology  every name, address and path of a lab (naming scheme in its docstring)   [pure]
    rules     partition rules for nftables in the switch namespace                    [pure]
    system    programs, namespaces, processes, mounts, the lock file                  [kernel/proc]
    build     create / destroy a lab's namespaces, veths, bridge, UTS files, dirs     [kernel]
    enter     run a command inside a host (nsenter + the host's env)                  [proc]
    routers   start, wait for, kill and restart the routers inside hosts              [proc]
    containers  namespaces attached to a host's bridge through 'weave attach'      [proc]
    probe     a UDP echo probe for containers (there is no ping)                      [net-io]
    ops       one function per ``weave lab`` command                                  [wiring]
    demo      the scripted tour behind ``weave lab demo``                             [wiring]
"""
