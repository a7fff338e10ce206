"""The ``weave`` command: the root typer app and the one place errors become exit codes.

Each command lives in its own module under ``weave_cli.commands``; heavy libraries (aiohttp,
pyroute2, docker, rich) are imported inside the commands that need them, so ``weave version``
and ``weave status`` start about as fast as typer itself.
"""

from __future__ import annotations

import sys

import typer

from weave_cli.commands import launch, lifecycle, peers, status
from weave_cli.commands.lab import app as lab_app
from weave_cli.errors import WeaveError

app = typer.Typer(
    name="weave",
    help="weave: a container overlay network. Run 'weave launch' on the first host and "
    "'weave join HOST' on the others.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("launch")(launch.launch)
app.command("join")(peers.join)
app.command("connect")(peers.connect)
app.command("forget")(peers.forget)
app.command("status")(status.status)
app.command("report")(status.report)
app.command("stop")(lifecycle.stop)
app.command("reset")(lifecycle.reset)
app.command("version")(lifecycle.version)
app.add_typer(lab_app, name="lab", help="A multi-host weave network on this machine, for trying and testing.")


def run() -> None:
    """Console-script entry: run the app, print WeaveErrors as one line, exit with their code."""
    try:
        app()
    except WeaveError as err:
        line = f"weave: {err.message}"
        if err.hint:
            line += f"; {err.hint}"
        print(line, file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
