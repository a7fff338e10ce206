"""The router's HTTP API, in the original's shape.

Two listeners share these routes:
- the control socket $WEAVE_RUN_DIR/weave.sock (mode 0600): everything, including what changes
  state (POST /connect, /forget; later /ip, /expose, /peer);
- the status address (127.0.0.1:6782 by default): read-only GET /status*, /report.
``--http-addr`` adds a TCP listener with the full API, only when asked for.

This module is the only place that maps domain errors to HTTP statuses: a ``UsageError`` is
400 with its message as the text body, an unknown status view is 404. Bodies are text/plain
as in the original, except /report which is JSON. Request bodies are capped before parsing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from weave_cli.errors import UsageError, WeaveError

if TYPE_CHECKING:
    from weave_cli.router.http_ipam import IPAMRoutes

log = logging.getLogger("weave.http")
MAX_BODY = 64 * 1024
MAX_PEERS_PER_REQUEST = 1024
STATUS_VIEWS = ("peers", "connections", "targets", "ipam")
FULL_API = web.AppKey("full_api", bool)

Report = Callable[[], Awaitable[dict[str, Any]]]
PeerCall = Callable[[list[str], bool], Awaitable[None]]
Reload = Callable[[], Awaitable[str]]


class Handlers:
    """Route handlers over the callables supplied by the daemon."""

    def __init__(
        self, report: Report, connect: PeerCall, forget: PeerCall, ipam: IPAMRoutes | None = None,
        reload_password: Reload | None = None,
    ) -> None:
        self.report, self.connect_peers, self.forget_peers = report, connect, forget
        self.ipam = ipam  # an http_ipam.IPAMRoutes, whose routes join the full API
        self.reload_password = reload_password  # re-read the password files (a rotation step)

    async def status(self, request: web.Request) -> web.Response:
        from weave_cli import render

        report = await self.report()
        view = request.match_info.get("view")
        if view is None:
            text = render.render_status(report)
        elif view == "peers":
            text = render.render_peers(report)
        elif view == "connections":
            text = render.render_connections(report)
        elif view == "targets":
            text = render.render_targets(report)
        elif view == "ipam" and report.get("IPAM"):
            text = render.render_ipam(report)
        else:
            return _text(404, f"Invalid 'weave status' sub-command: {view}")
        return _text(200 if report.get("Ready") else 503, text)

    async def report_route(self, request: web.Request) -> web.Response:
        template = request.query.get("format")
        if template is not None and not request.app[FULL_API]:
            return _text(400, "templates are served on the control socket only")
        report = await self.report()
        if template is None:
            return web.Response(
                status=200, text=json.dumps(report, indent=2), content_type="application/json"
            )
        from weave_cli.template import render_template

        try:
            return _text(200, render_template(template, report))
        except UsageError as err:
            return _text(400, err.message)

    async def _peers(self, request: web.Request) -> tuple[list[str], bool]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise UsageError("request body too large")
        try:
            form = await request.post()
        except ValueError as err:  # a multipart body that is not one, a bad charset...
            raise UsageError(f"malformed form body: {err}") from None
        peers = [str(p) for p in form.getall("peer", [])]
        if len(peers) > MAX_PEERS_PER_REQUEST:
            raise UsageError(f"too many peers (at most {MAX_PEERS_PER_REQUEST})")
        from weave_cli.config import parse_peer

        for peer in peers:
            parse_peer(peer)
        return peers, form.get("replace") == "true"

    async def connect(self, request: web.Request) -> web.Response:
        try:
            peers, replace = await self._peers(request)
            await self.connect_peers(peers, replace)
        except WeaveError as err:
            return _text(400, str(err))
        return _text(200, "")

    async def forget(self, request: web.Request) -> web.Response:
        try:
            peers, _ = await self._peers(request)
            await self.forget_peers(peers, False)
        except WeaveError as err:
            return _text(400, str(err))
        return _text(200, "")

    async def password_reload(self, request: web.Request) -> web.Response:
        """The CLI changed the password files (``weave rotate-password``): take them up. The
        request carries no secret; the router reads the root-only files itself."""
        if self.reload_password is None:
            return _text(409, "this router runs without a password")
        try:
            return _text(200, await self.reload_password())
        except (WeaveError, ValueError) as err:
            return _text(409, str(err))


def _text(status: int, body: str) -> web.Response:
    if body and not body.endswith("\n"):
        body += "\n"
    return web.Response(status=status, text=body, content_type="text/plain")


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def host_is_acceptable(host_header: str) -> bool:
    """A Host a browser could only send for us: loopback names or a literal IP address.

    DNS rebinding makes a browser send a hostile site's *name* to our address; literal IPs and
    loopback names cannot be rebound.
    """
    import ipaddress

    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if host in _LOCAL_HOSTS:
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@web.middleware
async def browser_guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """On TCP listeners: refuse cross-site requests (Origin) and rebound host names (Host)."""
    if "Origin" in request.headers or not host_is_acceptable(request.headers.get("Host", "")):
        return _text(403, "refused: browser or non-local Host header")
    return await handler(request)


def build_app(handlers: Handlers, *, full: bool, tcp: bool = False) -> web.Application:
    """``full`` adds the routes that change state; the status listener gets ``full=False``.

    ``tcp`` adds the browser guard (the unix socket needs none: browsers cannot reach it).
    """
    app = web.Application(client_max_size=MAX_BODY, middlewares=[browser_guard] if tcp else [])
    app[FULL_API] = full
    app.router.add_get("/status", handlers.status)
    app.router.add_get("/status/{view}", handlers.status)
    app.router.add_get("/report", handlers.report_route)
    if full:
        app.router.add_post("/connect", handlers.connect)
        app.router.add_post("/forget", handlers.forget)
        if handlers.ipam is not None:
            handlers.ipam.add_to(app)
        if not tcp:  # the 0600 socket only, never --http-addr
            app.router.add_post("/password/reload", handlers.password_reload)
    return app
