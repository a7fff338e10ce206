"""Docker targets and the Docker events watcher against the real dockerd.

Containers are ``docker run -d --net none`` busybox containers (tests/dockerutil.py); the
"router" is a test namespace with the bridge, so nothing touches the machine's own network.
The watcher runs with a fake ``free``/``held``: what is checked is which container ids it hands
to ``free``, and when. Skipped, with the reason, when no dockerd answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from dockerutil import Containers, docker
from netutil import MemoryBook, ns_path

from weave_cli.errors import UsageError
from weave_cli.net import attach, datapath, netns, target
from weave_cli.net.docker import container_pid
from weave_cli.net.errors import TargetNotFoundError
from weave_cli.router.docker_events import DockerWatcher

pytestmark = pytest.mark.lab
MakeNs = Callable[[str], str]



def wait_exited(name: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false":
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} still running")


def test_container_pid_names_ids_and_refusals(boxes: Containers) -> None:
    cid = boxes.run("a")
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    assert container_pid(boxes.name("a")) == (cid, pid)
    assert container_pid(cid[:12]) == (cid, pid)
    boxes.run("off", "true")
    wait_exited(boxes.name("off"))
    with pytest.raises(TargetNotFoundError, match="is not running"):
        container_pid(boxes.name("off"))
    with pytest.raises(TargetNotFoundError, match="no container or namespace named"):
        container_pid(boxes.name("never"))
    boxes.run("host", net="host")
    with pytest.raises(UsageError, match="uses the host's network"):
        container_pid(boxes.name("host"))


def test_two_docker_containers_talk_over_the_bridge(boxes: Containers, make_ns: MakeNs) -> None:
    r = make_ns("r")
    datapath.ensure(ns_path(r))
    book = MemoryBook()
    ids = {tag: boxes.run(tag) for tag in ("a", "b")}
    for tag in ("a", "b"):
        ref = netns.resolve(target.parse_target(boxes.name(tag)), ns_path(r))
        assert ref.ident == ids[tag] and ref.label == boxes.name(tag)
        done = attach.attach(book, ref, [], ns_path(r))
        assert done.ident == ids[tag]
    assert sorted(book.owned) == sorted(ids.values())
    out = boxes.exec("a", "ping", "-c", "1", "-W", "3", "10.32.0.2", check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "10.32.0.1/12" in boxes.exec("a", "ip", "-4", "addr", "show", "ethwe").stdout


def test_watcher_frees_dead_containers_and_those_that_died_before(boxes: Containers) -> None:
    live, other = boxes.run("live"), boxes.run("other")
    dead = boxes.run("dead", "true")
    wait_exited(boxes.name("dead"))
    removed = boxes.run("gone")
    boxes.remove("gone")
    held = ["ns:x", live, dead, removed, other]
    freed: list[tuple[float, str]] = []

    async def free(ident: str) -> None:
        freed.append((time.monotonic(), ident))

    async def get_held() -> list[str]:
        return list(held)

    async def scenario() -> None:
        watcher = DockerWatcher(free, get_held)
        task = asyncio.create_task(watcher.run())
        await asyncio.wait_for(watcher.connected.wait(), 10)
        for _ in range(200):
            if len(freed) >= 2:
                break
            await asyncio.sleep(0.05)
        assert [i for _t, i in freed] == [dead, removed]  # the reconcile, in held() order
        killed = time.monotonic()
        await asyncio.to_thread(docker, "kill", boxes.name("live"))
        for _ in range(200):
            if any(i == live for _t, i in freed):
                break
            await asyncio.sleep(0.05)
        when = [t for t, i in freed if i == live]
        assert when and when[0] - killed < 3, freed
        await asyncio.to_thread(docker, "rm", "-f", boxes.name("live"))  # destroy: again
        for _ in range(200):
            if sum(i == live for _t, i in freed) == 2:
                break
            await asyncio.sleep(0.05)
        assert [i for _t, i in freed] == [dead, removed, live, live]
        await asyncio.to_thread(docker, "exec", boxes.name("other"), "true")  # exec_die: ignored
        await asyncio.sleep(0.5)
        assert other not in [i for _t, i in freed]
        task.cancel()

    asyncio.run(scenario())
