"""`weave lab` itself: hosts as namespaces, exec, partitions, and cleanup that always works.

Kernel tests (marked ``lab``) build bare labs (no routers), each under its own name, through
the real CLI (``python -m weave_cli lab ...``); the ``lab_names`` fixture removes them even when
a test fails. Reachability is checked with a raw-socket ICMP echo and a TCP connect written in
Python below, so the tests need no ping or netcat. The unmarked tests check the pure naming
and rule decisions and run anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from weave_cli.errors import LabError, PrivilegeError
from weave_cli.lab import rules
from weave_cli.lab.topology import Host, Lab, host_env, launch_argv, validate_lab_name

PY = sys.executable
Names = Callable[[str], str]
LabRun = Callable[..., subprocess.CompletedProcess[str]]
Leftovers = Callable[[str], list[str]]
ICMP_ECHO = """
import os, socket, struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
dst, tries, ident = sys.argv[1], int(sys.argv[2]), os.getpid() & 0xffff
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); sock.settimeout(1.0)
for seq in range(1, tries + 1):
    body = struct.pack('!HH', ident, seq) + b'weavelab'
    sock.sendto(struct.pack('!BBH', 8, 0, csum(b'\\x08\\x00\\x00\\x00' + body)) + body, (dst, 0))
    try:
        while True:
            buf, addr = sock.recvfrom(2048); ihl = (buf[0] & 15) * 4
            mine = buf[ihl + 4:ihl + 6] == struct.pack('!H', ident)
            if addr[0] == dst and buf[ihl] == 0 and mine:
                sys.exit(0)
    except TimeoutError:
        pass
sys.exit(1)
"""
TCP_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 7), timeout=1.5).close()
except ConnectionRefusedError:
    pass  # a RST came back: the host is reachable over TCP
except OSError:
    sys.exit(1)
"""


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def failed(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def pings(lab: LabRun, name: str, src: str, dst: str) -> bool:
    """Echo replies within 3 tries of 1 s (use ``blocked`` to assert the opposite quickly)."""
    return lab("exec", "--name", name, src, "--", PY, "-c", ICMP_ECHO, dst, "3").returncode == 0


def blocked(lab: LabRun, name: str, src: str, dst: str) -> bool:
    return lab("exec", "--name", name, src, "--", PY, "-c", ICMP_ECHO, dst, "1").returncode == 1


def tcp_reaches(lab: LabRun, name: str, src: str, dst: str) -> bool:
    return lab("exec", "--name", name, src, "--", PY, "-c", TCP_PROBE, dst).returncode == 0


def root_links() -> set[str]:
    """Link names in the machine's own namespace (the lab must never change them)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def alive(pid: int) -> bool:
    """Running (a zombie is dead: whether it is reaped is up to pid 1, not to the lab)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def mtu(netns: str, ifname: str) -> int:
    out = subprocess.run(["ip", "-n", netns, "-j", "link", "show", ifname],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)[0]["mtu"])


# --- kernel tests -----------------------------------------------------------------------------

@pytest.mark.lab
def test_up_bare_builds_hosts_on_one_underlay(lab: LabRun, lab_names: Names) -> None:
    name = lab_names("t1")
    before = root_links()
    out = ok(lab("up", "--name", name, "--hosts", "3", "--bare")).stdout
    assert "h3  wl-t1-h3  198.18.0.3" in out
    netns = set(os.listdir("/run/netns"))
    assert {"wl-t1-sw", "wl-t1-h1", "wl-t1-h2", "wl-t1-h3"} <= netns
    for k in (1, 2, 3):
        assert ok(lab("exec", "--name", name, f"h{k}", "--", "hostname")).stdout == f"h{k}\n"
        assert mtu(f"wl-t1-h{k}", "eth0") == 1500 and mtu("wl-t1-sw", f"h{k}") == 1500
    addr = ok(lab("exec", "--name", name, "h2", "--", "ip", "-4", "-o", "addr", "show", "eth0"))
    assert "198.18.0.2/24" in addr.stdout
    assert pings(lab, name, "h1", "198.18.0.3") and pings(lab, name, "h3", "198.18.0.1")
    assert root_links() == before, "the lab must not touch the machine's own namespace"
    doc = json.loads(ok(lab("status", "--name", name, "--json")).stdout)
    assert doc["lab"] == name and [h["name"] for h in doc["hosts"]] == ["h1", "h2", "h3"]
    assert doc["hosts"][1] == {
        "name": "h2", "netns": "wl-t1-h2", "address": "198.18.0.2",
        "state_dir": "/var/lib/weave-lab/t1/h2", "run_dir": "/run/weave-lab/t1/h2",
        "router_pid": None, "ready": False,
    }
    table = ok(lab("status", "--name", name)).stdout
    assert "wl-t1-h1" in table and "READY" in table
    failed(lab("up", "--name", name, "--hosts", "2", "--bare"), 7, "already exists")


