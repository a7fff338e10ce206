"""The mesh on real namespaces: routers launched by `weave lab`, driven through the CLI.

Scenario ids refer to shared reliability scenarios (IT17, IT18, IT32). Every test builds its
own lab and removes it, even on failure. Fast timers keep failure detection in seconds:
heartbeat 1 s (timeout 4 s), anti-entropy every 2 s, retry backoff capped at 3 s.
"""

from __future__ import annotations

import os
import random
import signal
import stat
import sys
import time

import pytest
from labutil import established_peers, full_mesh, known_peers, lab, wait_for, weave

pytestmark = pytest.mark.lab
FAST = ("--heartbeat-interval", "1", "--gossip-interval", "2", "--retry-max", "3")
HOSTS3 = ["h1", "h2", "h3"]


def test_three_hosts_reach_full_mesh_and_status_shows_it() -> None:
    """IT32: name, nick, peers, connections (addr:6783), targets in status and report."""
    with lab("m1", 3, *FAST) as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        rep = net.report("h1")
        router = rep["Router"]
        assert router["NickName"] == "h1" and router["Port"] == 6783
        assert len(router["Peers"]) == 3
        text = net.weave("h1", "status").stdout
        assert f"Name: {router['Name']}(h1)" in text
        assert "Peers: 3 (with 6 established connections)" in text
        assert "Connections: 2 (2 established)" in text
        h2 = net.report("h2")["Router"]
        assert h2["Targets"] == ["198.18.0.1"]
        conns = net.weave("h2", "status", "connections").stdout
        assert "-> 198.18.0.1:6783" in conns and "established" in conns
        assert net.weave("h2", "status", "targets").stdout.strip() == "198.18.0.1"
        peers = net.weave("h1", "status", "peers").stdout
        for nick in HOSTS3:
            assert f"({nick})" in peers
        name = net.weave("h3", "report", "-f", "{{.Router.NickName}}").stdout.strip()
        assert name == "h3"


def test_control_surfaces_are_local() -> None:
    """The control socket is 0600; the status port is read-only and on loopback only."""
    with lab("m9", 2, *FAST) as net:
        _, run_dir = net.host_dirs("h1")
        assert stat.S_IMODE((run_dir / "weave.sock").stat().st_mode) == 0o600
        probe = (
            "import socket,sys\n"
            "host,port,req=sys.argv[1],int(sys.argv[2]),sys.argv[3]\n"
            "try:\n"
            "    s=socket.create_connection((host,port),timeout=3)\n"
            "except OSError as e:\n"
            "    print('refused'); sys.exit(0)\n"
            "s.sendall(req.encode()+b' HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n"
            "Content-Length: 0\\r\\n\\r\\n')\n"
            "print(s.recv(100).split()[1].decode())\n"
        )
        local = "127.0.0.1"
        assert (
            net.exec("h1", sys.executable, "-c", probe, local, "6782", "GET /status").stdout.strip()
            == "200"
        )
        assert net.exec(
            "h1", sys.executable, "-c", probe, local, "6782", "POST /connect"
        ).stdout.strip() in ("404", "405")
        remote = net.exec("h2", sys.executable, "-c", probe, "198.18.0.1", "6782", "GET /status")
        assert remote.stdout.strip() == "refused"


def test_connect_forget_and_bogus_targets() -> None:
    """IT17: connect to bogus addresses, connect --replace and forget: targets follow."""
    with lab("m2", 2, *FAST) as net:
        wait_for("mesh", lambda: full_mesh(net, ["h1", "h2"]))
        net.weave("h2", "connect", "198.18.0.99", "198.18.0.98:7000")
        targets = set(net.weave("h2", "status", "targets").stdout.split())
        assert targets == {"198.18.0.1", "198.18.0.99", "198.18.0.98:7000"}

        def bogus_explained() -> bool:
            lines = net.weave("h2", "status", "connections").stdout.splitlines()
            bogus = [line for line in lines if "198.18.0.99" in line]
            return (
                bool(bogus)
                and all(
                    ("retrying" in line or "failed" in line or "connecting" in line)
                    for line in bogus
                )
                and any("dial" in line or "connecting" in line for line in bogus)
            )

        wait_for("bogus target explained", bogus_explained, timeout=30)
        net.weave("h2", "forget", "198.18.0.99")
        assert "198.18.0.99" not in net.weave("h2", "status", "targets").stdout
        net.weave("h2", "connect", "--replace", "198.18.0.1")
        assert net.weave("h2", "status", "targets").stdout.split() == ["198.18.0.1"]
        assert established_peers(net.report("h2")) == {"h1"}
        bad = net.weave("h2", "connect", "not a peer", check=False)
        assert (
            bad.returncode == 10 and "host[:port]" in bad.stderr and "Traceback" not in bad.stderr
        )


def test_targets_persist_with_resume_and_launch_replaces_them() -> None:
    """IT18: targets persist across a restart with --resume; stop + launch <peers> replaces them."""
    with lab("m3", 3, *FAST) as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        net.weave("h3", "connect", "198.18.0.2")
        name = net.report("h3")["Router"]["Name"]
        net.weave("h3", "stop")
        assert net.weave("h3", "status", check=False).returncode == 3
        net.weave("h3", "launch", "--resume", *FAST)
        rep = net.report("h3")
        assert rep["Router"]["Name"] == name
        assert sorted(rep["Router"]["Targets"]) == ["198.18.0.1", "198.18.0.2"]
        wait_for("h3 back in mesh", lambda: full_mesh(net, HOSTS3))
        net.weave("h3", "stop")
        net.weave("h3", "launch", "198.18.0.2", *FAST)
        assert net.report("h3")["Router"]["Targets"] == ["198.18.0.2"]
        twice = net.weave("h3", "launch", check=False)
        assert twice.returncode == 4 and "already running" in twice.stderr


