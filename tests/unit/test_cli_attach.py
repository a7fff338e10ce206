"""attach, detach, expose and hide refuse bad words with one line and exit 2, before they look
at the kernel or the router (so these run anywhere, as any user)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"WEAVE_STATE_DIR": str(tmp_path / "state"), "WEAVE_RUN_DIR": str(tmp_path / "run")}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["attach"], "no target given"),
        (["detach"], "no target given"),
        (["attach", "net:10.32.1.5/24", "ns:c1"], "not a subnet"),
        (["attach", "10.32.1.5", "ns:c1"], "give a CIDR"),
        (["attach", "ns:a/b"], "invalid namespace name"),
        (["attach", "pid:zero"], "invalid process id"),
        (["detach", "10.32.0.0/12", "ns:c1"], "network address"),
        (["expose", "ip:banana"], "invalid address"),
        (["hide", "net:x"], "invalid subnet"),
    ],
)
def test_bad_words(argv: list[str], words: str, env: dict[str, str], weave_run: Run) -> None:
    proc = weave_run(*argv, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr
