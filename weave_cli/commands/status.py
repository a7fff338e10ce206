"""``weave status [peers|connections|targets|ipam]`` and ``weave report [-f TEMPLATE]``."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from weave_cli.errors import IPAMDisabledError, UsageError

VIEWS = ("peers", "connections", "targets", "ipam")


def fetch_report() -> dict[str, Any]:
    from weave_cli.client import RouterClient

    report: dict[str, Any] = RouterClient().call("GET", "/report").json()
    return report


def _print(text: str, padded: bool) -> None:
    if sys.stdout.isatty():
        from rich.console import Console

        from weave_cli.render import colorize

        console = Console(highlight=False)
        if padded:
            console.print()
        console.print(colorize(text))
        if padded:
            console.print()
        return
    out = f"\n{text}\n\n" if padded else (text + "\n" if text else "")
    sys.stdout.write(out)


def status(
    view: Annotated[
        Optional[str],
        typer.Argument(
            help="peers, connections, targets or ipam; omit for the summary.", show_default=False
        ),
    ] = None,
) -> None:
    """Show the router's state: summary, peers, connections (and why a link is down), targets,
    or ipam (who owns how much of the address range, and who is unreachable)."""
    from weave_cli import render

    if view is not None and view not in VIEWS:
        raise UsageError(
            f"Invalid 'weave status' sub-command: {view}", "use one of: " + ", ".join(VIEWS)
        )
    report = fetch_report()
    if view is None:
        _print(render.render_status(report).rstrip("\n"), padded=True)
        return
    if view == "ipam" and not isinstance(report.get("IPAM"), dict):
        raise IPAMDisabledError(
            "IP address allocation is disabled on this router (--ipalloc-range '')",
            "launch it without --ipalloc-range '' to allocate addresses",
        )
    views = {
        "peers": render.render_peers,
        "connections": render.render_connections,
        "targets": render.render_targets,
        "ipam": render.render_ipam,
    }
    _print(views[view](report).rstrip("\n"), padded=False)


def report(
    format_: Annotated[
        Optional[str],
        typer.Option(
            "-f",
            "--format",
            help="Go-style template, e.g. '{{.Router.Name}}' or '{{json .Router.Peers}}'.",
        ),
    ] = None,
) -> None:
    """Print the router's full state as indented JSON, or through a template."""
    import json

    data = fetch_report()
    if format_ is None:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    from weave_cli.template import render_template

    out = render_template(format_, data)
    sys.stdout.write(out if out.endswith("\n") else out + "\n")
