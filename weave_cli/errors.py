"""The one error hierarchy of weave. Every failure an operator can meet is one of these.

    WeaveError                 base; carries ``exit_code`` and a one-line ``hint`` (what to do)
    ├── UsageError             bad command-line input (option, CIDR, template)        exit 2
    │   ├── InvalidPeerError   a PEER that is not host[:port]                         exit 10
    │   ├── InvalidPortError   a port outside 1..65535                                exit 11
    │   └── RotationError      a password-rotation step out of order              exit 19
    ├── NotRunningError        no router answers on this host                         exit 3
    ├── AlreadyRunningError    `launch` while a router is running                     exit 4
    ├── StateError             state/run dir unusable (permissions, corruption)       exit 5
    ├── RouterError            the router answered with an error                      exit 6
    │   ├── IPAMConflictError  rmpeer found the same range claimed twice              exit 12
    │   ├── IPAMUnavailableError  IPAM not ready in time (503, status words)          exit 13
    │   └── IPAMDisabledError  IPAM is off (--ipalloc-range '') or unknown (404)      exit 14
    ├── ProtocolError          hostile or malformed bytes from the network            (internal)
    ├── KubeConfigError        no usable Kubernetes API config (env, token, CA file)  exit 20
    ├── KubeRequestError       one Kubernetes API request failed; retried             (internal)
    ├── LabError               the test lab could not be built or driven              exit 7
    ├── PrivilegeError         the command needs root                                 exit 8
    └── TimeoutError_          something did not become ready in time                 exit 9

Foreign exceptions (OSError, pyroute2, aiohttp, docker) are translated into these at the
boundary that calls the foreign code; the CLI turns them into a message and an exit code in
``weave_cli.main`` only, so no traceback ever reaches an operator.
"""

from __future__ import annotations


class WeaveError(Exception):
    """Base of every weave error: ``str(err)`` is the one-line message, ``hint`` the fix."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(WeaveError):
    exit_code = 2


class RotationError(UsageError):
    """A ``weave rotate-password`` step that does not follow from the current phase."""

    exit_code = 19


class NotRunningError(WeaveError):
    exit_code = 3


class AlreadyRunningError(WeaveError):
    exit_code = 4


class StateError(WeaveError):
    exit_code = 5


class RouterError(WeaveError):
    exit_code = 6


class ProtocolError(WeaveError):
    """Malformed or hostile input on a mesh connection; closes that connection only."""

    exit_code = 1


class KubeConfigError(WeaveError):
    """The Kubernetes API server cannot be configured: not in a pod, or the token or CA file is
    missing or unusable. The message names the file, never the token's content."""

    exit_code = 20


class KubeRequestError(WeaveError):
    """One request to the Kubernetes API failed (HTTP status, garbage, oversized body). Never
    reaches an operator: the informer logs it, backs off and retries. ``status`` is the HTTP
    status, or an ERROR event's code, when there was one (410: the resource version is gone)."""

    exit_code = 1

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabError(WeaveError):
    exit_code = 7


class PrivilegeError(WeaveError):
    exit_code = 8


class TimeoutError_(WeaveError):
    exit_code = 9


class InvalidPeerError(UsageError):
    """A PEER argument is not host[:port]."""

    exit_code = 10


class InvalidPortError(UsageError):
    """A port is not a number in 1..65535."""

    exit_code = 11


class IPAMConflictError(RouterError):
    """The router reported that two peers claimed the same address range (double rmpeer)."""

    exit_code = 12


class IPAMUnavailableError(RouterError):
    """IPAM could not answer in time; the message is its status words, e.g. awaiting consensus."""

    exit_code = 13


class IPAMDisabledError(RouterError):
    """IP address allocation is disabled on this router, or the thing asked for is unknown."""

    exit_code = 14