def test_losing_the_first_host_leaves_the_rest_connected() -> None:
    """No special first node: kill h1 for good; h2 and h3 stay connected and forget h1."""
    with lab("m4", 3, "--no-restart", *FAST) as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        net_status = net.status()
        pid = next(h["router_pid"] for h in net_status["hosts"] if h["name"] == "h1")
        os.kill(pid, signal.SIGKILL)
        for host in ("h2", "h3"):
            wait_for(
                f"{host} forgets h1", lambda h=host: known_peers(net.report(h)) == {"h2", "h3"}
            )
            assert established_peers(net.report(host)) == ({"h2", "h3"} - {host})


def test_partition_and_heal_reconverge() -> None:
    with lab("m5", 3, *FAST) as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        weave("lab", "partition", "--name", "m5", "h2", "h3")
        wait_for(
            "h2-h3 link down", lambda: "h3" not in established_peers(net.report("h2")), timeout=30
        )
        # h2 still knows h3 through h1, which routes between them.
        assert known_peers(net.report("h2")) == set(HOSTS3)
        routes = net.report("h2")["Router"]["UnicastRoutes"]
        h1_name = net.report("h1")["Router"]["Name"]
        h3_name = net.report("h3")["Router"]["Name"]
        assert {"Dest": h3_name, "Via": h1_name} in routes
        weave("lab", "heal", "--name", "m5")
        wait_for("full mesh again", lambda: full_mesh(net, HOSTS3), timeout=45)


def test_restart_keeps_name_and_supervisor_restarts_crashed_router() -> None:
    with lab("m6", 2, *FAST) as net:
        wait_for("mesh", lambda: full_mesh(net, ["h1", "h2"]))
        name = net.report("h2")["Router"]["Name"]
        weave("lab", "restart", "--name", "m6", "h2")
        assert net.report("h2")["Router"]["Name"] == name
        wait_for("mesh after restart", lambda: full_mesh(net, ["h1", "h2"]))
        old_pid = next(h["router_pid"] for h in net.status()["hosts"] if h["name"] == "h2")
        weave("lab", "kill", "--name", "m6", "h2")

        def restarted() -> bool:
            pid = next(h["router_pid"] for h in net.status()["hosts"] if h["name"] == "h2")
            return (
                bool(pid)
                and pid != old_pid
                and net.weave("h2", "status", check=False).returncode == 0
            )

        wait_for("supervisor restart", restarted, timeout=30)
        assert net.report("h2")["Router"]["Name"] == name
        wait_for("mesh after crash", lambda: full_mesh(net, ["h1", "h2"]))


def test_reset_leaves_nothing_behind() -> None:
    with lab("m7", 2, *FAST) as net:
        wait_for("mesh", lambda: full_mesh(net, ["h1", "h2"]))
        state_dir, run_dir = net.host_dirs("h2")
        assert any(state_dir.iterdir())
        net.weave("h2", "reset")
        leftovers = [p for d in (state_dir, run_dir) if d.exists() for p in d.iterdir()]
        assert leftovers == []
        assert net.exec(
            "h2", "sh", "-c", "ls /proc/*/exe -l 2>/dev/null | grep -c weave-router || true"
        ).stdout.strip() in ("", "0")
        assert net.weave("h2", "status", check=False).returncode == 3
        net.weave("h2", "reset")  # idempotent
        wait_for("h1 forgets h2", lambda: known_peers(net.report("h1")) == {"h1"})


def test_garbage_and_oversized_frames_close_only_that_connection() -> None:
    with lab("m8", 3, *FAST) as net:
        wait_for("full mesh", lambda: full_mesh(net, HOSTS3))
        rng = random.Random(7)
        payloads = [
            bytes(rng.getrandbits(8) for _ in range(4096)),
            b"\xff" * 64,
            b"",  # connect and hang up
        ]
        script = (
            "import socket,sys,time\n"
            "data=bytes.fromhex(sys.argv[1])\n"
            "s=socket.create_connection(('198.18.0.1',6783),timeout=5)\n"
            "s.sendall(data)\n"
            "s.settimeout(5)\n"
            "try:\n    s.recv(65536); s.recv(65536)\nexcept Exception: pass\n"
            "s.close()\n"
        )
        for data in payloads:
            net.exec("h3", sys.executable, "-c", script, data.hex())
        # A well-formed header followed by a 4 GiB length prefix must be refused before allocating.
        header = net.exec(
            "h3",
            sys.executable,
            "-c",
            "import socket;s=socket.create_connection(('198.18.0.1',6783),timeout=5);"
            "s.settimeout(5);print(s.recv(64).hex())",
        ).stdout.strip()
        assert header, "the router sends its version header first"
        oversized = bytes.fromhex(header) + b"\xff\xff\xff\xff" + b"x" * 1024
        net.exec("h3", sys.executable, "-c", script, oversized.hex())
        time.sleep(1)
        rep = net.report("h1")
        assert established_peers(rep) == {"h2", "h3"}
        assert net.weave("h1", "status", check=False).returncode == 0
