"""Bad input gets one clear line, a distinct exit code, and never a traceback.

These run the installed CLI as a subprocess with private state/run directories, so no router
is needed and nothing on the machine is touched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"WEAVE_STATE_DIR": str(tmp_path / "state"), "WEAVE_RUN_DIR": str(tmp_path / "run")}


def assert_one_clean_line(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_malformed_peer(env: dict[str, str], weave_run: Run) -> None:
    proc = weave_run("launch", "bad peer!", env=env)
    assert_one_clean_line(proc, 10, "invalid peer", "host[:port]")


def test_peer_with_bad_port(env: dict[str, str], weave_run: Run) -> None:
    proc = weave_run("join", "10.0.0.1:99999", env=env)
    assert_one_clean_line(proc, 10, "invalid port", "65535")


def test_bad_port_option(env: dict[str, str], weave_run: Run) -> None:
    proc = weave_run("launch", "--port", "0", env=env)
    assert_one_clean_line(proc, 11, "invalid port", "1 and 65535")


def test_status_without_router(env: dict[str, str], weave_run: Run) -> None:
    proc = weave_run("status", env=env)
    assert_one_clean_line(proc, 3, "not running", "weave launch")


def test_report_and_connect_without_router(env: dict[str, str], weave_run: Run) -> None:
    assert_one_clean_line(weave_run("report", env=env), 3, "not running")
    assert_one_clean_line(weave_run("connect", "10.0.0.1", env=env), 3, "not running")


def test_invalid_status_view(env: dict[str, str], weave_run: Run) -> None:
    proc = weave_run("status", "nonsense", env=env)
    assert_one_clean_line(proc, 2, "Invalid 'weave status' sub-command: nonsense")


def test_unwritable_state_dir(tmp_path: Path, weave_run: Run) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {"WEAVE_STATE_DIR": str(blocker / "state"), "WEAVE_RUN_DIR": str(tmp_path / "run")}
    proc = weave_run("launch", env=env)
    assert_one_clean_line(proc, 5, "cannot write", "WEAVE_STATE_DIR")


def test_resume_with_peers(env: dict[str, str], weave_run: Run) -> None:
    assert_one_clean_line(weave_run("launch", "--resume", "10.0.0.1", env=env), 2, "--resume")


def test_stop_and_reset_when_nothing_runs_are_harmless(env: dict[str, str], weave_run: Run) -> None:
    assert weave_run("stop", env=env).returncode == 0
    assert weave_run("reset", env=env).returncode == 0
    assert weave_run("reset", env=env).returncode == 0


def test_version_never_starts_a_router(env: dict[str, str], tmp_path: Path, weave_run: Run) -> None:
    proc = weave_run("version", env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("weave ")
    assert not (tmp_path / "run" / "weave.pid").exists()


def test_installed_from_wheel_not_source_tree() -> None:
    """Under ./run test the package must come from site-packages, never from the checkout."""
    import os

    import weave_cli

    if os.environ.get("WEAVE_TEST_INSTALLED") != "1":
        pytest.skip("only meaningful under ./run test (wheel install)")
    assert "site-packages" in weave_cli.__file__


def test_every_operator_facing_error_has_its_own_exit_code() -> None:
    """Exit codes tell failures apart in scripts: no two error classes an operator can meet
    share one (1 is the shared code of the internal ones, which never reach an operator)."""
    import weave_cli.errors as errors
    import weave_cli.net.errors as net_errors

    classes = {cls for module in (errors, net_errors) for cls in vars(module).values()
               if isinstance(cls, type) and issubclass(cls, errors.WeaveError)}
    seen: dict[int, str] = {}
    for cls in sorted(classes, key=lambda c: c.__name__):
        if cls.exit_code != 1:
            assert cls.exit_code not in seen, f"{cls.__name__} and {seen[cls.exit_code]}"
            seen[cls.exit_code] = cls.__name__
