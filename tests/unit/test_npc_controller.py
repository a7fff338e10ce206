"""The controller task over a kernel in memory: when it applies, what it never does (S25)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from typing import Any

import pytest

from weave_cli.npc import controller, ir, kubeapi, nftables


class MemoryKernel:
    """Holds the digest the tables would carry; counts applies; can fail them."""

    def __init__(self, present: set[str] | None = None) -> None:
        self.present = present
        self.applied: list[ir.Ruleset] = []
        self.fail = 0

    def digests(self) -> set[str] | None:
        return self.present

    def apply(self, rs: ir.Ruleset) -> str:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("nft: simulated failure")
        self.applied.append(rs)
        self.present = {nftables.digest(rs)}
        return nftables.digest(rs)

    def port(self) -> controller.Kernel:
        return controller.Kernel(self.digests, self.apply)


def pod(ns: str, name: str, ip: str, app: str = "web") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "uid": name, "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip}}


def namespace(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}}


def policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


DENY = policy("prod", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
A = IPv4Address("10.32.0.2")


def synced(kind: kubeapi.Kind, *objs: dict[str, Any]) -> kubeapi.Synced:
    return kubeapi.Synced(kind, {kubeapi.object_key(kind, o): o for o in objs})


def full_sync(*policies: dict[str, Any]) -> list[kubeapi.Message]:
    return [synced("pods", pod("prod", "a", str(A)), pod("dev", "b", "10.32.0.3")),
            synced("namespaces", namespace("prod"), namespace("dev")),
            synced("networkpolicies", *policies)]


async def drive(kernel: MemoryKernel, steps: list[Any], interval: float = 0.05) -> None:
    """Feed messages (and ``("sleep", s)`` pauses) to a running controller, then cancel it."""
    queue: asyncio.Queue[kubeapi.Message] = asyncio.Queue()
    task = asyncio.create_task(controller.run(queue, kernel.port(), interval))
    await asyncio.sleep(0.01)
    for step in steps:
        if isinstance(step, tuple):
            await asyncio.sleep(step[1])
        elif callable(step):
            step()
        else:
            queue.put_nowait(step)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_no_tables_means_closed_until_every_kind_is_listed() -> None:
    kernel = MemoryKernel()
    msgs = full_sync(DENY)
    asyncio.run(drive(kernel, msgs[:2] + [("sleep", 0.1)]))
    assert [nftables.digest(r) for r in kernel.applied] == [nftables.digest(nftables.closed())]
    kernel = MemoryKernel()
    asyncio.run(drive(kernel, msgs))
    assert len(kernel.applied) == 2
    final = kernel.applied[-1]
    assert A in final.sets[ir.KNOWN] and A in final.sets[ir.INGRESS_ISOLATED]


def test_tables_of_a_previous_run_stay_until_the_first_complete_view() -> None:
    kernel = MemoryKernel(present={"0123456789abcdef"})
    asyncio.run(drive(kernel, full_sync()[:2] + [kubeapi.Health("networkpolicies", False, "x"),
                                                  ("sleep", 0.2)]))
    assert kernel.applied == [] and kernel.present == {"0123456789abcdef"}


def test_applies_only_changes_and_keeps_rules_while_unreachable() -> None:
    kernel = MemoryKernel(present=set())
    steps: list[Any] = [*full_sync(DENY), ("sleep", 0.1), *full_sync(DENY),
                        kubeapi.Health("pods", False, "connection refused"), ("sleep", 0.2)]
    asyncio.run(drive(kernel, steps))
    assert len(kernel.applied) == 1, "an identical relist or an outage applies nothing"
    steps = [*full_sync(DENY), kubeapi.Delete("networkpolicies", "prod/deny")]
    kernel = MemoryKernel(present=set())
    asyncio.run(drive(kernel, steps))
    assert A not in kernel.applied[-1].sets[ir.INGRESS_ISOLATED]


def test_deleted_tables_and_failed_applies_are_repaired() -> None:
    kernel = MemoryKernel(present=set())
    kernel.fail = 1

    def wipe() -> None:
        kernel.present = None

    asyncio.run(drive(kernel, [*full_sync(DENY), ("sleep", 0.2), wipe, ("sleep", 0.2)]))
    assert kernel.present == {nftables.digest(kernel.applied[-1])}
    assert len(kernel.applied) == 2, "once after the failure, once after the wipe"
    assert A in kernel.applied[-1].sets[ir.INGRESS_ISOLATED]


def test_an_unparsable_policy_closes_instead_of_opening() -> None:
    broken = policy("prod", "odd", {"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "Sideways"}]}, "policyTypes": ["Ingress"]})
    view = controller.ClusterView()
    for msg in full_sync(broken):
        view.handle(msg)
    rs = view.ruleset()
    assert rs is not None
    assert A in rs.sets[ir.INGRESS_ISOLATED] and A in rs.sets[ir.EGRESS_ISOLATED]
    assert "networkpolicies prod/odd" in view.rejected
    # A policy that was fine keeps its last good version when an update breaks it.
    view = controller.ClusterView()
    for msg in full_sync(DENY):
        view.handle(msg)
    bad = policy("prod", "deny", {"podSelector": "garbage"})
    view.handle(kubeapi.Upsert("networkpolicies", "prod/deny", bad))
    rs = view.ruleset()
    assert rs is not None and A in rs.sets[ir.INGRESS_ISOLATED]
    assert A not in rs.sets[ir.EGRESS_ISOLATED]


def test_an_unparsable_pod_stays_unknown() -> None:
    view = controller.ClusterView()
    for msg in full_sync(DENY):
        view.handle(msg)
    view.handle(kubeapi.Upsert("pods", "prod/c", {"metadata": {"namespace": "prod", "name": "c"},
                                                  "status": {"podIP": "not an address"}}))
    rs = view.ruleset()
    assert rs is not None and len(rs.sets[ir.KNOWN]) == 2
