"""The ``weave`` command: the root typer app and the one place errors become exit codes.

Each command lives in its own module under ``weave_cli.commands``. To start fast, ``run()``
builds a typer app holding only the command being invoked (typer inspects every parameter of
every registered command on each call); help, completion and unknown words get the full app.
Heavy libraries (aiohttp, pyroute2, docker, rich) are imported inside the commands that use
them, so ``weave version`` and ``weave status`` start about as fast as typer itself.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from weave_cli.errors import WeaveError

HELP = (
    "weave: a container overlay network. Run 'weave launch' on the first host and "
    "'weave join HOST' on the others."
)
LAB_HELP = "A multi-host weave network on this machine, for trying and testing."
# command name -> (module, attribute); order is the order of `weave --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "launch": ("weave_cli.commands.launch", "launch"),
    "join": ("weave_cli.commands.peers", "join"),
    "connect": ("weave_cli.commands.peers", "connect"),
    "forget": ("weave_cli.commands.peers", "forget"),
    "status": ("weave_cli.commands.status", "status"),
    "report": ("weave_cli.commands.status", "report"),
    "rmpeer": ("weave_cli.commands.ipam", "rmpeer"),
    "prime": ("weave_cli.commands.ipam", "prime"),
    "stop": ("weave_cli.commands.lifecycle", "stop"),
    "reset": ("weave_cli.commands.lifecycle", "reset"),
    "version": ("weave_cli.commands.lifecycle", "version"),
    "attach": ("weave_cli.commands.attach", "attach"),
    "detach": ("weave_cli.commands.attach", "detach"),
    "ps": ("weave_cli.commands.attach", "ps"),
    "expose": ("weave_cli.commands.attach", "expose"),
    "hide": ("weave_cli.commands.attach", "hide"),
    "rotate-password": ("weave_cli.commands.rotate", "app"),
    "lab": ("weave_cli.commands.lab", "app"),
}


def _root_callback() -> None:
    """weave: a container overlay network."""


def build_app(only: str | None = None) -> typer.Typer:
    """The CLI with every command, or with just ``only`` (same behaviour for that command)."""
    app = typer.Typer(
        name="weave",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    # An explicit callback keeps a one-command app a group, so `weave NAME ...` parses the same.
    app.callback(help=HELP)(_root_callback)
    for name, (module, attr) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attr)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name, help=LAB_HELP if name == "lab" else target.info.help)
        else:
            app.command(name)(target)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # the full app, for docs and completion generators
        return build_app()
    raise AttributeError(name)


def _invoked_command(argv: list[str]) -> str | None:
    for word in argv:
        if word.startswith("-"):
            return None  # --help, --install-completion ...: the full app answers
        return word if word in COMMANDS else None
    return None


def run() -> None:
    """Console-script entry: run the app, print WeaveErrors as one line, exit with their code."""
    import os

    completing = any(k.startswith("_WEAVE_COMPLETE") for k in os.environ)
    only = None if completing else _invoked_command(sys.argv[1:])
    try:
        build_app(only)()
    except WeaveError as err:
        line = f"weave: {err.message}"
        if err.hint:
            line += f"; {err.hint}"
        print(line, file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
