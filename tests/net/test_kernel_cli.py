"""The CLI inside a test namespace, with no router: what it says when something is missing,
and that it changed nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from netutil import in_ns, ns_path

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]


def weave_in(ns: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WEAVE_STATE_DIR=str(tmp / "state"), WEAVE_RUN_DIR=str(tmp / "run"))
    return subprocess.run(
        ["nsenter", f"--net={ns_path(ns)}", "--", sys.executable, "-m", "weave_cli", *args],
        capture_output=True, text=True, env=env, timeout=60, cwd="/",
    )


def one_line(proc: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and words in lines[0], lines


def test_cli_without_router_or_bridge(make_ns: MakeNs, tmp_path: Path) -> None:
    r, a = make_ns("r"), make_ns("a")
    one_line(weave_in(r, tmp_path, "ps"), 3, 'bridge "weave" not present')
    one_line(weave_in(r, tmp_path, "attach", "ns:wnt-no-such-ns"), 16, "does not exist")
    one_line(weave_in(r, tmp_path, "detach", "ns:wnt-no-such-ns"), 16, "does not exist")
    one_line(weave_in(r, tmp_path, "attach", f"ns:{a}"), 3, "not running")
    one_line(weave_in(r, tmp_path, "attach", f"ns:{r}"), 2, "own network namespace")
    one_line(weave_in(r, tmp_path, "expose"), 3, "not running")
    assert "ethwe" not in in_ns(a, "ip", "-o", "link").stdout
    assert in_ns(r, "ip", "-o", "link").stdout.count("\n") == 1  # lo only
