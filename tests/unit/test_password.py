"""Where the password comes from and how it reaches the router without being seen (S20)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from weave_cli.commands import launch as launch_cmd
from weave_cli.config import LaunchConfig
from weave_cli.crypto.password import (
    ARGV_WARNING,
    ENV_VAR,
    choose_password,
    load_router_password,
    read_password_file,
)
from weave_cli.crypto.secret import Secret
from weave_cli.errors import UsageError
from weave_cli.names import Paths

PASSWORD = "s3cret-Pa55word!"


def choose(password: str | None = None, password_file: str | None = None,
           env: dict[str, str] | None = None) -> tuple[Secret | None, list[str]]:
    warnings: list[str] = []
    return choose_password(password, password_file, env or {}, warnings.append), warnings


def test_sources_and_their_warnings(tmp_path: Path) -> None:
    assert choose() == (None, [])
    assert choose(env={ENV_VAR: PASSWORD}) == (Secret(PASSWORD.encode()), [])
    assert choose(env={ENV_VAR: ""}) == (None, [])
    secret, warnings = choose(password=PASSWORD, env={ENV_VAR: "ignored"})
    assert secret == Secret(PASSWORD.encode()) and warnings == [ARGV_WARNING]
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    assert choose(password_file=str(path)) == (Secret(PASSWORD.encode()), [])
    with pytest.raises(UsageError, match="cannot be combined"):
        choose(password=PASSWORD, password_file=str(path))
    for warning in [*choose(password=PASSWORD)[1]]:
        assert PASSWORD not in warning


@pytest.mark.parametrize("mode, warned", [(0o600, False), (0o400, False), (0o640, True),
                                          (0o604, True), (0o644, True)])
def test_a_readable_password_file_is_warned_about(tmp_path: Path, mode: int,
                                                  warned: bool) -> None:
    path = tmp_path / "pw"
    path.write_bytes(PASSWORD.encode() + b"\r\n")
    path.chmod(mode)
    warnings: list[str] = []
    assert read_password_file(path, warnings.append) == Secret(PASSWORD.encode())
    assert bool(warnings) is warned
    assert all(PASSWORD not in w and "readable by other users" in w for w in warnings)


def test_bad_password_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    for path, words in [(empty, "empty"), (binary, "not UTF-8"),
                        (tmp_path / "missing", "cannot read")]:
        with pytest.raises(UsageError, match=words):
            read_password_file(path, lambda _: None)
    with pytest.raises(UsageError, match="cannot be read"):
        load_router_password(tmp_path / "missing")


class _FakeProc:
    def poll(self) -> int | None:
        return None


class _FakeClient:
    def __init__(self) -> None:
        self.calls = 0

    def ready(self, timeout: float = 1.0) -> bool:
        self.calls += 1
        return self.calls > 1  # not ready before Popen (no router yet), ready after

    def call(self, *_: Any, **__: Any) -> Any:
        class R:
            def json(self) -> dict[str, Any]:
                return {"Router": {"Name": "02:00:00:00:00:01"}}
        return R()


def _start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: Secret | None,
           encrypted: bool) -> tuple[Paths, dict[str, Any]]:
    import weave_cli.client

    seen: dict[str, Any] = {}

    def popen(argv: list[str], **kw: Any) -> _FakeProc:
        seen["argv"], seen["env"] = argv, kw["env"]
        return _FakeProc()

    client = _FakeClient()
    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(weave_cli.client, "RouterClient", lambda *a, **k: client)
    monkeypatch.setenv(ENV_VAR, PASSWORD)
    paths = Paths(tmp_path / "state", tmp_path / "run")
    cfg = LaunchConfig(encrypted=encrypted).validate()
    assert launch_cmd.start_router(cfg, paths, password) == "02:00:00:00:00:01"
    return paths, seen


def test_the_password_reaches_the_router_only_through_a_0600_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, seen = _start(tmp_path, monkeypatch, Secret(PASSWORD.encode()), True)
    assert stat.S_IMODE(os.stat(paths.password_file).st_mode) == 0o600
    assert load_router_password(paths.password_file) == Secret(PASSWORD.encode())
    launch_json = paths.launch_config.read_text()
    assert json.loads(launch_json)["encrypted"] is True and PASSWORD not in launch_json
    assert not any(PASSWORD in word for word in seen["argv"])
    assert ENV_VAR not in seen["env"] and PASSWORD not in repr(seen["env"])
    assert paths.password_file in paths.owned_run_files()


def test_a_launch_without_password_removes_a_stale_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths, _ = _start(tmp_path, monkeypatch, Secret(PASSWORD.encode()), True)
    paths, _ = _start(tmp_path, monkeypatch, None, False)
    assert not paths.password_file.exists()
    assert json.loads(paths.launch_config.read_text())["encrypted"] is False


def test_the_cli_options_choose_the_password_and_warn(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from weave_cli.main import build_app

    got: list[tuple[LaunchConfig, Secret | None]] = []
    monkeypatch.setattr(launch_cmd, "start_router",
                        lambda cfg, paths, secret=None: got.append((cfg, secret)) or "name")
    monkeypatch.delenv(ENV_VAR, raising=False)
    runner = CliRunner()
    result = runner.invoke(build_app(), ["launch", "--password", PASSWORD,
                                         "--trusted-subnets", "10.0.0.0/8,192.168.1.0/24"])
    assert result.exit_code == 0, result.output
    cfg, secret = got[-1]
    assert secret == Secret(PASSWORD.encode()) and cfg.encrypted
    assert cfg.trusted_subnets == ["10.0.0.0/8", "192.168.1.0/24"]
    assert "process list" in result.output and PASSWORD not in cfg.to_json()
    result = runner.invoke(build_app(), ["launch"], env={ENV_VAR: PASSWORD})
    assert result.exit_code == 0 and got[-1][1] == Secret(PASSWORD.encode())
    assert "process list" not in result.output
    result = runner.invoke(build_app(), ["launch"])
    assert result.exit_code == 0 and got[-1][1] is None and not got[-1][0].encrypted
    path = tmp_path / "pw"
    path.write_text(PASSWORD)
    path.chmod(0o644)
    monkeypatch.setattr("weave_cli.commands.peers.running_pid", lambda paths: None,
                        raising=False)
    result = runner.invoke(build_app(), ["join", "--password-file", str(path), "10.0.0.9"])
    assert result.exit_code == 0, result.output
    assert got[-1][1] == Secret(PASSWORD.encode()) and "readable by other users" in result.output
    assert PASSWORD not in result.output


def test_the_router_derives_the_key_from_its_file_and_logs_nothing_of_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import logging
    import random

    from weave_cli.crypto.kdf import password_key
    from weave_cli.router.daemon import Router

    paths = Paths(tmp_path / "state", tmp_path / "run")
    paths.run_dir.mkdir(parents=True)
    paths.password_file.write_text(PASSWORD)
    caplog.set_level(logging.DEBUG)
    router = Router(paths, LaunchConfig(encrypted=True).validate(), random.Random(1))
    keys = asyncio.run(router.password_keys())
    assert keys is not None and keys.also is None
    key = keys.send
    assert key == password_key(Secret(PASSWORD.encode()))
    plain = Router(paths, LaunchConfig().validate(), random.Random(1))
    assert asyncio.run(plain.password_keys()) is None
    paths.password_file.unlink()
    with pytest.raises(UsageError, match="run 'weave launch' again") as err:
        asyncio.run(router.password_keys())
    for text in (caplog.text, str(err.value), repr(router.cfg), repr(key)):
        assert PASSWORD not in text and key.reveal().hex() not in text
