"""Containers on lab hosts, attached through the real CLI and the real routers' IPAM.

Cross-host traffic needs fastdp or the sleeve (not built yet), so traffic here stays on one
host's bridge: container to container, and host to container after ``weave expose``. The bad
input cases check the exit code, the message, and that nothing is left behind: no namespace,
no veth, no IPAM entry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from labutil import Lab, wait_for, weave, weave_cmd

from weave_cli.client import RouterClient
from weave_cli.names import Paths

pytestmark = pytest.mark.lab
FAST = ("--heartbeat-interval", "1", "--gossip-interval", "2", "--retry-max", "3")
PROBE = (sys.executable, "-m", "weave_cli.lab.probe")


@contextmanager
def serving(net: Lab, container: str) -> Iterator[None]:
    """The UDP echo probe running in a container for the duration of the block."""
    proc = subprocess.Popen(
        [*weave_cmd(), "lab", "exec", "--name", net.name, container, "--", *PROBE, "serve",
         "--seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.communicate()


def reaches(net: Lab, node: str, addr: str, seconds: float = 3.0) -> bool:
    proc = net.exec(node, *PROBE, "ask", addr, "--seconds", str(seconds), check=False)
    return proc.returncode == 0


def owned(net: Lab, host: str) -> dict[str, list[str]]:
    state, run = net.host_dirs(host)
    doc = RouterClient(Paths(state, run)).call("GET", "/ip").json()
    return {o["containerid"]: o["addrs"] for o in doc["owned"]}


def lab_run(net: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return weave("lab", "run", "--name", net.name, *args, check=check)


def test_containers_talk_on_one_host_and_expose_reaches_them(
    lab_names: Callable[[str], str],
) -> None:
    net = Lab(lab_names("at1"))
    net.up(2, *FAST)
    a = lab_run(net, "h1", "a").stdout.split()
    b = lab_run(net, "h1", "b", "ip:10.32.0.9/12").stdout.split()
    assert a == ["a", f"wl-{net.name}-c-a", "h1", "10.32.0.1"]
    assert b[-1] == "10.32.0.9"
    with serving(net, "a"):
        assert reaches(net, "b", "10.32.0.1")
        assert not reaches(net, "h1", "10.32.0.1", seconds=0.6)  # no host access by default
        exposed = net.weave("h1", "expose").stdout.strip()
        assert net.weave("h1", "expose").stdout.strip() == exposed  # idempotent
        assert reaches(net, "h1", "10.32.0.1")
        ps = net.weave("h1", "ps").stdout.splitlines()
        assert ps[0].startswith("weave:expose ") and ps[0].endswith(f" {exposed}/12")
        assert [line.split()[0] for line in ps[1:]] == [f"ns:wl-{net.name}-c-a",
                                                        f"ns:wl-{net.name}-c-b"]
        assert net.weave("h1", "hide").stdout.strip() == exposed
        assert net.weave("h1", "hide").stdout.strip() == ""
        assert not reaches(net, "h1", "10.32.0.1", seconds=0.6)
        # The keeper puts a deleted bridge back, with the containers' ports, within 10 s.
        subprocess.run(["ip", "-n", f"wl-{net.name}-h1", "link", "del", "weave"], check=True)
        start = time.monotonic()
        wait_for("traffic over the re-created bridge", lambda: reaches(net, "b", "10.32.0.1"),
                 timeout=10)
        assert time.monotonic() - start < 10
    status = json.loads(weave("lab", "status", "--name", net.name, "--json").stdout)
    assert [(c["name"], c["host"], c["addresses"]) for c in status["containers"]] == [
        ("a", "h1", ["10.32.0.1/12"]), ("b", "h1", ["10.32.0.9/12"])]
    assert owned(net, "h1")[f"ns:wl-{net.name}-c-b"] == ["10.32.0.9/12"]


def test_bad_input_is_refused_and_leaves_nothing(lab_names: Callable[[str], str]) -> None:
    net = Lab(lab_names("at2"))
    net.up(1, *FAST)
    prefix = f"wl-{net.name}-c-"

    def refused(proc: subprocess.CompletedProcess[str], code: int, words: str) -> None:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == code and len(lines) == 1 and words in lines[0], proc.stderr

    refused(lab_run(net, "h1", "x", "192.168.5.5/24", check=False), 2, "outside the weave range")
    refused(net.weave("h1", "attach", f"ns:{prefix}nope", check=False), 16, "does not exist")
    lab_run(net, "h1", "a")
    before = net.weave("h1", "ps").stdout
    assert net.weave("h1", "attach", f"ns:{prefix}a").stdout.strip() == "10.32.0.1"  # again
    refused(net.weave("h1", "attach", "10.32.0.77/12", f"ns:{prefix}a", check=False), 18,
            "already attached")
    refused(net.weave("h1", "detach", "10.32.5.5/12", f"ns:{prefix}a", check=False), 17,
            "no address matching")
    subprocess.run(["ip", "netns", "add", f"{prefix}z"], check=True)  # lab-named: down removes it
    refused(net.weave("h1", "detach", f"ns:{prefix}z", check=False), 17, "not attached")
    assert net.weave("h1", "ps").stdout == before
    assert owned(net, "h1") == {f"ns:{prefix}a": ["10.32.0.1/12"]}
    assert not Path(f"/run/netns/{prefix}x").exists()
    assert net.weave("h1", "detach", f"ns:{prefix}a").stdout.strip() == "10.32.0.1"
    assert owned(net, "h1") == {}
    links = subprocess.run(["ip", "-n", f"wl-{net.name}-h1", "-o", "link"], check=True,
                           capture_output=True, text=True).stdout
    assert "vethwepl" not in links
    weave("lab", "rm", "--name", net.name, "a")
    assert not Path(f"/run/netns/{prefix}a").exists()
