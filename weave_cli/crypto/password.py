"""Where the mesh password comes from, and how it reaches the router without being seen.

Sources, in order (two explicit ones together are an error):

* ``--password-file PATH``: the file's content, one trailing newline stripped; a warning when
  the file is group- or world-readable;
* ``--password VALUE``: works, with a warning, since every user of the host can read a
  process's command line;
* ``WEAVE_PASSWORD``: the environment of the ``weave`` command (never passed on to the router).

The CLI writes it to ``Paths.password_file`` ($WEAVE_RUN_DIR/password, mode 0600, never in
launch.json) and the router reads it there at every start (supervisor restarts included),
derives the scrypt key once and keeps only that. Throughout, it travels as a ``Secret``,
so no repr, log line, report or traceback can show it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from weave_cli.crypto.kdf import MAX_PASSWORD
from weave_cli.crypto.secret import Secret
from weave_cli.errors import UsageError

ENV_VAR: Final = "WEAVE_PASSWORD"
ARGV_WARNING: Final = ("warning: --password is visible to every user of this host in the "
                       "process list; use --password-file or WEAVE_PASSWORD instead")


def _checked(raw: bytes, where: str) -> Secret:
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if not raw:
        raise UsageError(f"the password from {where} is empty", "give a non-empty password")
    if len(raw) > MAX_PASSWORD:
        raise UsageError(f"the password from {where} is longer than {MAX_PASSWORD} bytes",
                         "use a shorter password")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the password from {where} is not UTF-8 text",
                         "use a text password") from None
    return Secret(raw)


def read_password_file(path: Path, warn: Callable[[str], None]) -> Secret:
    """The password in ``path``; warns through ``warn`` when others may read the file."""
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            raw = fh.read(MAX_PASSWORD + 3)
    except OSError as err:
        raise UsageError(f"cannot read the password file {path}: {err.strerror or err}",
                         "check --password-file") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"warning: the password file {path} is readable by other users "
             f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    return _checked(raw, str(path))


def choose_password(password: str | None, password_file: str | None,
                    env: Mapping[str, str], warn: Callable[[str], None]) -> Secret | None:
    """The password to use, or None for a plaintext network."""
    if password is not None and password_file is not None:
        raise UsageError("--password and --password-file cannot be combined",
                         "give the password once, preferably with --password-file")
    if password_file is not None:
        return read_password_file(Path(password_file), warn)
    if password is not None:
        warn(ARGV_WARNING)
        return _checked(password.encode("utf-8"), "--password")
    if env.get(ENV_VAR):
        return _checked(env[ENV_VAR].encode("utf-8"), ENV_VAR)
    return None


def load_router_password(path: Path) -> Secret:
    """The router's side: the 0600 file the CLI wrote (raises UsageError when it is gone)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"encryption is on but the password file {path} cannot be read: "
                         f"{err.strerror or err}", "run 'weave launch' again") from None
    return _checked(raw, str(path))
