"""Fixtures for lab tests: labs that are always removed, even when the test fails.

``lab_names`` hands out lab names and, after the test (pass, fail or error), removes every lab
it handed out with ``weave_cli.lab.ops.down`` in-process (so teardown does not depend on the
CLI working), then checks the machine is clean: no namespace, directory or mount of the lab.
A lab left by an earlier crashed run is removed before the test starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from weave_cli.names import LAB_PREFIX, LAB_RUN_ROOT, LAB_STATE_ROOT

LabRun = Callable[..., subprocess.CompletedProcess[str]]


def lab_cli(
    *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m weave_cli lab ARGS`` as a subprocess; never raises on exit status."""
    return subprocess.run(
        [sys.executable, "-m", "weave_cli", "lab", *args], capture_output=True, text=True,
        input=input, timeout=timeout, cwd="/", env=dict(os.environ), check=False,
    )


def find_leftovers(name: str) -> list[str]:
    """Everything of lab ``name`` still on the machine (empty when clean)."""
    prefix = f"{LAB_PREFIX}{name}-"
    found = [f"netns {n}" for n in _netns() if n.startswith(prefix)]
    found += [f"dir {d}" for d in (LAB_RUN_ROOT / name, LAB_STATE_ROOT / name) if d.exists()]
    with open("/proc/self/mountinfo") as handle:
        found += [f"mount {line.split()[4]}" for line in handle
                  if line.split()[4].startswith(f"{LAB_RUN_ROOT / name}/")]
    if (LAB_RUN_ROOT / f"{name}.lock").exists():
        found.append("lock file")
    return found


def _netns() -> list[str]:
    try:
        return os.listdir("/run/netns")
    except FileNotFoundError:
        return []


@pytest.fixture
def lab_names() -> Iterator[Callable[[str], str]]:
    """``name = lab_names("t1")``: a clean lab name that is torn down after the test."""
    from weave_cli.lab import ops

    used: list[str] = []

    def claim(name: str) -> str:
        ops.down(name)  # a crashed earlier run may have left it
        used.append(name)
        return name

    try:
        yield claim
    finally:
        errors = []
        for name in used:
            try:
                ops.down(name)
            except Exception as err:  # keep tearing down the others
                errors.append(f"{name}: {err}")
            left = find_leftovers(name)
            if left:
                errors.append(f"{name} left {left}")
        assert not errors, errors


@pytest.fixture
def lab() -> LabRun:
    """``lab("up", "--name", "t1", ...)``: the lab CLI as a subprocess."""
    return lab_cli


@pytest.fixture
def leftovers() -> Callable[[str], list[str]]:
    """``leftovers("t1")``: what of that lab is still on the machine."""
    return find_leftovers

