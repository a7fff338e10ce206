"""What ``MeshCore`` needs to know about encryption and trusted subnets, kept out of mesh.py.

* ``new_handshake``: one ``Handshake`` per connection when the router has a password key,
  keyed from ``entropy`` (the router passes ``os.urandom``; the simulation a seeded source).
* ``rests_on_dropped_key``: after a rotation step, whether a connection still depends on a
  password that is no longer accepted (it is closed and redialled).
* ``trusted``: whether an address lies in our ``--trusted-subnets``; we tell the peer in the
  ``Trusted`` feature (sent only when subnets are configured, so plaintext-mode bytes do not
  change). Sealed with the rest of FEATURES, an on-path attacker cannot forge it.
* ``data_plaintext``: a link's data path may skip encryption only when *both* ends trust the
  other; the control connection stays encrypted either way.
* ``crypto_attrs``: the status attributes of a connection (``encrypted``, ``data_plaintext``,
  during a rotation ``peer_password``),
  kept apart from the overlay's ``Conn.extra`` and merged when rendered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Final

from weave_cli.crypto.handshake import PRIVATE_SIZE, Handshake, PasswordKeys
from weave_cli.router.mesh_types import Conn

TRUSTED: Final = "Trusted"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_subnets(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs as networks (raises ValueError on a bad one; host bits are ignored)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def trusted(subnets: Sequence[Network], host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in subnets)


def local_features(subnets: Sequence[Network], host: str) -> dict[str, str]:
    """Our per-connection extra features: ``Trusted`` only when subnets are configured."""
    return {TRUSTED: "true" if trusted(subnets, host) else "false"} if subnets else {}


def new_handshake(keys: PasswordKeys | None, entropy: Callable[[int], bytes],
                  outbound: bool) -> Handshake | None:
    if keys is None:
        return None
    return Handshake(keys, entropy(PRIVATE_SIZE), outbound=outbound)


def rests_on_dropped_key(old: PasswordKeys, new: PasswordKeys, c: Conn) -> bool:
    """Whether a rotation step from ``old`` to ``new`` must close the connection: it was keyed
    with a password ``new`` no longer accepts (either direction), or it is still in its
    handshake while a key was dropped (its candidates, made under ``old``, could yet open a
    frame under that key)."""
    if c.proto.state == "handshake":
        return not all(new.accepts(k) for k in old.accepted)
    session = c.proto.session
    used = session.keys_used if session is not None else ()
    return not all(new.accepts(k) for k in used)


def data_plaintext(subnets: Sequence[Network], c: Conn) -> bool:
    """Both ends trust each other (needs the handshake: ``c.remote`` set)."""
    return (c.remote is not None and trusted(subnets, c.address[0])
            and c.remote.features.get(TRUSTED) == "true")


def crypto_attrs(c: Conn, keys: PasswordKeys | None = None) -> dict[str, object]:
    """``encrypted``, ``data_plaintext``, and during a rotation ``peer_password``: which of
    our two passwords the peer seals with when it is not the one we send with ("next" or
    "previous"), so an operator sees which links still wait for a step."""
    if c.remote is None or not c.proto.encrypted:
        return {}
    attrs: dict[str, object] = {"encrypted": True}
    if c.data_plaintext:
        attrs["data_plaintext"] = True
    session = c.proto.session
    if keys is not None and keys.also is not None and session is not None \
            and len(session.keys_used) == 2 and session.keys_used[1] == keys.also:
        attrs["peer_password"] = "next" if keys.rotation == "begun" else "previous"
    return attrs


def link_secret(c: Conn) -> bytes:
    """The sleeve's secret for this link; b"" when its data path is plaintext."""
    return b"" if c.data_plaintext else c.proto.link_secret