@pytest.mark.lab
def test_exec_passes_stdio_exit_status_and_env(lab: LabRun, lab_names: Names) -> None:
    name = lab_names("t2")
    ok(lab("up", "--name", name, "--hosts", "2", "--bare"))
    proc = lab("exec", "--name", name, "h2", "--", "sh", "-c", "cat; echo err >&2; exit 7",
               input="from stdin\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "from stdin\n", "err\n")
    env = ok(lab("exec", "--name", name, "h1", "--", "sh", "-c",
                 'echo "$WEAVE_STATE_DIR $WEAVE_RUN_DIR $PATH"')).stdout.split()
    assert env[:2] == ["/var/lib/weave-lab/t2/h1", "/run/weave-lab/t2/h1"]
    assert env[2].endswith(":" + os.path.dirname(sys.executable))
    plain = ok(lab("exec", "--name", name, "h1", "sh", "-c", "echo no-dashes"))
    assert plain.stdout == "no-dashes\n"
    failed(lab("exec", "--name", name, "h7", "--", "true"), 7, "unknown host 'h7'", "h1, h2")
    failed(lab("exec", "--name", "nolab", "h1", "--", "true"), 7, "no lab named 'nolab'")


@pytest.mark.lab
def test_two_execs_run_at_once(lab: LabRun, lab_names: Names, tmp_path: Path) -> None:
    """The first exec waits for a file only the second creates: a lock would deadlock them."""
    name = lab_names("t3")
    ok(lab("up", "--name", name, "--hosts", "2", "--bare"))
    flag = tmp_path / "flag"
    waiter = subprocess.Popen(
        [PY, "-m", "weave_cli", "lab", "exec", "--name", name, "h1", "--", "sh", "-c",
         f"i=0; while [ ! -e {flag} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
         f"test -e {flag} && hostname"],
        stdout=subprocess.PIPE, text=True,
    )
    time.sleep(0.3)
    ok(lab("exec", "--name", name, "h2", "--", "touch", str(flag)))
    out, _ = waiter.communicate(timeout=30)
    assert (waiter.returncode, out) == (0, "h1\n")


@pytest.mark.lab
def test_partition_and_heal(lab: LabRun, lab_names: Names) -> None:
    name = lab_names("t4")
    ok(lab("up", "--name", name, "--hosts", "3", "--bare"))
    ok(lab("partition", "--name", name, "h1", "h2"))
    ok(lab("partition", "--name", name, "h2", "h1"))  # idempotent, either order
    assert blocked(lab, name, "h1", "198.18.0.2") and blocked(lab, name, "h2", "198.18.0.1")
    assert pings(lab, name, "h1", "198.18.0.3") and pings(lab, name, "h3", "198.18.0.2")
    assert "partitions: h1-h2 (all)" in ok(lab("status", "--name", name)).stdout
    ok(lab("heal", "--name", name, "h1", "h2"))
    ok(lab("heal", "--name", name, "h1", "h2"))
    assert pings(lab, name, "h1", "198.18.0.2")

    ok(lab("partition", "--name", name, "h1", "h3", "--tcp-only"))
    assert pings(lab, name, "h1", "198.18.0.3"), "--tcp-only must let ICMP through"
    assert not tcp_reaches(lab, name, "h1", "198.18.0.3")
    assert tcp_reaches(lab, name, "h1", "198.18.0.2")
    listing = subprocess.run(["nsenter", "--net=/run/netns/wl-t4-sw", "nft", "list", "ruleset"],
                             capture_output=True, text=True, check=True).stdout
    assert listing.count("drop") == 2 and "meta l4proto tcp" in listing
    ok(lab("heal", "--name", name))
    ok(lab("heal", "--name", name))
    assert tcp_reaches(lab, name, "h1", "198.18.0.3")
    failed(lab("partition", "--name", name, "h1", "h1"), 7, "itself")
    failed(lab("partition", "--name", name, "h1", "h9"), 7, "unknown host")
    failed(lab("partition", "--name", name, "h1", "h2", "--tcp-only", "--udp-only"), 7)
    failed(lab("heal", "--name", name, "h1"), 7, "two hosts or none")


@pytest.mark.lab
def test_down_removes_everything_and_kills_processes(
    lab: LabRun, lab_names: Names, leftovers: Leftovers
) -> None:
    name = lab_names("t5")
    ok(lab("up", "--name", name, "--hosts", "2", "--bare"))
    sleeper = subprocess.Popen([PY, "-m", "weave_cli", "lab", "exec", "--name", name, "h2", "--",
                                "sh", "-c", "trap '' TERM; sleep 300"])
    time.sleep(0.5)
    assert leftovers(name)
    ok(lab("down", "--name", name))
    assert sleeper.wait(timeout=20) != 0, "down kills what runs in the lab, even if it ignores TERM"
    assert leftovers(name) == []
    assert "nothing to do" in ok(lab("down", "--name", name)).stdout


@pytest.mark.lab
def test_down_after_a_crash_without_metadata(
    lab: LabRun, lab_names: Names, leftovers: Leftovers
) -> None:
    name = lab_names("t6")
    ok(lab("up", "--name", name, "--hosts", "2", "--bare"))
    Path(f"/run/weave-lab/{name}/lab.json").unlink()
    subprocess.run(["ip", "netns", "add", f"wl-{name}-h9"], check=True)  # half-made host
    sleeper = subprocess.Popen(["nsenter", f"--net=/run/netns/wl-{name}-sw", "sleep", "300"])
    ok(lab("down", "--name", name))
    assert sleeper.wait(timeout=20) != 0
    assert leftovers(name) == []


@pytest.mark.lab
def test_bad_input_is_one_clear_error(
    lab: LabRun, lab_names: Names, leftovers: Leftovers
) -> None:
    failed(lab("up", "--name", "Bad!", "--hosts", "2", "--bare"), 7, "invalid lab name")
    failed(lab("up", "--name", "muchtoolong", "--hosts", "2", "--bare"), 7, "invalid lab name")
    failed(lab("status", "--name", "nolab"), 7, "no lab named 'nolab'")
    name = lab_names("t7")
    failed(lab("up", "--name", name, "--hosts", "0", "--bare"), 7, "--hosts")
    assert leftovers(name) == []
    ok(lab("up", "--name", name, "--hosts", "1", "--bare"))
    failed(lab("kill", "--name", name, "h1"), 7, "no router is running on h1")
    failed(lab("restart", "--name", name, "h1"), 7, "no recorded launch")


@pytest.mark.lab
def test_failed_launch_removes_the_half_made_lab(
    lab: LabRun, lab_names: Names, leftovers: Leftovers
) -> None:
    """A launch option the CLI rejects makes `up` fail after the namespaces exist."""
    name = lab_names("t8")
    failed(lab("up", "--name", name, "--hosts", "2", "--no-such-launch-option"), 7, "h1")
    assert leftovers(name) == []


@pytest.mark.lab
def test_routers_launch_kill_restart_and_down(
    lab: LabRun, lab_names: Names, leftovers: Leftovers
) -> None:
    """The non-bare path with the real routers (no supervisor, so a kill stays dead)."""
    name = lab_names("t9")
    ok(lab("up", "--name", name, "--hosts", "2", "--no-restart"))
    hosts = json.loads(ok(lab("status", "--name", name, "--json")).stdout)["hosts"]
    assert all(h["ready"] and h["router_pid"] for h in hosts), hosts
    recorded = json.loads(Path(f"/run/weave-lab/{name}/lab.json").read_text())["launch"]
    assert recorded["h2"][2:] == ["weave_cli", "join", "198.18.0.1", "--no-restart"]
    old = hosts[1]["router_pid"]
    assert ok(lab("kill", "--name", name, "h2")).stdout == f"killed router pid {old} on h2\n"
    assert not alive(old)
    h2 = json.loads(ok(lab("status", "--name", name, "--json")).stdout)["hosts"][1]
    assert (h2["router_pid"], h2["ready"]) == (None, False)
    ok(lab("restart", "--name", name, "h2"))
    h2 = json.loads(ok(lab("status", "--name", name, "--json")).stdout)["hosts"][1]
    assert h2["ready"] and h2["router_pid"] not in (None, old)
    final = json.loads(ok(lab("status", "--name", name, "--json")).stdout)["hosts"]
    pids = [h["router_pid"] for h in final]
    ok(lab("down", "--name", name))
    assert not any(alive(pid) for pid in pids)
    assert leftovers(name) == []


# --- pure decisions (no root needed) ----------------------------------------------------------

def test_naming_scheme() -> None:
    h = Lab("t1").host(12)
    assert (h.name, h.netns, h.address) == ("h12", "wl-t1-h12", "198.18.0.12")
    assert h.cidr == "198.18.0.12/24"
    assert str(h.run_dir) == "/run/weave-lab/t1/h12"
    assert str(h.state_dir) == "/var/lib/weave-lab/t1/h12"
    assert str(h.uts_file) == "/run/weave-lab/t1/h12.uts"
    lab = Lab("a")
    assert lab.switch_netns == "wl-a-sw" and lab.owns_netns("wl-a-h3") and lab.owns_netns("wl-a-sw")
    for foreign in ("wl-ab-h1", "wl-a-x", "wl-a-h0", "wl-a-h1x", "xwl-a-h1"):
        assert not lab.owns_netns(foreign), foreign
    found = lab.hosts_from_netns(["wl-a-h10", "wl-a-sw", "wl-a-h2", "wl-b-h1"])
    assert [x.name for x in found] == ["h2", "h10"]


@pytest.mark.parametrize("bad", ["", "Default", "a-b", "123456789", "lab_1", "é"])
def test_lab_names_are_validated(bad: str) -> None:
    with pytest.raises(LabError, match="invalid lab name"):
        validate_lab_name(bad)


def test_launch_argv_and_env() -> None:
    lab = Lab("x")
    first = launch_argv("py", lab.host(1), ["--no-restart"])
    assert first == ["py", "-m", "weave_cli", "launch", "--no-restart"]
    assert launch_argv("py", lab.host(3), []) == ["py", "-m", "weave_cli", "join", "198.18.0.1"]
    env = host_env({"PATH": "/bin", "HOME": "/root"}, lab.host(2), "/venv/bin")
    assert env == {
        "PATH": "/bin:/venv/bin", "HOME": "/root",
        "WEAVE_STATE_DIR": "/var/lib/weave-lab/x/h2", "WEAVE_RUN_DIR": "/run/weave-lab/x/h2",
    }


def test_partition_rules_are_keyed_by_pair() -> None:
    h1, h2 = Host("x", 1), Host("x", 2)
    assert rules.comment(h2, h1, "tcp") == "wl:h1-h2:tcp"
    assert rules.parse_comment("wl:h1-h2:tcp") == (("h1", "h2"), "tcp")
    assert rules.parse_comment("wl:h1-h2:icmp") is None and rules.parse_comment("other") is None
    listing = json.dumps({"nftables": [
        {"metainfo": {}}, {"chain": {"name": "forward"}},
        {"rule": {"handle": 4, "comment": "wl:h1-h2:all", "expr": []}},
        {"rule": {"handle": 5, "comment": "wl:h1-h2:all", "expr": []}},
        {"rule": {"handle": 6, "comment": "wl:h1-h3:udp", "expr": []}},
    ]})
    existing = rules.parse_listing(listing)
    assert [r.handle for r in existing] == [4, 5, 6]
    script = rules.partition_script(h2, h1, "tcp", existing)
    assert "handle 4" in script and "handle 5" in script and "handle 6" not in script
    assert script.count("meta l4proto tcp counter drop") == 2
    assert "ip saddr 198.18.0.2 ip daddr 198.18.0.1" in script
    assert rules.heal_script(h1, h2, existing).count("delete rule") == 2
    assert rules.heal_script(h1, Host("x", 3), []) == ""
    assert rules.parse_listing("") == []


def test_every_command_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from weave_cli.commands.lab import app

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    runner = CliRunner()
    for args in (["up", "--hosts", "2"], ["down"], ["status"], ["exec", "h1", "--", "true"],
                 ["kill", "h1"], ["restart", "h1"], ["partition", "h1", "h2"], ["heal"], ["demo"]):
        result = runner.invoke(app, args)
        assert isinstance(result.exception, PrivilegeError), (args, result.output)
        assert result.exception.hint == "run it with sudo"
    assert runner.invoke(app, ["up", "--help"]).exit_code == 0


def test_importing_the_command_is_cheap() -> None:
    code = ("import sys, weave_cli.commands.lab; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'rich')))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
