"""Fixtures for the kernel tier: network namespaces made by the test, always removed.

``make_ns("r")`` creates ``wnt-<pid>-r`` and returns its name; after the test (pass or fail)
every process the test started inside is killed and every namespace it made is deleted (which
takes the veths and bridges inside with it), then the fixture asserts none is left. Nothing
here touches the machine's own namespace: the "router" of a test is one of its namespaces.
These tests need root (they are marked ``lab`` and skipped otherwise, see tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest
from netutil import PREFIX, ns_names, run


@pytest.fixture
def make_ns() -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def make(tag: str) -> str:
        name = f"{PREFIX}{os.getpid()}-{tag}"
        run("ip", "netns", "del", name, check=False)
        run("ip", "netns", "add", name)
        made.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    try:
        yield make
    finally:
        for name in made:
            run("ip", "netns", "del", name, check=False)
        left = [n for n in ns_names() if n in made]
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes to kill after the test (echo servers inside namespaces)."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.kill()
            proc.communicate()
