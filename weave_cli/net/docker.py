"""Docker targets: a container id or name → its full id and the pid of its first process.

Only ``attach``/``detach``/``ps`` of a Docker TARGET come here. The daemon is found the usual
way: ``DOCKER_HOST``, else ``unix:///var/run/docker.sock``. For a unix socket or plain
``tcp://`` the one call needed (``GET /containers/{ref}/json``, unversioned, so any engine
answers in its own API version) is made with the standard library: ``weave attach <container>``
then costs no docker SDK import (about 0.4 s of the 1.3 s it took with the SDK). Any other
DOCKER_HOST (TLS, ssh) goes through the docker SDK, imported only then.

``endpoint()`` is shared with the router's Docker events watcher
(``weave_cli.router.docker_events``), so both talk to the same daemon.

Every failure becomes one clear error: no daemon (exit 16), no such container (16), a
container that is not running (16: it has no network namespace), or one that uses the host's
network (``--net host``, exit 2: attaching it would put ``ethwe`` in the host itself).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from weave_cli.errors import UsageError
from weave_cli.net.errors import TargetNotFoundError

TIMEOUT = 10
DEFAULT_SOCKET = "/var/run/docker.sock"
NO_DAEMON = "Docker targets need a Docker daemon, and none answers"
NO_DAEMON_HINT = "start dockerd, or attach a namespace with ns:NAME or pid:N"


@dataclass(frozen=True)
class Endpoint:
    """Where the Docker API is: a unix socket path, or a plain-HTTP host and port."""

    unix_path: str | None = None
    host: str = "localhost"
    port: int = 2375

    def __str__(self) -> str:
        return self.unix_path if self.unix_path else f"tcp://{self.host}:{self.port}"


def endpoint(env: Mapping[str, str] = os.environ) -> Endpoint | None:
    """The daemon's address from ``DOCKER_HOST``; None when only the SDK can reach it (TLS,
    ssh, anything else)."""
    host = env.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if host.startswith("unix://"):
        return Endpoint(unix_path=host[len("unix://"):] or DEFAULT_SOCKET)
    if host.startswith("tcp://") and env.get("DOCKER_TLS_VERIFY", "") in ("", "0"):
        parts = urlsplit(host)
        try:
            port = parts.port or 2375
        except ValueError:
            return None
        return Endpoint(host=parts.hostname or "localhost", port=port)
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _get(ep: Endpoint, path: str) -> tuple[int, Any]:
    """(status, decoded JSON body or None) of one GET; TargetNotFoundError without a daemon."""
    conn: http.client.HTTPConnection
    if ep.unix_path:
        conn = _UnixConnection(ep.unix_path, TIMEOUT)
    else:
        conn = http.client.HTTPConnection(ep.host, ep.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise TargetNotFoundError(f"{NO_DAEMON} at {ep} ({reason})", NO_DAEMON_HINT) from None
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body) if body else None
    except ValueError:
        return resp.status, None


def inspect(ref: str) -> dict[str, Any]:
    """``docker inspect`` of one container by id, id prefix or name."""
    ep = endpoint()
    if ep is None:
        return _inspect_with_sdk(ref)
    status, doc = _get(ep, f"/containers/{quote(ref, safe='')}/json")
    if status == 404:
        raise _not_found(ref)
    if status != 200 or not isinstance(doc, dict):
        message = doc.get("message") if isinstance(doc, dict) else None
        raise TargetNotFoundError(
            f"Docker could not inspect {ref!r}: {message or f'HTTP {status}'}", NO_DAEMON_HINT
        )
    return doc


def container_pid(ref: str) -> tuple[str, int]:
    """(full container id, pid) of a running container that has its own network namespace."""
    doc = inspect(ref)
    state = doc.get("State") or {}
    mode = str((doc.get("HostConfig") or {}).get("NetworkMode") or "")
    pid = int(state.get("Pid") or 0)
    if not state.get("Running") or pid <= 0:
        raise TargetNotFoundError(f"container {ref} is not running", "start it first")
    if mode == "host":
        raise UsageError(
            f"container {ref} uses the host's network (--net host), not a namespace of its own",
            "run it with --net none (or any other network); 'weave expose' gives the host an "
            "address",
        )
    return str(doc["Id"]), pid


def _not_found(ref: str) -> TargetNotFoundError:
    return TargetNotFoundError(
        f"no container or namespace named {ref!r}",
        "see 'docker ps'; for a namespace write ns:NAME, for a process pid:N",
    )


def _inspect_with_sdk(ref: str) -> dict[str, Any]:
    """The same through the docker SDK, for daemons behind TLS or ssh."""
    try:
        import docker  # type: ignore[import-untyped]
        import docker.errors  # type: ignore[import-untyped]
    except ImportError:
        raise TargetNotFoundError(
            f"{ref!r} looks like a Docker container, but the docker SDK is not installed",
            "install weave with its dependencies, or use ns:NAME or pid:N",
        ) from None
    try:
        client: Any = docker.from_env(timeout=TIMEOUT)
    except docker.errors.DockerException as err:
        raise TargetNotFoundError(f"{NO_DAEMON} ({_short(err)})", NO_DAEMON_HINT) from None
    try:
        attrs: dict[str, Any] = client.api.inspect_container(ref)
        return attrs
    except docker.errors.NotFound:
        raise _not_found(ref) from None
    except (docker.errors.DockerException, OSError) as err:  # requests' errors are OSErrors
        raise TargetNotFoundError(f"{NO_DAEMON} ({_short(err)})", NO_DAEMON_HINT) from None
    finally:
        client.close()


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:160]
