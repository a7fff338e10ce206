"""Password rotation without splitting the network: the password files and the steps.

A router seals its frames with one password and accepts one more during a rotation
(``PasswordKeys``). The files, in the run directory, mode 0600, written atomically:

    password            the password we send with (``weave launch`` writes it)
    password.next       phase "begun": the next password, accepted besides the current one
    password.previous   phase "switched": the previous password, still accepted; the new one is
                        now in ``password``

Steps, each run on every host before the next step is run anywhere::

    (none) --begin NEW--> begun --switch--> switched --finish--> (none)
                          begun --cancel--> (none)      (only while no host has switched)

A step already taken is taken again without complaint (``begin`` with the same password,
``switch`` when switched, ``finish``/``cancel`` with nothing to drop), so a step whose reload
did not reach the router can simply be run again.

After ``begin`` everywhere, every router accepts both passwords, so whichever one a peer sends
with is accepted; after ``switch`` everywhere, all send with the new one; ``finish`` stops
accepting the old one (connections still keyed with it are redialled). At no step do two
routers refuse each other. The files are the truth: the router reads them at start (supervisor
restarts included) and on ``POST /password/reload``. A crash inside ``switch`` leaves
``password`` already new and both others present; the next ``switch`` completes it and the
loader accepts every password present meanwhile (the send key is always ``password``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from weave_cli.crypto.handshake import PasswordKeys, Rotation
from weave_cli.crypto.password import load_router_password
from weave_cli.crypto.secret import Secret
from weave_cli.errors import RotationError
from weave_cli.names import Paths
from weave_cli.render import ROTATION_TEXT
from weave_cli.router import state

NEXT: Final[Rotation] = "begun"
PREVIOUS: Final[Rotation] = "switched"


def _other(paths: Paths) -> tuple[Rotation, Secret | None]:
    """The phase and the second accepted password; a file holding the send password counts
    as absent (so a ``switch`` cut short reads as the phase it really is in)."""
    send = load_router_password(paths.password_file)
    order: tuple[tuple[Rotation, Path], ...] = ((PREVIOUS, paths.password_previous_file),
                                               (NEXT, paths.password_next_file))
    for label, path in order:
        if path.exists() and (other := load_router_password(path)) != send:
            return label, other
    return "", None


def phase(paths: Paths) -> Rotation:
    return _other(paths)[0]


def load_keys(paths: Paths, derive: Callable[[Secret], Secret]) -> PasswordKeys:
    """The router's keys from the files (``derive`` is the slow scrypt, once per password)."""
    send = derive(load_router_password(paths.password_file))
    label, other = _other(paths)
    return PasswordKeys(send) if other is None else PasswordKeys(send, derive(other), label)


def _write(path: Path, secret: Secret) -> None:
    state.write_atomic(path, secret.reveal().decode("utf-8"))


def begin(paths: Paths, new: Secret) -> None:
    """Accept ``new`` besides the current password (still sending with the current one)."""
    current = phase(paths)
    if current == PREVIOUS:
        raise RotationError("a rotation is still being finished on this host",
                            "run 'weave rotate-password finish' first")
    if load_router_password(paths.password_file) == new:
        raise RotationError("the new password is the current one", "give a different password")
    if current == NEXT and load_router_password(paths.password_next_file) != new:
        raise RotationError("a rotation to another password has begun on this host",
                            "run 'weave rotate-password cancel' first, or give the same password")
    _write(paths.password_next_file, new)


def switch(paths: Paths) -> None:
    """Send with the next password; keep accepting the current one as the previous. Again
    after a switch: nothing to change (so a step whose reload failed can be run again)."""
    if not paths.password_next_file.exists():
        if phase(paths) == PREVIOUS:
            return
        raise RotationError("no rotation has begun on this host",
                            "run 'weave rotate-password begin --password-file NEW' first")
    new = load_router_password(paths.password_next_file)
    if load_router_password(paths.password_file) != new:  # not already half done
        _write(paths.password_previous_file, load_router_password(paths.password_file))
        _write(paths.password_file, new)
    state.remove_quietly(paths.password_next_file)


def finish(paths: Paths) -> None:
    """Stop accepting the previous password (nothing to change when none is accepted)."""
    if paths.password_next_file.exists():
        raise RotationError("this host has not switched to the new password yet",
                            "run 'weave rotate-password switch' (after 'begin' on every host)")
    state.remove_quietly(paths.password_previous_file)


def cancel(paths: Paths) -> None:
    """Undo ``begin``: stop accepting the next password. Only while no host has switched: a
    switched host sends with the next password, which a cancelled one refuses."""
    if phase(paths) == PREVIOUS:
        raise RotationError("this host has switched already: there is no begin to cancel",
                            "finish the rotation, then rotate back to the old password with "
                            "'weave rotate-password begin'")
    state.remove_quietly(paths.password_next_file)


def describe(rotation: Rotation) -> str:
    """For the log and the CLI: what the router now accepts and sends with."""
    return f"rotation {ROTATION_TEXT[rotation]}" if rotation in ROTATION_TEXT else ""
