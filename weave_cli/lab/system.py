"""The lab's only contact with the kernel and other programs: commands, namespaces, processes.

Everything here acts inside namespaces the lab created (``/run/netns/wl-*`` and the UTS bind
mounts under ``/run/weave-lab``), never on the machine's own network namespace. Programs are
run with list argv (no shell); a failure becomes a ``LabError`` carrying the command's stderr.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from weave_cli.errors import LabError

NETNS_DIR = Path("/run/netns")
KILL_GRACE = 2.0
KILL_TIMEOUT = 10.0


def tool(name: str) -> str:
    """Absolute path of a required program (iproute2, nftables, util-linux)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise LabError(f"{name} not found", "install iproute2, nftables and util-linux")
    return found


def run(argv: list[str], *, input: str | None = None, timeout: float = 30.0) -> str:
    """Run a program; its stdout, or LabError with the command and its stderr."""
    try:
        proc = subprocess.run(
            [tool(argv[0]), *argv[1:]], input=input, capture_output=True, text=True,
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"'{' '.join(argv)}' timed out after {timeout:.0f}s", "try again") from None
    if proc.returncode != 0:
        raise LabError(f"'{' '.join(argv[:6])}' failed: {_reason(proc)}",
                       "see 'weave lab status'; 'weave lab down' removes a broken lab")
    return proc.stdout


def _reason(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line of a failed command's output that says why (nft and ip say "Error: ...")."""
    lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[-1] if lines else f"exit status {proc.returncode}"


def netns_path(netns: str) -> Path:
    return NETNS_DIR / netns


def in_netns(netns: str, argv: list[str]) -> list[str]:
    """argv run inside a lab namespace without remounting anything (nsenter, not ip netns exec)."""
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def list_netns() -> list[str]:
    """Names of the named network namespaces (what ``ip netns list`` shows)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def ns_inode(path: Path) -> int | None:
    """The namespace inode bound at ``path``, or None if nothing is bound there."""
    from weave_cli.net.netns import inode_of

    return inode_of(path)


def pids_in(kind: str, inode: int) -> list[int]:
    """Live processes whose ``kind`` namespace (net, uts) is the one with this inode."""
    want = f"{kind}:[{inode}]"
    skip = {os.getpid(), os.getppid(), 1}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/{kind}") == want:
                found.append(int(entry))
        except OSError:
            continue  # exited, or a zombie without namespaces
    return found


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def pid_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def terminate(find: Callable[[], list[int]], grace: float = KILL_GRACE) -> None:
    """SIGTERM what ``find`` returns, SIGKILL what is left after ``grace``; repeat until none.

    ``find`` is asked again each round, so children started meanwhile (a supervisor restarting
    its router) are caught too.
    """
    pids = find()
    if not pids:
        return
    signal_pids(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and find():
        time.sleep(0.05)
    deadline = time.monotonic() + KILL_TIMEOUT
    while pids := find():
        if time.monotonic() > deadline:
            raise LabError(f"processes {pids} did not die", "look at them with ps; kill them")
        signal_pids(pids, signal.SIGKILL)
        time.sleep(0.05)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root`` in this mount namespace, deepest first."""
    found = []
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(prefix):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount(path: Path) -> None:
    try:
        run(["umount", str(path)])
    except LabError:
        run(["umount", "-l", str(path)])


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive flock on ``path``; survives the file being unlinked by a holder (``down``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # unlinked while we waited: lock the new file instead
    try:
        yield
    finally:
        os.close(fd)
