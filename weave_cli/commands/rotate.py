"""``weave rotate-password``: change the network's password without ever splitting it.

Three steps, each run on every host before the next one is run anywhere (docs/security.md):
``begin`` (accept the next password too), ``switch`` (send with it, still accept the old one),
``finish`` (stop accepting the old one); ``cancel`` undoes a ``begin`` while no host has
switched. A step may be run again (a reload that failed is retried so). Each step rewrites the
password files in the run directory (``weave_cli.router.rotation``) and asks the running
router to take them up; the request carries no secret. Without a running router nothing is
changed (a new ``weave launch`` names one password and ends any rotation); while the
supervisor restarts the router, the files are changed and read by its next life.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Annotated

import typer

from weave_cli.errors import NotRunningError, PrivilegeError, RotationError
from weave_cli.names import Paths

NewPasswordOpt = Annotated[
    str | None,
    typer.Option("--password", show_default=False,
                 help="The new password (visible in the process list: prefer "
                      "--password-file or WEAVE_PASSWORD)."),
]
NewPasswordFileOpt = Annotated[
    str | None,
    typer.Option("--password-file", show_default=False,
                 help="A file holding the new password (mode 0600)."),
]

app = typer.Typer(
    help="Change the network's password without splitting it: run 'begin' on every host, "
         "then 'switch' on every host, then 'finish' on every host.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
NEXT_STEP = {
    "begin": "when every host has begun, run 'weave rotate-password switch' on each",
    "switch": "when every host has switched, run 'weave rotate-password finish' on each",
    "finish": "the rotation is complete on this host",
    "cancel": "this host accepts only its current password again",
}


def _encrypted(paths: Paths) -> None:
    denied = PrivilegeError(f"weave rotate-password needs to read and write {paths.run_dir}",
                            "run it with sudo")
    try:
        launched_here = paths.launch_config.exists()
    except PermissionError:
        raise denied from None
    if not launched_here:
        raise NotRunningError("weave has not been launched on this host",
                              "launch it with --password-file first")
    if not os.access(paths.run_dir, os.W_OK | os.X_OK) or not os.access(
            paths.launch_config, os.R_OK):
        raise denied
    try:
        launched = json.loads(paths.launch_config.read_text())
    except (OSError, ValueError):
        raise NotRunningError("weave has not been launched on this host",
                              "launch it with --password-file first") from None
    if not launched.get("encrypted") or not paths.password_file.exists():
        raise RotationError("this network has no password, so there is none to rotate",
                            "launch every router with --password-file to encrypt it")


def _step(name: str, change: Callable[[Paths], None]) -> None:
    from weave_cli.client import RouterClient
    from weave_cli.commands.launch import running_pid

    paths = Paths.from_env()
    _encrypted(paths)
    if running_pid(paths) is None:  # a later 'weave launch' names one password anew
        raise NotRunningError("weave is not running on this host",
                              "launch it with the password the other hosts send with, then "
                              "run the steps they have taken")
    change(paths)
    try:
        answer = RouterClient(paths, timeout=10.0).call("POST", "/password/reload").text.strip()
    except NotRunningError:  # between two lives under the supervisor, which reads the files
        answer = "the router is restarting; it reads the new files as it starts"
    print(f"{name}: {answer}")
    print(NEXT_STEP[name], file=sys.stderr)


@app.command()
def begin(password: NewPasswordOpt = None, password_file: NewPasswordFileOpt = None) -> None:
    """Accept the NEW password besides the current one (this host still sends with the
    current one). The new password comes from --password-file, WEAVE_PASSWORD or --password."""
    from weave_cli.crypto.password import choose_password
    from weave_cli.router import rotation

    new = choose_password(password, password_file, os.environ,
                          lambda text: print(text, file=sys.stderr))
    if new is None:
        raise RotationError("no new password given",
                            "give it with --password-file (or WEAVE_PASSWORD)")
    _step("begin", lambda paths: rotation.begin(paths, new))


@app.command()
def switch() -> None:
    """Send with the new password; keep accepting the previous one."""
    from weave_cli.router import rotation

    _step("switch", rotation.switch)


@app.command()
def finish() -> None:
    """Stop accepting the previous password; connections still keyed with it are redialled."""
    from weave_cli.router import rotation

    _step("finish", rotation.finish)


@app.command()
def cancel() -> None:
    """Undo 'begin' on this host: stop accepting the next password. Only while no host has
    switched yet (a switched host sends with the next password)."""
    from weave_cli.router import rotation

    _step("cancel", rotation.cancel)
