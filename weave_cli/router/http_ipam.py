"""IPAM's HTTP routes, in the original's shape (text/plain bodies), on the full API only.

    POST   /ip/{id}                 allocate in the default subnet  -> 200 "10.32.0.1/12"
    POST   /ip/{id}/{net}/{len}     allocate in that subnet
    PUT    /ip/{id}/{ip}/{len}      claim (?noErrorOnUnknown=true)   -> 204
    GET    /ip/{id}[/{net}/{len}]   the id's CIDRs, space-separated  (404 if none)
    GET    /ip                      {"owned": [{"containerid": ..., "addrs": [...]}]}
    DELETE /ip/{id}[/{ip}]          free                             -> 204
    GET    /ring                    wait until the ring exists (prime)
    GET    /ipinfo/defaultsubnet
    DELETE /peer                    hand all our space to a live peer (reset)
    DELETE /peer/{name-or-nick}     rmpeer -> "<N> IPs taken over from <peer>" (409 on conflict)

Status codes: 400 bad input or a refused request (the reason as body), 404 IPAM disabled or
unknown, 409 conflict, 503 with the IPAM status words when a request waited
``--ipalloc-timeout``. ``?check-alive=true`` is accepted where the original took it; liveness
is checked only where a container runtime is attached (none is in this mode).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from weave_cli.errors import IPAMDisabledError, IPAMUnavailableError, UsageError, WeaveError
from weave_cli.ipam.address import CIDR
from weave_cli.ipam.service import IPAMService

IDENT_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
DISABLED = "IP address allocation is disabled on this router (--ipalloc-range '')"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, body: str) -> web.Response:
    if body and not body.endswith("\n"):
        body += "\n"
    return web.Response(status=status, text=body, content_type="text/plain")


def _ident(request: web.Request) -> str:
    ident = request.match_info["id"]
    if not IDENT_RE.match(ident):
        raise UsageError(f"invalid container id {ident[:80]!r}: letters, digits, _.:@- (<= 128)")
    return ident


def _cidr(request: web.Request, subnet: bool) -> CIDR | None:
    if "net" not in request.match_info:
        return None
    text = f"{request.match_info['net']}/{request.match_info['len']}"
    try:
        return CIDR.parse_subnet(text) if subnet else CIDR.parse(text)
    except ValueError as err:
        raise UsageError(str(err)) from None


class IPAMRoutes:
    def __init__(self, service: IPAMService | None) -> None:
        self.service = service

    def _guard(self, fn: Callable[[IPAMService, web.Request], Awaitable[web.Response]]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if self.service is None:
                return _text(404, DISABLED)
            try:
                return await fn(self.service, request)
            except IPAMUnavailableError as err:
                return _text(503, err.message)
            except IPAMDisabledError as err:
                return _text(404, err.message)
            except WeaveError as err:
                return _text(400, err.message)

        return handler

    async def allocate(self, svc: IPAMService, request: web.Request) -> web.Response:
        return _text(200, await svc.allocate(_ident(request), _cidr(request, subnet=True)))

    async def claim(self, svc: IPAMService, request: web.Request) -> web.Response:
        cidr = _cidr(request, subnet=False)
        assert cidr is not None
        unknown_ok = request.query.get("noErrorOnUnknown") == "true"
        await svc.claim(_ident(request), cidr, unknown_ok)
        return web.Response(status=204)

    async def lookup(self, svc: IPAMService, request: web.Request) -> web.Response:
        cidrs = await svc.lookup(_ident(request), _cidr(request, subnet=True))
        if not cidrs:
            return _text(404, f"no addresses for {request.match_info['id']}")
        return _text(200, " ".join(cidrs))

    async def owned(self, svc: IPAMService, _request: web.Request) -> web.Response:
        owned = await svc.owned()
        doc = {"owned": [{"containerid": i, "addrs": a} for i, a in sorted(owned.items())]}
        return web.Response(text=json.dumps(doc), content_type="application/json")

    async def free(self, svc: IPAMService, request: web.Request) -> web.Response:
        addr = request.match_info.get("ip")
        if addr is not None:
            try:
                CIDR.parse(addr if "/" in addr else addr + "/32")
            except ValueError as err:
                raise UsageError(str(err)) from None
        await svc.free(_ident(request), addr)
        return web.Response(status=204)

    async def ring(self, svc: IPAMService, _request: web.Request) -> web.Response:
        await svc.wait_ring()
        return _text(200, "")

    async def default_subnet(self, svc: IPAMService, _request: web.Request) -> web.Response:
        return _text(200, str(svc.alloc.default_subnet))

    async def handoff(self, svc: IPAMService, _request: web.Request) -> web.Response:
        moved, heir = await svc.handoff()
        if not heir:
            return _text(200, "no other peer to hand our IP ranges to")
        return _text(200, f"{moved} IPs handed over to {heir}")

    async def rmpeer(self, svc: IPAMService, request: web.Request) -> web.Response:
        who = request.match_info["peer"]
        if len(who) > 64:
            raise UsageError("peer name or nickname too long")
        count, name, conflicts = await svc.rmpeer(who)
        lines = [f"{count} IPs taken over from {who}"]
        lines += [f"conflict: {c}" for c in conflicts]
        return _text(409 if conflicts else 200, "\n".join(lines))

    def add_to(self, app: web.Application) -> None:
        r, g = app.router, self._guard
        r.add_post("/ip/{id}", g(self.allocate))
        r.add_post("/ip/{id}/{net}/{len}", g(self.allocate))
        r.add_put("/ip/{id}/{net}/{len}", g(self.claim))
        r.add_get("/ip", g(self.owned))
        r.add_get("/ip/{id}", g(self.lookup))
        r.add_get("/ip/{id}/{net}/{len}", g(self.lookup))
        r.add_delete("/ip/{id}", g(self.free))
        r.add_delete("/ip/{id}/{ip}", g(self.free))
        r.add_get("/ring", g(self.ring))
        r.add_get("/ipinfo/defaultsubnet", g(self.default_subnet))
        r.add_delete("/peer", g(self.handoff))
        r.add_delete("/peer/{peer}", g(self.rmpeer))
