"""weave rotate-password: the password files through every step, in and out of order."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from weave_cli.crypto.secret import Secret
from weave_cli.errors import RotationError, WeaveError
from weave_cli.names import Paths
from weave_cli.router import rotation

OLD, NEW, THIRD = Secret(b"old password"), Secret(b"new password"), Secret(b"third one")


def derive(s: Secret) -> Secret:  # stands in for scrypt: a different, recognisable value
    return Secret(b"key:" + s.reveal())


def key(s: Secret) -> Secret:
    return derive(s)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "state", tmp_path / "run")
    p.run_dir.mkdir(parents=True)
    rotation._write(p.password_file, OLD)
    return p


def keys(paths: Paths) -> tuple[Secret, Secret | None, str]:
    k = rotation.load_keys(paths, derive)
    return k.send, k.also, k.rotation


def test_the_steps_move_the_keys_and_the_files_stay_private(paths: Paths) -> None:
    assert keys(paths) == (key(OLD), None, "")
    rotation.begin(paths, NEW)
    assert keys(paths) == (key(OLD), key(NEW), "begun")
    rotation.begin(paths, NEW)  # the same step again is harmless
    rotation.switch(paths)
    assert keys(paths) == (key(NEW), key(OLD), "switched")
    for f in (paths.password_file, paths.password_previous_file):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    rotation.finish(paths)
    assert keys(paths) == (key(NEW), None, "")
    assert {paths.password_next_file, paths.password_previous_file} <= set(
        paths.owned_run_files())  # weave reset removes them


def test_steps_out_of_order_are_refused_and_change_nothing(paths: Paths) -> None:
    with pytest.raises(RotationError) as err:
        rotation.switch(paths)
    assert err.value.exit_code == 19 and err.value.hint
    with pytest.raises(RotationError, match="current one"):
        rotation.begin(paths, OLD)
    rotation.begin(paths, NEW)
    with pytest.raises(RotationError, match="another password"):
        rotation.begin(paths, THIRD)
    with pytest.raises(RotationError, match="switch"):
        rotation.finish(paths)
    assert keys(paths) == (key(OLD), key(NEW), "begun")
    rotation.cancel(paths)
    assert keys(paths) == (key(OLD), None, "")
    rotation.begin(paths, NEW)
    rotation.switch(paths)
    with pytest.raises(RotationError, match="finish"):
        rotation.begin(paths, THIRD)
    with pytest.raises(RotationError, match="switched already"):
        rotation.cancel(paths)
    assert keys(paths) == (key(NEW), key(OLD), "switched")


def test_a_step_already_taken_can_be_run_again(paths: Paths) -> None:
    """So a step whose reload did not reach the router is retried by running it again."""
    rotation.finish(paths)  # nothing to drop
    rotation.cancel(paths)
    assert keys(paths) == (key(OLD), None, "")
    rotation.begin(paths, NEW)
    rotation.begin(paths, NEW)
    rotation.switch(paths)
    rotation.switch(paths)
    assert keys(paths) == (key(NEW), key(OLD), "switched")
    rotation.finish(paths)
    rotation.finish(paths)
    assert keys(paths) == (key(NEW), None, "")
    with pytest.raises(RotationError, match="no rotation has begun"):
        rotation.switch(paths)


def test_a_switch_cut_short_reads_as_its_real_phase_and_completes(paths: Paths) -> None:
    rotation.begin(paths, NEW)
    rotation._write(paths.password_previous_file, OLD)  # cut after the first write
    assert keys(paths) == (key(OLD), key(NEW), "begun")
    rotation.switch(paths)
    assert keys(paths) == (key(NEW), key(OLD), "switched")
    rotation._write(paths.password_next_file, NEW)  # cut after the second write
    assert keys(paths) == (key(NEW), key(OLD), "switched")
    with pytest.raises(RotationError, match="switch"):
        rotation.finish(paths)
    rotation.switch(paths)
    assert not paths.password_next_file.exists()
    rotation.finish(paths)
    assert keys(paths) == (key(NEW), None, "")


def test_the_cli_changes_nothing_without_a_running_router(
        paths: Paths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A later 'weave launch' would name one password anew, so a step without a router is
    refused (exit 3) and leaves the files as they were; without a password it is exit 19."""
    from typer.testing import CliRunner

    from weave_cli.main import build_app

    monkeypatch.setenv("WEAVE_STATE_DIR", str(paths.state_dir))
    monkeypatch.setenv("WEAVE_RUN_DIR", str(paths.run_dir))
    new = tmp_path / "new"
    new.write_text("new password\n")
    new.chmod(0o600)
    def run(*args: str) -> tuple[int, str]:
        """The exit code and message ``weave_cli.main.run`` would give."""
        result = CliRunner().invoke(build_app(), ["rotate-password", *args])
        err = result.exception
        assert isinstance(err, WeaveError), result.output
        return err.exit_code, f"{err.message}; {err.hint}"

    begin = ("begin", "--password-file", str(new))
    code, text = run(*begin)
    assert code == 3 and "not been launched" in text, text
    paths.launch_config.write_text('{"encrypted": true}')
    code, text = run(*begin)
    assert code == 3 and "not running" in text, text
    assert not paths.password_next_file.exists()
    paths.launch_config.write_text('{"encrypted": false}')
    code, text = run("finish")
    assert code == 19 and "no password" in text and "new password" not in text, text
