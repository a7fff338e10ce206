"""What a router keeps on disk between runs, and the pid files that say whether it runs.

State dir (persistent, created 0700, files 0600):
    peer.json     {"name": "aa:bb:cc:dd:ee:ff"}   the peer name, chosen at random on first start
    targets.json  {"targets": ["host[:port]", ...]} direct connection targets, for --resume
Run dir (volatile):
    weave.pid     the launcher: the supervisor, or the router itself with --no-restart
    router.pid    the router process
    launch.json   the launch configuration (0600; may later hold secrets)

Every write goes to a temporary file in the same directory, is fsynced, then renamed over the
old file, so a crash leaves either the old or the new content, never a torn file.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from weave_cli.errors import StateError
from weave_cli.names import Paths
from weave_cli.router.peer import PeerName

MAX_STATE_FILE = 1024 * 1024


def ensure_dirs(paths: Paths) -> None:
    """Create the state and run directories, or say clearly why we cannot."""
    for directory, mode in ((paths.state_dir, 0o700), (paths.run_dir, 0o755)):
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=mode)
            if directory.stat().st_mode & 0o022:  # an existing directory others may write to
                os.chmod(directory, mode)
            probe = directory / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise StateError(
                f"cannot write {directory}: {err.strerror or err}",
                "run as root, or point WEAVE_STATE_DIR / WEAVE_RUN_DIR at a writable directory",
            ) from None


def write_atomic(path: Path, data: str, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a fresh temporary file, fsync, then rename.

    The temporary file is created with O_EXCL|O_NOFOLLOW (a leftover or planted file or
    symlink is removed first, never written through) and gets its final mode before any byte
    is written, so a secret is never readable by others even for a moment. The directory is
    synced after the rename, so renames reach the disk in the order they were made.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    remove_quietly(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data.encode())
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_quietly(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (the order of two renames survives power loss)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a filesystem that cannot sync a directory still has the rename
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None if it does not exist. Corruption is a StateError naming the file."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_STATE_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateError(f"cannot read {path}: {err.strerror}", "check its permissions") from None
    try:
        if len(raw) > MAX_STATE_FILE:
            raise ValueError("too large")
        return json.loads(raw)
    except ValueError:
        raise StateError(
            f"{path} is corrupt", "restore it from a backup, or run 'weave reset' to start afresh"
        ) from None


def load_or_create_peer_name(paths: Paths, requested: str | None, rng: random.Random) -> PeerName:
    """The persisted name; ``--name`` overrides (and is persisted); else a new random one."""
    if requested:
        name = PeerName.parse(requested)
    else:
        data = read_json(paths.peer_file)
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            try:
                return PeerName.parse(data["name"])
            except ValueError:
                raise StateError(
                    f"{paths.peer_file} holds an invalid peer name", "run 'weave reset'"
                ) from None
        if data is not None:
            raise StateError(f"{paths.peer_file} is corrupt", "run 'weave reset' to start afresh")
        name = PeerName.random(rng)
    write_atomic(paths.peer_file, json.dumps({"name": str(name)}) + "\n")
    return name


def load_targets(paths: Paths) -> list[str]:
    data = read_json(paths.targets_file)
    if data is None:
        return []
    targets = data.get("targets") if isinstance(data, dict) else None
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise StateError(f"{paths.targets_file} is corrupt", "run 'weave reset' to start afresh")
    return list(targets)


def save_targets(paths: Paths, targets: list[str]) -> None:
    write_atomic(paths.targets_file, json.dumps({"targets": targets}) + "\n")


def read_pid(path: Path) -> int | None:
    """The pid in ``path`` if that process is alive, else None (a stale file is removed)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid_alive(pid) and _is_weave(pid):
        return pid
    try:
        path.unlink()
    except OSError:
        pass
    return None


def _is_weave(pid: int) -> bool:
    """Guards against pid reuse: the process must be one of ours."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read(4096)
        return b"weave_cli.router" in cmdline or b"weave-router" in cmdline
    except OSError:
        return True  # no /proc access: trust the pid file


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def acquire_launcher_lock(paths: Paths) -> int | None:
    """Take $WEAVE_RUN_DIR/weave.lock for this process's lifetime; None if another holds it.

    Exactly one launcher (supervisor, or an unsupervised router) runs per run dir; a second one
    that loses the race must leave the winner's pid files and socket alone.
    """
    import fcntl

    fd = os.open(paths.launcher_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_if_mine(path: Path) -> None:
    """Remove a pid file only if it still names this process."""
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def write_pid(path: Path) -> None:
    write_atomic(path, f"{os.getpid()}\n", mode=0o644)


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except PermissionError:
        raise StateError(f"cannot remove {path}: permission denied", "run as root (sudo)") from None
