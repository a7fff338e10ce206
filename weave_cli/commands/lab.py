"""``weave lab``: build a multi-host weave network on this machine and drive it.

Thin: each command checks root, calls ``weave_cli.lab.ops`` and prints. Importing this module
is cheap (typer and the pure topology only); the kernel code loads when a command runs.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Optional

import typer

from weave_cli.errors import LabError, PrivilegeError
from weave_cli.lab.topology import DEFAULT_LAB, validate_lab_name

app = typer.Typer(
    help="A multi-host weave network on this machine (hosts are network namespaces).",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

NameOpt = Annotated[str, typer.Option("--name", help="Lab name: 1-8 of [a-z0-9].")]
EXEC_SETTINGS = {"allow_interspersed_args": False, "ignore_unknown_options": True}
CmdArg = Annotated[Optional[list[str]], typer.Argument(help="The command.", show_default=False)]
HostArg = Annotated[str, typer.Argument(help="A host of the lab: h1, h2, ...", show_default=False)]
NodeArg = Annotated[
    str, typer.Argument(help="A host (h1, h2, ...) or a container.", show_default=False)
]
ContainerArg = Annotated[
    str, typer.Argument(help="Container name: [a-z][a-z0-9]{0,11}.", show_default=False)
]


def _lab(name: str) -> str:
    """Root check first (every command needs it), then the lab name."""
    if os.geteuid() != 0:
        raise PrivilegeError("weave lab needs root", "run it with sudo")
    return validate_lab_name(name)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def up(
    ctx: typer.Context,
    hosts: Annotated[int, typer.Option("--hosts", help="Number of hosts (h1..hN).")],
    name: NameOpt = DEFAULT_LAB,
    bare: Annotated[bool, typer.Option("--bare", help="Build the hosts only; no routers.")] = False,
) -> None:
    """Create hosts h1..hN and start routers: h1 launches, the others join 198.18.0.1.

    Other options are passed to 'weave launch'/'weave join' unchanged; put them after '--'
    when they clash with the lab's own (e.g. -- --name aa:bb:cc:dd:ee:ff).
    """
    from weave_cli.lab import ops

    lab = _lab(name)
    for host in ops.up(lab, hosts, bare, list(ctx.args)):
        state = "bare" if bare else "router ready"
        print(f"{host.name}  {host.netns}  {host.address}  {state}")


@app.command()
def down(name: NameOpt = DEFAULT_LAB) -> None:
    """Remove the lab: its processes, namespaces, links and directories (idempotent)."""
    from weave_cli.lab import ops

    if not ops.down(_lab(name)):
        print(f"no lab named {name!r}; nothing to do")


@app.command("exec", context_settings=EXEC_SETTINGS)
def exec_(
    host: NodeArg,
    cmd: CmdArg = None,
    name: NameOpt = DEFAULT_LAB,
) -> None:
    """Run CMD inside HOST (its network and UTS namespaces, its WEAVE_* dirs) or inside a
    container (its network namespace).

    Example: weave lab exec h1 -- weave status. Lab options go before HOST.
    """
    from weave_cli.lab import containers, enter, ops
    from weave_cli.lab.topology import Lab, host_index

    lab = _lab(name)
    argv = list(cmd or [])
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if host_index(host) is None:
        containers.exec_in(Lab(lab), host, argv)
    enter.exec_in(ops.host(lab, host), argv)


@app.command()
def run(
    host: HostArg,
    container: ContainerArg,
    addrs: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="ADDRs as for 'weave attach'.", show_default=False, metavar="[ADDR]..."
        ),
    ] = None,
    name: NameOpt = DEFAULT_LAB,
) -> None:
    """Create a container (namespace wl-LAB-c-CONTAINER) and attach it to HOST's bridge by
    running 'weave attach [ADDR...] ns:wl-LAB-c-CONTAINER' inside HOST; prints its IPs."""
    from weave_cli.lab import containers
    from weave_cli.lab.topology import Lab

    lab = Lab(_lab(name))
    where, netns, ips = containers.run(lab, host, container, list(addrs or []))
    print(f"{container}  {netns}  {where.name}  {ips}")


@app.command()
def rm(container: ContainerArg, name: NameOpt = DEFAULT_LAB) -> None:
    """Detach a container in its host (freeing its addresses) and delete its namespace."""
    from weave_cli.lab import containers
    from weave_cli.lab.topology import Lab

    if not containers.remove(Lab(_lab(name)), container):
        print(f"no container named {container!r}; nothing to do")


@app.command()
def status(
    name: NameOpt = DEFAULT_LAB,
    as_json: Annotated[bool, typer.Option("--json", help="A stable JSON document.")] = False,
) -> None:
    """Show the lab's hosts: namespace, address, router pid and whether the router is ready."""
    from weave_cli.lab import containers, ops
    from weave_cli.lab.topology import Lab

    doc = ops.status(_lab(name))
    doc["containers"] = containers.describe(Lab(doc["lab"]))
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    rows = [["HOST", "NETNS", "ADDRESS", "ROUTER PID", "READY"]]
    for h in doc["hosts"]:
        pid = str(h["router_pid"]) if h["router_pid"] else "-"
        rows.append([h["name"], h["netns"], h["address"], pid, "yes" if h["ready"] else "no"])
    print(f"lab {doc['lab']}")
    _table(rows)
    if doc["containers"]:
        _table([["CONTAINER", "NETNS", "HOST", "ADDRESSES"]] + [
            [c["name"], c["netns"], c["host"] or "-", " ".join(c["addresses"]) or "-"]
            for c in doc["containers"]
        ])
    cuts = sorted({(r.pair, r.mode) for r in ops.partitions(doc["lab"])}) if doc["hosts"] else []
    if cuts:
        print("partitions: " + ", ".join(f"{a}-{b} ({mode})" for (a, b), mode in cuts))


