"""The ADDR words of attach, detach, expose and hide, and what they mean against IPAM. Pure.

Forms, as in the original:

    ip:10.32.1.5/24  or  10.32.1.5/24   this exact address (IPAM: claim, PUT /ip/<id>/<ip>/<len>)
    net:10.32.1.0/24                    any free address in that subnet (POST /ip/<id>/<net>/<len>)
    net:default  or  no ADDR at all     any free address in the default subnet (POST /ip/<id>)

For detach and hide the same words *select* among the addresses a target holds: ``ip:`` that
address, ``net:X`` every address inside X, ``net:default`` every address in the default subnet.

Rules checked here, before anything is asked of IPAM or the kernel (each a ``UsageError``):
an explicit address must be a host address (not the subnet's network or broadcast address) and,
when IPAM is on, inside its range; a ``net:`` subnet must be a subnet (no host bits) inside the
range; ``net:`` and allocation need IPAM. A target may hold several addresses, but two in the
same subnet, or one IP with two prefix lengths, are a conflict (``conflicts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from typing import Literal

from weave_cli.errors import UsageError

SpecKind = Literal["ip", "net", "default"]
NEED_IPAM = "IP address allocation must be enabled to use 'net:'"


@dataclass(frozen=True)
class AddrSpec:
    """One ADDR word: an exact address, a subnet to allocate in, or the default subnet."""

    kind: SpecKind
    address: IPv4Interface | None = None
    subnet: IPv4Network | None = None

    def __str__(self) -> str:
        if self.kind == "ip":
            return f"ip:{self.address}"
        return f"net:{self.subnet}" if self.kind == "net" else "net:default"


DEFAULT = AddrSpec("default")


@dataclass(frozen=True)
class IPAMView:
    """What the router's IPAM says about addresses: on or off, its range and default subnet."""

    enabled: bool
    range: IPv4Network | None = None
    default_subnet: IPv4Network | None = None


def parse_addr(word: str) -> AddrSpec:
    """One ADDR word, or a UsageError saying which forms exist."""
    if word == "net:default":
        return DEFAULT
    if word.startswith("net:"):
        return AddrSpec("net", subnet=_subnet(word[4:]))
    text = word[3:] if word.startswith("ip:") else word
    return AddrSpec("ip", address=_host_address(text))


def _subnet(text: str) -> IPv4Network:
    try:
        return IPv4Network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = IPv4Network(text, strict=False)
    except ValueError:
        raise UsageError(
            f"invalid subnet 'net:{text}'", "give a CIDR such as net:10.32.1.0/24"
        ) from None
    raise UsageError(f"net:{text} is not a subnet", f"did you mean net:{loose}?")


def _host_address(text: str) -> IPv4Interface:
    if "/" not in text:
        raise UsageError(
            f"invalid address {text!r}",
            "give a CIDR (ip:10.32.1.5/12), net:SUBNET or net:default",
        )
    try:
        iface = IPv4Interface(text)
    except ValueError:
        raise UsageError(
            f"invalid address {text!r}", "give a CIDR (ip:10.32.1.5/12), net:SUBNET or net:default"
        ) from None
    net = iface.network
    if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
        which = "network" if iface.ip == net.network_address else "broadcast"
        raise UsageError(f"{iface} is the {which} address of {net}", "give a host address")
    return iface


def split_args(words: list[str], usage: str) -> tuple[list[AddrSpec], str]:
    """``[ADDR...] TARGET`` → the parsed ADDRs and the TARGET word."""
    if not words:
        raise UsageError("no target given", usage)
    return [parse_addr(w) for w in words[:-1]], words[-1]


def check_specs(specs: list[AddrSpec], view: IPAMView) -> list[AddrSpec]:
    """The specs to act on (``net:default`` when none), or a UsageError for any bad one."""
    effective = specs or [DEFAULT]
    for spec in effective:
        if spec.kind != "ip" and not view.enabled:
            raise UsageError(NEED_IPAM, "give explicit addresses (ip:CIDR) or launch with IPAM")
        if view.range is None:
            continue
        if spec.address is not None and spec.address.ip not in view.range:
            raise UsageError(
                f"address {spec.address} is outside the weave range {view.range}",
                f"give an address inside {view.range}, or net:SUBNET, or no address",
            )
        if spec.subnet is not None and not spec.subnet.subnet_of(view.range):
            raise UsageError(
                f"subnet {spec.subnet} is outside the weave range {view.range}",
                f"give a subnet of {view.range}",
            )
    seen: set[str] = set()
    unique = []
    for spec in effective:
        if str(spec) not in seen:
            seen.add(str(spec))
            unique.append(spec)
    return unique


def conflicts(held: list[IPv4Interface], wanted: list[IPv4Interface]) -> list[str]:
    """Why adding ``wanted`` to a target holding ``held`` would be wrong (empty: it is fine)."""
    found = []
    for new in wanted:
        for old in held:
            if new == old:
                continue
            if new.ip == old.ip:
                found.append(f"{new.ip} is already there as {old}")
            elif new.network == old.network:
                found.append(f"it already has {old} in {old.network}")
    return found


def missing(held: list[IPv4Interface], wanted: list[IPv4Interface]) -> list[IPv4Interface]:
    """The wanted addresses not held yet, in order, without repeats."""
    out: list[IPv4Interface] = []
    for addr in wanted:
        if addr not in held and addr not in out:
            out.append(addr)
    return out


def select(
    held: list[IPv4Interface], specs: list[AddrSpec], view: IPAMView
) -> tuple[list[IPv4Interface], list[AddrSpec]]:
    """The held addresses the specs name (in held order), and the specs that named none."""
    chosen: list[IPv4Interface] = []
    unmatched = []
    for spec in specs:
        hits = [a for a in held if _matches(a, spec, view)]
        if not hits:
            unmatched.append(spec)
        chosen += [a for a in hits if a not in chosen]
    return [a for a in held if a in chosen], unmatched


def _matches(addr: IPv4Interface, spec: AddrSpec, view: IPAMView) -> bool:
    if spec.kind == "ip":
        return spec.address is not None and addr.ip == spec.address.ip
    subnet = spec.subnet if spec.kind == "net" else view.default_subnet
    return subnet is not None and addr.ip in subnet


def ip_words(addrs: list[IPv4Interface]) -> str:
    """Addresses as the original prints them after attach/expose: IPs, space-separated."""
    return " ".join(str(a.ip) for a in addrs)
