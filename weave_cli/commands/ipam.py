"""``weave rmpeer`` and ``weave prime``, and the hand-over that ``weave reset`` does first.

All three call the router's IPAM routes (``weave_cli/router/http_ipam.py``) on the control
socket. The router answers text/plain; its HTTP status says what happened, and ``ipam_error``
turns it into the error whose exit code lets scripts tell the outcomes apart:

    404  IPAMDisabledError     14  IPAM is off (--ipalloc-range ''), or the peer is unknown
    409  IPAMConflictError     12  rmpeer saw a range claimed by two peers (rmpeer ran twice?)
    503  IPAMUnavailableError  13  not ready within --ipalloc-timeout; the body is the status words
    else RouterError            6  refused (400: e.g. rmpeer of a peer that is still connected)

The message is always the router's body; the hint says what to do from this side.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from weave_cli.errors import (
    IPAMConflictError,
    IPAMDisabledError,
    IPAMUnavailableError,
    NotRunningError,
    PrivilegeError,
    RouterError,
    TimeoutError_,
    UsageError,
    WeaveError,
)
from weave_cli.names import Paths

if TYPE_CHECKING:
    from pathlib import Path

    from weave_cli.client import Response, RouterClient

PRIME_TIMEOUT = 3660.0
"""How long ``prime`` waits for ``GET /ring``: longer than the largest --ipalloc-timeout the
router accepts (3600 s), so the router's 503 with its status words, not our socket timeout,
ends a wait that fails."""

_BY_STATUS: dict[int, type[RouterError]] = {
    404: IPAMDisabledError,
    409: IPAMConflictError,
    503: IPAMUnavailableError,
}
# rmpeer over several peers exits with the code of the first of these it met, in this order.
_SEVERITY: tuple[type[RouterError], ...] = (
    IPAMConflictError, RouterError, IPAMUnavailableError, IPAMDisabledError,
)

REFUSED_HINT = "to remove a live host, run 'weave reset' on it: that hands its ranges over"
FORCE_HINT = (
    "this host's IP ranges are then lost to the cluster until 'weave rmpeer' on another host"
)
FORCE_ADVICE = f"use 'weave reset --force' to reset anyway ({FORCE_HINT})"


def ipam_error(resp: Response, hint: str = "") -> RouterError:
    """The error for a non-2xx answer of an IPAM route, carrying the router's message."""
    message = resp.text.strip() or f"router answered HTTP {resp.status}"
    return _BY_STATUS.get(resp.status, RouterError)(message, hint)


def check_peer(peer: str) -> None:
    """A PEER for rmpeer is a peer name (six hex pairs) or a nickname; else UsageError."""
    from weave_cli.router.peer import PeerName, valid_nickname

    try:
        PeerName.parse(peer)
    except ValueError:
        if not valid_nickname(peer):
            raise UsageError(
                f"invalid peer {peer[:80]!r}",
                "give a peer name (like 4a:0f:f6:ec:1c:93) or a nickname (letters, digits, "
                "'.', '_', '-'; at most 64), as 'weave status ipam' shows them",
            ) from None


def _warn(err: WeaveError) -> None:
    """One error line on stderr in the form ``weave_cli.main`` uses, for a run that goes on."""
    print(f"weave: {err.message}" + (f"; {err.hint}" if err.hint else ""), file=sys.stderr)


def _rmpeer_one(client: RouterClient, peer: str) -> RouterError | None:
    """DELETE /peer/PEER: prints the router's answer; returns the failure, if any."""
    from urllib.parse import quote

    resp = client.request("DELETE", "/peer/" + quote(peer, safe=""))
    if resp.text.strip() and resp.status in (200, 409):
        sys.stdout.write(resp.text.rstrip("\n") + "\n")  # the takeover happened, even on 409
    if 200 <= resp.status < 300:
        return None
    if resp.status == 409:
        return IPAMConflictError(
            f"rmpeer {peer}: an IP range is now claimed by two peers",
            "was rmpeer run for this peer on more than one host? see 'weave status ipam'",
        )
    if resp.status == 404:
        return ipam_error(resp, "'weave status ipam' lists the peers that own IP ranges")
    return ipam_error(resp, REFUSED_HINT if resp.status == 400 else "")


def rmpeer(
    peers: Annotated[
        list[str],
        typer.Argument(help="Dead peers: peer name or nickname.", show_default=False),
    ],
) -> None:
    """Take over the IP ranges of dead PEERs. Run it on ONE host only for each dead peer:
    two hosts taking over the same peer claim its ranges twice (exit 12)."""
    from weave_cli.client import RouterClient

    for peer in peers:
        check_peer(peer)
    client = RouterClient()
    failures = []
    for peer in peers:
        err = _rmpeer_one(client, peer)
        if err is not None:
            _warn(err)
            failures.append(err)
    if failures:
        worst = min(failures, key=lambda e: _SEVERITY.index(type(e)))
        raise typer.Exit(worst.exit_code)


def prime() -> None:
    """Wait until the IP address ring exists, forming it by consensus if needed."""
    from weave_cli.client import RouterClient

    resp = RouterClient(timeout=PRIME_TIMEOUT).request("GET", "/ring")
    if not 200 <= resp.status < 300:
        raise ipam_error(
            resp,
            "the ring forms once enough peers are connected: see 'weave status' and "
            "'weave status ipam'" if resp.status == 503 else "",
        )


def hand_over(paths: Paths, force: bool) -> None:
    """``reset``'s first step: ``DELETE /peer`` gives our ranges to a live peer, so they are
    not stranded when this host goes. IPAM off (404) is fine. Any other failure stops the reset
    unless ``force``, and so does no router while ``ipam.db`` holds ranges this host owns."""
    from weave_cli.client import RouterClient

    try:
        resp = RouterClient(paths).request("DELETE", "/peer")
    except NotRunningError:
        sock = paths.socket
        if _exists(sock) and not os.access(sock, os.R_OK | os.W_OK):
            raise  # permission denied, not "not running"
        if not force and _exists(paths.ipam_db):
            raise NotRunningError(
                "weave is not running; unable to remove from cluster",
                f"re-launch weave before reset, or use --force to override ({FORCE_HINT})",
            ) from None
        return
    except TimeoutError_ as hung:
        if not force:
            raise TimeoutError_(hung.message, FORCE_ADVICE) from None
        _warn(hung)
        return
    if 200 <= resp.status < 300:
        if resp.text.strip():
            print(resp.text.strip())
        return
    if resp.status == 404:
        return  # IPAM is off: nothing to hand over
    err = ipam_error(resp)
    if force:
        _warn(err)
        return
    raise type(err)(f"could not hand this host's IP ranges over: {err.message}", FORCE_ADVICE)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except PermissionError:
        raise PrivilegeError(
            f"cannot look into {path.parent}: permission denied", "run as root (sudo)"
        ) from None
