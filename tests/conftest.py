"""Shared test configuration.

Tiers: tests/unit (pure, fast), tests/sim (in-memory multi-router), tests/lab (real kernel:
network namespaces built by `weave lab`, root only). Lab tests are skipped, with the reason,
when not root or when nftables is missing; `./run test` installs what they need.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Shared fixtures of helper modules in tests/ (``boxes``: Docker containers of a test).
pytest_plugins = ["dockerutil"]


def weave_cmd() -> list[str]:
    """How tests run the CLI: the installed console script when present, else the module."""
    exe = Path(sys.executable).with_name("weave")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "weave_cli"]


def run_weave(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, **kw: object
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*weave_cmd(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd="/",
        **kw,
    )


@pytest.fixture
def weave_run() -> object:
    """The CLI as a subprocess: ``weave_run("status", env={...})``."""
    return run_weave


def lab_available() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root"
    for tool in ("ip", "nft", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"lab tests need {tool}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = lab_available()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)
