"""Network namespaces: resolving targets, and netlink sockets opened inside a namespace.

``open_ipr(path)`` gives a pyroute2 ``IPRoute`` whose socket lives in the namespace at
``path`` (None: the caller's own). It switches only the calling *thread* into the namespace
with setns(2) for the moment the socket is created, then back; a netlink socket stays bound
to the namespace it was created in. This costs well under a millisecond, where pyroute2's own
``netns=`` forks a helper process (about 10 ms) and creates a missing namespace by default.
Nothing here ever creates or deletes a namespace.

A namespace is identified by the inode of its nsfs file: ``/run/netns/NAME`` (bind-mounted by
``ip netns add``) and ``/proc/PID/ns/net`` show the same inode for the same namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from weave_cli.errors import UsageError
from weave_cli.net.errors import DatapathError, TargetNotFoundError
from weave_cli.net.links import IPRoute
from weave_cli.net.target import NetnsRef, Target, inode_ident, ns_ident

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def inode_of(path: str | Path) -> int | None:
    """The namespace inode at ``path``, or None when nothing (or not a namespace) is there."""
    try:
        st = os.stat(path)
        nsfs = os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return None
    return st.st_ino if st.st_dev == nsfs else None


def own_inode(router_ns: str | None) -> int | None:
    """The inode of the router's namespace (ours when ``router_ns`` is None)."""
    return inode_of(router_ns or "/proc/thread-self/ns/net")


@contextmanager
def entered(path: str | None) -> Iterator[None]:
    """Run the body with this thread inside the namespace at ``path`` (None: stay)."""
    if path is None:
        yield
        return
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise TargetNotFoundError(f"cannot open network namespace {path}: {err.strerror}") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(target)
        except OSError as err:
            raise DatapathError(f"cannot enter network namespace {path}: {err.strerror}") from None
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@contextmanager
def open_ipr(path: str | None) -> Iterator[IPRoute]:
    """An IPRoute bound to the namespace at ``path``; closed on exit."""
    import pyroute2  # type: ignore[import-untyped]

    with entered(path):
        ipr = pyroute2.IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def named_netns(inode: int) -> str | None:
    """The name under /run/netns of the namespace with this inode, if it has one."""
    try:
        names = sorted(os.listdir(NETNS_DIR))
    except OSError:
        return None
    for name in names:
        if inode_of(NETNS_DIR / name) == inode:
            return name
    return None


def find_path(inode: int, hint: str | None = None) -> str | None:
    """A path that opens the namespace with this inode: the hint, a name, or a process's."""
    if hint and inode_of(hint) == inode:
        return hint
    name = named_netns(inode)
    if name is not None:
        return str(NETNS_DIR / name)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and inode_of(f"/proc/{entry}/ns/net") == inode:
            return f"/proc/{entry}/ns/net"
    return None


def resolve(target: Target, router_ns: str | None = None) -> NetnsRef:
    """The namespace a target names, or TargetNotFoundError; never the router's own."""
    if target.kind == "ns":
        path = str(NETNS_DIR / target.value)
        inode = inode_of(path)
        if inode is None:
            raise TargetNotFoundError(
                f"network namespace {target.value!r} does not exist",
                f"create it with 'ip netns add {target.value}' (see 'ip netns list')",
            )
        ref = NetnsRef(path, inode, ns_ident(target.value), str(target))
    elif target.kind == "pid":
        ref = _from_pid(int(target.value), str(target))
    else:
        from weave_cli.net.docker import container_pid

        full_id, pid = container_pid(target.value)
        ref = _from_pid(pid, target.value, ident=full_id)
    if ref.inode == own_inode(router_ns):
        raise UsageError(
            f"{ref.label} is in this host's own network namespace",
            "attach containers with their own namespace; 'weave expose' gives the host an address",
        )
    return ref


def _from_pid(pid: int, label: str, ident: str | None = None) -> NetnsRef:
    path = f"/proc/{pid}/ns/net"
    inode = inode_of(path)
    if inode is None:
        raise TargetNotFoundError(f"no process with id {pid}", "is it still running? (ps -p)")
    if ident is None:
        name = named_netns(inode)
        ident = ns_ident(name) if name is not None else inode_ident(inode)
        if name is not None:
            path = str(NETNS_DIR / name)  # outlives the process
    return NetnsRef(path, inode, ident, label)
