"""Errors of the data path, each with its own exit code (they extend ``weave_cli.errors``).

    WeaveError
    ├── DatapathError        a kernel or firewall change failed (netlink, nft, iptables)  exit 15
    ├── TargetNotFoundError  the namespace, process or container to attach does not exist exit 16
    ├── NotAttachedError     detach/ps of a target (or address) that is not attached      exit 17
    └── AttachConflictError  the target already has something that contradicts the request exit 18

Bad ADDR or TARGET syntax, and addresses outside the IPAM range, are ``UsageError`` (exit 2);
a missing bridge is ``NotRunningError`` (exit 3: launching weave creates it); IPAM refusals
("already in use by ...") are the router's ``RouterError`` (exit 6) with its words.
Foreign exceptions (pyroute2's NetlinkError, OSError, failed nft/iptables runs) become
``DatapathError`` in ``links`` and ``firewall``, the two modules that call foreign code.
"""

from __future__ import annotations

from weave_cli.errors import WeaveError


class DatapathError(WeaveError):
    exit_code = 15


class TargetNotFoundError(WeaveError):
    exit_code = 16


class NotAttachedError(WeaveError):
    exit_code = 17


class AttachConflictError(WeaveError):
    exit_code = 18
