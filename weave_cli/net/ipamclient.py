"""Addresses from IPAM: the ``AddressBook`` protocol, the router's HTTP implementation, and
``obtain``, which turns ADDR specs into addresses and gives back what it took on failure.

The router answers on its control socket (docs/ipam.md): ``POST /ip/<id>[/<net>/<len>]``
allocates, ``PUT /ip/<id>/<ip>/<len>`` claims, ``GET /ip/<id>`` lists, ``DELETE /ip/<id>[/<ip>]``
frees, and ``GET /report`` says whether IPAM is on, its range and default subnet. Statuses
become errors here: 503 ``IPAMUnavailableError`` (the status words), 404 on an allocation
``IPAMDisabledError``, anything else not 2xx ``RouterError`` with the router's message.
Tests pass an in-memory book instead.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Protocol

from weave_cli.client import Response, RouterClient
from weave_cli.errors import IPAMDisabledError, IPAMUnavailableError, RouterError
from weave_cli.net.addrspec import AddrSpec, IPAMView

ALLOC_TIMEOUT = 60.0  # the router gives up first (--ipalloc-timeout, 30 s by default)


class AddressBook(Protocol):
    def view(self) -> IPAMView: ...

    def lookup(self, ident: str) -> list[IPv4Interface]: ...

    def allocate(self, ident: str, subnet: IPv4Network | None) -> IPv4Interface: ...

    def claim(self, ident: str, addr: IPv4Interface) -> None: ...

    def free(self, ident: str, ip: IPv4Address | None = None) -> None: ...


def _check(resp: Response) -> Response:
    if 200 <= resp.status < 300:
        return resp
    text = resp.text.strip() or f"router answered HTTP {resp.status}"
    if resp.status == 503:
        raise IPAMUnavailableError(f"IPAM not ready: {text}", "see 'weave status ipam'")
    if resp.status == 404:
        raise IPAMDisabledError(text)
    raise RouterError(text)


class RouterAddressBook:
    """IPAM of the router on this host, over its control socket."""

    def __init__(self, client: RouterClient | None = None) -> None:
        self.client = client or RouterClient()

    def view(self) -> IPAMView:
        doc = _check(self.client.request("GET", "/report")).json()
        ipam = doc.get("IPAM") if isinstance(doc, dict) else None
        if not isinstance(ipam, dict):
            return IPAMView(enabled=False)
        try:
            return IPAMView(True, IPv4Network(ipam["Range"]), IPv4Network(ipam["DefaultSubnet"]))
        except (KeyError, ValueError):
            raise RouterError("the router's report has no usable IPAM range") from None

    def lookup(self, ident: str) -> list[IPv4Interface]:
        resp = self.client.request("GET", f"/ip/{ident}")
        if resp.status == 404:
            return []
        return [IPv4Interface(w) for w in _check(resp).text.split()]

    def allocate(self, ident: str, subnet: IPv4Network | None) -> IPv4Interface:
        url = f"/ip/{ident}" if subnet is None else f"/ip/{ident}/{subnet}"
        resp = self.client.request("POST", url, timeout=ALLOC_TIMEOUT)
        return IPv4Interface(_check(resp).text.strip())

    def claim(self, ident: str, addr: IPv4Interface) -> None:
        _check(self.client.request("PUT", f"/ip/{ident}/{addr}", timeout=ALLOC_TIMEOUT))

    def free(self, ident: str, ip: IPv4Address | None = None) -> None:
        url = f"/ip/{ident}" if ip is None else f"/ip/{ident}/{ip}"
        _check(self.client.request("DELETE", url))


def obtain(
    book: AddressBook, ident: str, specs: list[AddrSpec], view: IPAMView
) -> tuple[list[IPv4Interface], list[IPv4Interface]]:
    """(addresses for the specs, the ones newly taken from IPAM for this call).

    Explicit addresses are claimed (recorded as ``ident``'s) when IPAM is on. On any failure
    the addresses this call took are freed again before the error propagates.
    """
    before = set(book.lookup(ident)) if view.enabled else set()
    got: list[IPv4Interface] = []
    new: list[IPv4Interface] = []
    try:
        for spec in specs:
            if spec.kind == "ip":
                assert spec.address is not None
                if view.enabled:
                    book.claim(ident, spec.address)
                addr = spec.address
            else:
                addr = book.allocate(ident, spec.subnet if spec.kind == "net" else None)
            if addr not in got:
                got.append(addr)
            if view.enabled and addr not in before and addr not in new:
                new.append(addr)
    except BaseException:
        give_back(book, ident, new)
        raise
    return got, new


def give_back(book: AddressBook, ident: str, addrs: list[IPv4Interface]) -> None:
    """Free addresses, best effort (used while another error is on its way out)."""
    for addr in addrs:
        try:
            book.free(ident, addr.ip)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass
