"""Docker targets: a container id or name → its full id and the pid of its first process.

Only ``attach``/``detach`` of a Docker TARGET come here, so the docker SDK (slow to import) is
loaded only then. The daemon is found the SDK's usual way (DOCKER_HOST, else
/var/run/docker.sock). Every failure becomes one clear error: no daemon, no such container,
or a container that is not running (it has no network namespace to attach to).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from weave_cli.net.errors import TargetNotFoundError

TIMEOUT = 10
DEFAULT_SOCKET = "/var/run/docker.sock"
NO_DAEMON = "Docker targets need a Docker daemon, and none answers"
NO_DAEMON_HINT = "start dockerd, or attach a namespace with ns:NAME or pid:N"


def _probe() -> None:
    """Fail early, and without the SDK, when the daemon's unix socket does not answer.

    (The SDK leaks its socket when the connection is refused.) TCP daemons are left to it.
    """
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if not host.startswith("unix://"):
        return
    path = host[len("unix://"):]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(path)
        except OSError as err:
            raise TargetNotFoundError(
                f"{NO_DAEMON} at {path} ({err.strerror or err})", NO_DAEMON_HINT
            ) from None


def container_pid(ref: str) -> tuple[str, int]:
    """(full container id, pid) of a running container, or TargetNotFoundError."""
    _probe()
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
        container = client.containers.get(ref)
        state = container.attrs.get("State", {})
        full_id = str(container.id)
    except docker.errors.NotFound:
        raise TargetNotFoundError(
            f"no container or namespace named {ref!r}",
            "see 'docker ps'; for a namespace write ns:NAME, for a process pid:N",
        ) from None
    except docker.errors.DockerException as err:
        raise TargetNotFoundError(f"{NO_DAEMON} ({_short(err)})", NO_DAEMON_HINT) from None
    finally:
        client.close()
    pid = int(state.get("Pid") or 0)
    if not state.get("Running") or pid <= 0:
        raise TargetNotFoundError(f"container {ref} is not running", "start it first")
    return full_id, pid


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:160]
