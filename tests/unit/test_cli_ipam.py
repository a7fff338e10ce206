"""``weave rmpeer``, ``prime``, ``reset`` and ``status ipam`` against a fake router.

The fake is a tiny HTTP server on the control socket of a private run dir, answering each
(method, path) with a canned (status, body) and recording what it was asked; the CLI runs as a
subprocess, as in test_cli_errors.py. The real router end to end is tested in tests/lab.
"""

from __future__ import annotations

import json
import shutil
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]
NAME2 = "aa:bb:cc:dd:ee:02"


class FakeRouter(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.routes: dict[tuple[str, str], tuple[int, str]] = {}
        self.asked: list[tuple[str, str]] = []
        super().__init__(str(path), _Handler)

    def answer(self, method: str, path: str, status: int, body: str | dict[str, Any]) -> None:
        self.routes[(method, path)] = (status, body if isinstance(body, str) else json.dumps(body))


class _Handler(BaseHTTPRequestHandler):
    server: FakeRouter

    def _reply(self) -> None:
        key = (self.command, self.path)
        self.server.asked.append(key)
        status, body = self.server.routes.get(key, (404, "404 page not found\n"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_DELETE = _reply

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="wi", dir="/tmp"))  # short: unix socket paths <= 107
    state, run = root / "state", root / "run"
    state.mkdir()
    run.mkdir()
    yield state, run
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def env(dirs: tuple[Path, Path]) -> dict[str, str]:
    return {"WEAVE_STATE_DIR": str(dirs[0]), "WEAVE_RUN_DIR": str(dirs[1])}


@pytest.fixture
def router(dirs: tuple[Path, Path]) -> Iterator[FakeRouter]:
    server = FakeRouter(dirs[1] / "weave.sock")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def errors(proc: subprocess.CompletedProcess[str], code: int) -> list[str]:
    """stderr's lines, after checking the exit code and that no traceback escaped."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    return [line for line in proc.stderr.splitlines() if line.strip()]


# --- rmpeer -------------------------------------------------------------------------------


def test_rmpeer_prints_what_was_taken_over(router: FakeRouter, env: dict[str, str],
                                           weave_run: Run) -> None:
    router.answer("DELETE", "/peer/host3", 200, "524288 IPs taken over from host3\n")
    proc = weave_run("rmpeer", "host3", env=env)
    assert errors(proc, 0) == []
    assert proc.stdout == "524288 IPs taken over from host3\n"


def test_rmpeer_quotes_a_peer_name(router: FakeRouter, env: dict[str, str],
                                   weave_run: Run) -> None:
    router.answer("DELETE", "/peer/aa%3Abb%3Acc%3Add%3Aee%3A02", 200, "8 IPs taken over\n")
    proc = weave_run("rmpeer", NAME2, env=env)
    assert errors(proc, 0) == []
    assert router.asked == [("DELETE", "/peer/aa%3Abb%3Acc%3Add%3Aee%3A02")]


def test_rmpeer_conflict_exits_12_and_shows_the_router_lines(
    router: FakeRouter, env: dict[str, str], weave_run: Run
) -> None:
    body = ("524288 IPs taken over from host3\n"
            "conflict: IP range from 10.32.0.0 claimed by both a and b (was rmpeer run on more "
            "than one host?)\n")
    router.answer("DELETE", "/peer/host3", 409, body)
    proc = weave_run("rmpeer", "host3", env=env)
    [line] = errors(proc, 12)
    assert proc.stdout == body
    assert line.startswith("weave: rmpeer host3: an IP range is now claimed by two peers")
    assert "more than one host" in line


def test_rmpeer_unknown_peer_exits_14(router: FakeRouter, env: dict[str, str],
                                      weave_run: Run) -> None:
    router.answer("DELETE", "/peer/ghost", 404, "unknown peer ghost\n")
    proc = weave_run("rmpeer", "ghost", env=env)
    [line] = errors(proc, 14)
    assert line.startswith("weave: unknown peer ghost; ")
    assert proc.stdout == ""


def test_rmpeer_of_a_live_peer_is_refused_with_a_hint(router: FakeRouter, env: dict[str, str],
                                                      weave_run: Run) -> None:
    router.answer("DELETE", "/peer/host2", 400,
                  "peer host2 is connected; rmpeer is only for peers that are dead\n")
    proc = weave_run("rmpeer", "host2", env=env)
    [line] = errors(proc, 6)
    assert "peer host2 is connected" in line
    assert "'weave reset'" in line


def test_rmpeer_several_exits_with_the_worst(router: FakeRouter, env: dict[str, str],
                                             weave_run: Run) -> None:
    router.answer("DELETE", "/peer/host3", 200, "10 IPs taken over from host3\n")
    router.answer("DELETE", "/peer/ghost", 404, "unknown peer ghost\n")
    router.answer("DELETE", "/peer/host4", 409, "20 IPs taken over from host4\nconflict: x\n")
    router.answer("DELETE", "/peer/host2", 400, "peer host2 is connected\n")
    proc = weave_run("rmpeer", "ghost", "host3", "host2", "host4", env=env)
    lines = errors(proc, 12)
    assert len(lines) == 3
    assert [line.split(";")[0] for line in lines[:2]] == [
        "weave: unknown peer ghost", "weave: peer host2 is connected"]
    assert proc.stdout == (
        "10 IPs taken over from host3\n20 IPs taken over from host4\nconflict: x\n")
    assert len(router.asked) == 4
    # Without the conflict, a refusal (6) outranks an unknown peer (14).
    assert weave_run("rmpeer", "ghost", "host2", env=env).returncode == 6
    assert weave_run("rmpeer", "ghost", "host3", env=env).returncode == 14


@pytest.mark.parametrize("bad", ["a/b", "a b", "-", "x" * 65, "aa:bb:cc:dd:ee", "..", ""])
def test_rmpeer_checks_every_peer_before_asking(bad: str, router: FakeRouter,
                                                env: dict[str, str], weave_run: Run) -> None:
    proc = weave_run("rmpeer", "host3", "--", bad, env=env)
    [line] = errors(proc, 2)
    assert "invalid peer" in line and "nickname" in line
    assert router.asked == []


def test_rmpeer_and_prime_without_router(env: dict[str, str], weave_run: Run) -> None:
    assert "not running" in errors(weave_run("rmpeer", "host3", env=env), 3)[0]
    assert "not running" in errors(weave_run("prime", env=env), 3)[0]


# --- prime --------------------------------------------------------------------------------


def test_prime_prints_nothing_once_the_ring_exists(router: FakeRouter, env: dict[str, str],
                                                   weave_run: Run) -> None:
    router.answer("GET", "/ring", 200, "")
    proc = weave_run("prime", env=env)
    assert errors(proc, 0) == [] and proc.stdout == ""
    assert router.asked == [("GET", "/ring")]


@pytest.mark.parametrize(("status", "body", "code"), [
    (503, "awaiting consensus (quorum: 2, known: 1)\n", 13),
    (404, "IP address allocation is disabled on this router (--ipalloc-range '')\n", 14),
    (500, "boom\n", 6),
])
def test_prime_failures(status: int, body: str, code: int, router: FakeRouter,
                        env: dict[str, str], weave_run: Run) -> None:
    router.answer("GET", "/ring", status, body)
    [line] = errors(weave_run("prime", env=env), code)
    assert line.startswith("weave: " + body.strip())


# --- reset --------------------------------------------------------------------------------


def _state_files(state: Path) -> list[Path]:
    files = [state / "peer.json", state / "ipam.db"]
    for f in files:
        f.write_text("x")
    return files


def test_reset_hands_our_ranges_over_first(router: FakeRouter, dirs: tuple[Path, Path],
                                           env: dict[str, str], weave_run: Run) -> None:
    files = _state_files(dirs[0])
    router.answer("DELETE", "/peer", 200, f"1048574 IPs handed over to {NAME2}(host2)\n")
    proc = weave_run("reset", env=env)
    assert errors(proc, 0) == []
    assert proc.stdout == f"1048574 IPs handed over to {NAME2}(host2)\n"
    assert router.asked == [("DELETE", "/peer")]
    assert not any(f.exists() for f in files)


def test_reset_with_ipam_disabled_goes_ahead(router: FakeRouter, dirs: tuple[Path, Path],
                                             env: dict[str, str], weave_run: Run) -> None:
    files = _state_files(dirs[0])
    router.answer("DELETE", "/peer", 404, "IP address allocation is disabled\n")
    assert errors(weave_run("reset", env=env), 0) == []
    assert not any(f.exists() for f in files)


@pytest.mark.parametrize(("status", "code"), [(400, 6), (500, 6), (503, 13)])
def test_reset_stops_when_the_hand_over_fails_unless_forced(
    status: int, code: int, router: FakeRouter, dirs: tuple[Path, Path], env: dict[str, str],
    weave_run: Run,
) -> None:
    files = _state_files(dirs[0])
    router.answer("DELETE", "/peer", status, "no way\n")
    [line] = errors(weave_run("reset", env=env), code)
    assert line.startswith("weave: could not hand this host's IP ranges over: no way; ")
    assert "--force" in line
    assert all(f.exists() for f in files)
    proc = weave_run("reset", "--force", env=env)
    [warning] = errors(proc, 0)
    assert warning.startswith("weave: no way")
    assert not any(f.exists() for f in files)


def test_reset_without_router_keeps_an_ipam_database_unless_forced(
    dirs: tuple[Path, Path], env: dict[str, str], weave_run: Run
) -> None:
    files = _state_files(dirs[0])
    [line] = errors(weave_run("reset", env=env), 3)
    assert line == (
        "weave: weave is not running; unable to remove from cluster; re-launch weave before "
        "reset, or use --force to override (this host's IP ranges are then lost to the "
        "cluster until 'weave rmpeer' on another host)")
    assert all(f.exists() for f in files)
    assert errors(weave_run("reset", "--force", env=env), 0) == []
    assert not any(f.exists() for f in files)


def test_reset_without_router_or_ipam_database(dirs: tuple[Path, Path], env: dict[str, str],
                                               weave_run: Run) -> None:
    (dirs[0] / "peer.json").write_text("x")
    (dirs[1] / "weave.sock").write_text("")  # a stale socket: nothing listens
    assert errors(weave_run("reset", env=env), 0) == []
    assert not (dirs[0] / "peer.json").exists()


# --- status ipam ----------------------------------------------------------------------------


def _report(ipam: dict[str, Any] | None) -> dict[str, Any]:
    return {"Ready": True, "Version": "0.1.0",
            "Router": {"Name": NAME2, "NickName": "host2", "Peers": [], "Connections": []},
            "IPAM": ipam}


def test_status_ipam(router: FakeRouter, env: dict[str, str], weave_run: Run) -> None:
    entries = [
        {"Token": "10.32.0.0", "Size": 524288, "Peer": "aa:bb:cc:dd:ee:01", "Nickname": "host1",
         "IsKnownPeer": False, "Version": 1},
        {"Token": "10.40.0.0", "Size": 524288, "Peer": NAME2, "Nickname": "host2",
         "IsKnownPeer": True, "Version": 1},
    ]
    router.answer("GET", "/report", 200, _report({
        "Status": "ready", "Range": "10.32.0.0/12", "RangeNumIPs": 1048576, "ActiveIPs": 1,
        "DefaultSubnet": "10.32.0.0/12", "Entries": entries, "Conflicts": []}))
    proc = weave_run("status", "ipam", env=env)
    assert errors(proc, 0) == []
    assert proc.stdout == (
        "aa:bb:cc:dd:ee:02(host2)                524288 IPs (50.0% of total) (1 active)\n"
        "aa:bb:cc:dd:ee:01(host1)                524288 IPs (50.0% of total) - unreachable!\n")
    assert "        Service: ipam\n" in weave_run("status", env=env).stdout


def test_status_ipam_when_ipam_is_disabled(router: FakeRouter, env: dict[str, str],
                                           weave_run: Run) -> None:
    router.answer("GET", "/report", 200, _report(None))
    [line] = errors(weave_run("status", "ipam", env=env), 14)
    assert "disabled" in line
    assert "Service: ipam" not in weave_run("status", env=env).stdout
