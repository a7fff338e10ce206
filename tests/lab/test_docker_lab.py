"""Docker containers on lab hosts: the real dockerd, the real CLI inside the hosts, real routers.

The lab's hosts share the machine's filesystem, so ``weave attach <container>`` run inside a
host (``weave lab exec hK -- weave attach ...``) reaches the machine's dockerd through its unix
socket, finds the container's pid and plugs the container's namespace into that host's bridge.
Containers are ``docker run -d --net none`` busybox containers (tests/dockerutil.py) and talk
with busybox ``ping`` through ``docker exec``, on one host's bridge and between hosts. Each
host's router follows the Docker events, so a container's death frees its addresses in the
router that holds them, and a router that was down when a container died frees them when it
comes back (the reconcile).

Skipped, with the reason, when no dockerd answers (``./run test`` starts one).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dockerutil import Containers, docker
from dputil import FAST
from ipamutil import owned
from labutil import Lab, wait_for, weave

pytestmark = pytest.mark.lab
FREED_WITHIN = 5.0  # seconds from `docker rm -f` to the address gone from the router's IPAM



def pings(boxes: Containers, tag: str, addr: str, seconds: int = 2) -> bool:
    proc = boxes.exec(tag, "ping", "-c", "1", "-W", str(seconds), addr, check=False)
    return proc.returncode == 0


def test_docker_containers_attach_talk_and_free_their_addresses_when_they_die(
    lab_names: Callable[[str], str], boxes: Containers,
) -> None:
    net = Lab(lab_names("dk1"))
    net.up(2, *FAST)
    ids = {tag: boxes.run(tag) for tag in ("a", "b", "c", "d")}
    ip_a = net.weave("h1", "attach", boxes.name("a")).stdout.strip()
    ip_b = net.weave("h1", "attach", ids["b"][:12]).stdout.strip()  # a short id works too
    ip_c = net.weave("h2", "attach", boxes.name("c")).stdout.strip()
    assert net.weave("h1", "attach", ids["a"]).stdout.strip() == ip_a  # again: same address
    assert len({ip_a, ip_b, ip_c}) == 3
    assert owned(net.name, "h1") == {ids["a"]: [f"{ip_a}/12"], ids["b"]: [f"{ip_b}/12"]}
    assert owned(net.name, "h2") == {ids["c"]: [f"{ip_c}/12"]}
    ps = sorted(line.split()[0] for line in net.weave("h1", "ps").stdout.splitlines()[1:])
    assert ps == sorted([ids["a"][:12], ids["b"][:12]])

    assert pings(boxes, "a", ip_b) and pings(boxes, "b", ip_a)  # on h1's bridge

    stopped = net.weave("h1", "attach", boxes.name("d"), check=False)
    assert stopped.returncode == 0, stopped.stderr
    ip_d = stopped.stdout.strip()
    docker("stop", "-t", "0", boxes.name("d"))
    refused = net.weave("h1", "detach", boxes.name("d"), check=False)
    assert refused.returncode == 16 and "is not running" in refused.stderr

    docker("rm", "-f", boxes.name("a"))
    wait_for("a's address freed on h1", lambda: ids["a"] not in owned(net.name, "h1"),
             timeout=FREED_WITHIN, interval=0.2)
    wait_for("d's address freed on h1 (it died by docker stop)",
             lambda: ids["d"] not in owned(net.name, "h1"), timeout=FREED_WITHIN, interval=0.2)
    assert owned(net.name, "h1") == {ids["b"]: [f"{ip_b}/12"]}
    assert owned(net.name, "h2") == {ids["c"]: [f"{ip_c}/12"]}  # other hosts' are untouched
    assert ip_d not in net.weave("h1", "ps").stdout

    # A container that dies while its router is down is freed when the router is back.
    net.weave("h1", "stop")
    docker("rm", "-f", boxes.name("b"))
    weave("lab", "restart", "--name", net.name, "h1")
    wait_for("b's address freed by the reconcile", lambda: owned(net.name, "h1") == {},
             timeout=FREED_WITHIN, interval=0.2)
    assert owned(net.name, "h2") == {ids["c"]: [f"{ip_c}/12"]}


def test_docker_containers_on_two_hosts_reach_each_other(
    lab_names: Callable[[str], str], boxes: Containers,
) -> None:
    net = Lab(lab_names("dk2"))
    net.up(2, *FAST)
    boxes.run("c1")
    boxes.run("c2")
    ip1 = net.weave("h1", "attach", boxes.name("c1")).stdout.strip()
    ip2 = net.weave("h2", "attach", boxes.name("c2")).stdout.strip()
    assert ip1 != ip2
    # Over the data path between hosts (fastdp, else sleeve); the first ping may wait for it.
    wait_for(f"c1 on h1 reaching c2 on h2 at {ip2}", lambda: pings(boxes, "c1", ip2, seconds=1),
             timeout=15, interval=0.2)
    assert pings(boxes, "c2", ip1)