@app.command()
def kill(host: HostArg, name: NameOpt = DEFAULT_LAB) -> None:
    """SIGKILL HOST's router and wait until it is gone (its supervisor may restart it)."""
    from weave_cli.lab import ops

    pid = ops.kill(_lab(name), host)
    print(f"killed router pid {pid} on {host}")


@app.command()
def restart(host: HostArg, name: NameOpt = DEFAULT_LAB) -> None:
    """Stop HOST's router and start it again with the command 'lab up' used; waits for ready."""
    from weave_cli.lab import ops

    ops.restart(_lab(name), host)
    print(f"router on {host} restarted and ready")


@app.command()
def partition(
    host1: HostArg,
    host2: HostArg,
    name: NameOpt = DEFAULT_LAB,
    mode: Annotated[
        Optional[str],
        typer.Option("--mode", help="Which protocol to drop: all (default), tcp or udp.",
                     show_default=False, metavar="all|tcp|udp"),
    ] = None,
    port: Annotated[
        Optional[int],
        typer.Option("--port", help="Drop only packets from or to this port (needs --mode tcp "
                     "or udp); e.g. --mode udp --port 6784 blocks fastdp.", show_default=False),
    ] = None,
    max_size: Annotated[
        Optional[int],
        typer.Option("--max-size", help="Drop only packets whose IP length is above this many "
                     "bytes; e.g. --mode udp --max-size 700.", show_default=False),
    ] = None,
    tcp_only: Annotated[bool, typer.Option("--tcp-only", help="Same as --mode tcp.")] = False,
    udp_only: Annotated[bool, typer.Option("--udp-only", help="Same as --mode udp.")] = False,
) -> None:
    """Drop traffic between HOST1 and HOST2 on the underlay switch (both directions); all of
    it, or only one protocol, port or packet size. Replaces the pair's earlier partition."""
    from weave_cli.lab import ops, rules

    lab = _lab(name)
    if tcp_only and udp_only:
        raise LabError("--tcp-only and --udp-only exclude each other", "give at most one")
    short = "tcp" if tcp_only else "udp" if udp_only else None
    if short is not None and mode is not None and mode != short:
        raise LabError(f"--{short}-only and --mode {mode} contradict each other",
                       f"give one of them, e.g. --mode {short}")
    fault = rules.fault(mode or short or "all", port, max_size)
    ops.partition(lab, host1, host2, fault)


@app.command()
def heal(
    host1: Annotated[Optional[str], typer.Argument(show_default=False)] = None,
    host2: Annotated[Optional[str], typer.Argument(show_default=False)] = None,
    name: NameOpt = DEFAULT_LAB,
) -> None:
    """Remove the partition between HOST1 and HOST2, or every partition with no arguments."""
    from weave_cli.lab import ops

    ops.heal(_lab(name), host1, host2)


@app.command()
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Leave the demo lab running.")] = False,
) -> None:
    """A short tour: 3 hosts, launch and join, 'weave status' from h1, then a container on h1
    reaching one on h2; then remove the lab. Exits 1 when traffic did not cross the hosts."""
    from weave_cli.lab import demo as tour

    _lab(tour.DEMO_LAB)
    if not tour.run(keep):
        raise typer.Exit(1)


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
