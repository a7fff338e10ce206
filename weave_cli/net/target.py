"""TARGET words, IPAM idents and the names an attachment leaves in the kernel. Pure.

TARGET forms::

    ns:NAME     the named network namespace /run/netns/NAME (``ip netns add NAME``)
    pid:N       the network namespace process N is in
    anything else: a Docker container id or name (through the Docker API)

**Idents** (the IPAM owner of a target's addresses) are derived from the target so that the
same namespace always gets the same addresses back, and so that ``detach`` can free them even
after the namespace is gone: ``ns:NAME`` for a named namespace, also when reached through
``pid:N`` (a named namespace with the same inode wins); ``netns:<inode>`` for an unnamed
namespace of a process; the full container id for Docker. NAME must be an IPAM-safe word
(letters, digits, ``_.@-``), which every name ``ip netns add`` is normally given is.

**Kernel names.** The host end of the veth is ``vethwepl`` + the target namespace's inode in
base 36, padded to 7 characters: inodes of live namespaces are unique and below 2**32 (< 36**7),
so the name is unique per namespace, fits IFNAMSIZ (15), and "is this namespace attached?" is
one lookup. The container end is ``ethwe``, created directly inside the target namespace. The
host end's alias records ``weave-attached <ident> <namespace path>`` so ``ps``, ``detach`` and
``reset`` recover the ident and find the namespace without any state file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from weave_cli.errors import UsageError
from weave_cli.names import VETH_ALIAS_TAG, VETH_HOST_PREFIX

TargetKind = Literal["ns", "pid", "docker"]
NS_NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,120}")
DOCKER_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
INODE_DIGITS = 7
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
TARGET_HELP = "TARGET is ns:NAME (a named network namespace), pid:N, or a Docker container"


@dataclass(frozen=True)
class Target:
    """A parsed TARGET word."""

    kind: TargetKind
    value: str

    def __str__(self) -> str:
        return self.value if self.kind == "docker" else f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class NetnsRef:
    """A resolved target: the namespace's path and inode, and the IPAM ident it is filed under.

    ``path`` is what can be opened to enter the namespace (``/run/netns/NAME`` or
    ``/proc/PID/ns/net``); ``label`` is how messages name the target.
    """

    path: str
    inode: int
    ident: str
    label: str

    @property
    def host_veth(self) -> str:
        return host_veth_name(self.inode)


def parse_target(word: str) -> Target:
    if word.startswith("ns:"):
        name = word[3:]
        if not NS_NAME_RE.fullmatch(name) or name in (".", ".."):
            raise UsageError(
                f"invalid namespace name {name!r}",
                "use letters, digits and _.@- (the name under /run/netns)",
            )
        return Target("ns", name)
    if word.startswith("pid:"):
        text = word[4:]
        if not text.isdigit() or int(text) <= 0 or len(text) > 10:
            raise UsageError(f"invalid process id {text!r}", "e.g. pid:1234")
        return Target("pid", str(int(text)))
    if not DOCKER_REF_RE.fullmatch(word):
        raise UsageError(f"invalid target {word!r}", TARGET_HELP)
    return Target("docker", word)


def ns_ident(name: str) -> str:
    return f"ns:{name}"


def inode_ident(inode: int) -> str:
    return f"netns:{inode}"


def display_ident(ident: str) -> str:
    """How ``weave ps`` shows an ident: Docker ids cut to 12 like the original, others whole."""
    if re.fullmatch(r"[0-9a-f]{64}", ident):
        return ident[:12]
    return ident


def host_veth_name(inode: int) -> str:
    """``vethwepl`` + the inode in base 36, zero-padded to 7 characters."""
    if not 0 < inode < 36**INODE_DIGITS:
        raise ValueError(f"namespace inode {inode} out of range")
    digits = ""
    value = inode
    while value:
        value, rem = divmod(value, 36)
        digits = ALPHABET[rem] + digits
    return VETH_HOST_PREFIX + digits.rjust(INODE_DIGITS, "0")


def inode_of_veth(name: str) -> int | None:
    """The inode a host veth name encodes, or None for names that are not ours."""
    suffix = name[len(VETH_HOST_PREFIX):]
    if not name.startswith(VETH_HOST_PREFIX) or len(suffix) != INODE_DIGITS:
        return None
    if any(ch not in ALPHABET for ch in suffix):
        return None
    return int(suffix, 36) or None


def make_alias(ident: str, path: str) -> str:
    return f"{VETH_ALIAS_TAG} {ident} {path}"


def parse_alias(alias: str | None) -> tuple[str, str] | None:
    """(ident, namespace path) from a host veth's alias, or None if it is not ours."""
    parts = (alias or "").split(" ")
    if len(parts) != 3 or parts[0] != VETH_ALIAS_TAG or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
