"""Docker in tests: is a real dockerd there, and containers that are always removed.

``./run test`` starts dockerd and builds the image through ``tests/docker-up.sh``; when that
was not possible, ``unavailable()`` says why and the Docker tests skip with that reason.
Containers are made from the local busybox image (``bb:local``, built offline: nothing is
ever pulled) with ``--net none``, named ``wdk<pid>-<tag>`` and labelled ``weave-test``, and
``Containers.remove_all`` removes them whatever the test did. The engine's own client
``/usr/bin/docker`` is used (a newer client on PATH may speak a newer API than dockerd 20.10).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

DOCKER = "/usr/bin/docker"
IMAGE = os.environ.get("WEAVE_TEST_IMAGE", "bb:local")
SOCKET = "/var/run/docker.sock"
UP = "run tests/docker-up.sh (./run test does)"


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def unavailable() -> str | None:
    """Why Docker tests cannot run here, or None when dockerd answers and the image exists."""
    if os.geteuid() != 0:
        return "Docker tests need root"
    if not Path(DOCKER).exists():
        return f"no {DOCKER} (Debian's docker.io): {UP}"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        try:
            sock.connect(SOCKET)
        except OSError as err:
            return f"no dockerd answers at {SOCKET} ({err.strerror}): {UP}"
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        return f"no local image {IMAGE}: {UP}"
    return None


class Containers:
    """``c = Containers("t1"); cid = c.run("a")``: containers of one test, removed after it."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"wdk{os.getpid()}-{tag}-"
        self.made: list[str] = []

    def name(self, tag: str) -> str:
        return self.prefix + tag

    def run(self, tag: str, *cmd: str, net: str = "none") -> str:
        """Start one detached container (default: ``sleep 300``); its full id."""
        name = self.name(tag)
        docker("rm", "-f", name, check=False)
        self.made.append(name)
        out = docker("run", "-d", "--name", name, "--label", "weave-test=1", "--net", net,
                     IMAGE, *(cmd or ("sleep", "300")))
        return out.stdout.strip()

    def exec(self, tag: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name(tag), *cmd, check=check)

    def remove(self, tag: str) -> None:
        docker("rm", "-f", self.name(tag))

    def remove_all(self) -> None:
        if self.made:
            docker("rm", "-f", *self.made, check=False)
        left = docker("ps", "-aq", "--filter", f"name={self.prefix}", check=False).stdout.split()
        assert not left, f"containers left behind: {left}"


@pytest.fixture
def boxes(request: pytest.FixtureRequest) -> Iterator[Containers]:
    """Containers named after the test, all removed afterwards; the test is skipped, saying
    why, when no Docker daemon answers (registered in tests/conftest.py)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    made = Containers(hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6])
    try:
        yield made
    finally:
        made.remove_all()
