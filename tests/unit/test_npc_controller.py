"""The controller task over a kernel in memory: when it applies, what it never does (S25)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from typing import Any

import pytest

from weave_cli.net.errors import DatapathError
from weave_cli.npc import controller, ir, kubeapi, nftables


class MemoryKernel:
    """Holds what the tables would (a state per applied ruleset); counts applies; can fail."""

    def __init__(self, present: nftables.TableState | None = None) -> None:
        self.present = present
        self.applied: list[ir.Ruleset] = []
        self.fail = 0

    @staticmethod
    def state_of(rs: ir.Ruleset) -> nftables.TableState:
        return nftables.TableState(frozenset({nftables.digest(rs)}),
                                   frozenset({("digest", nftables.digest(rs))}))

    def read(self) -> nftables.TableState | None:
        return self.present

    def apply(self, rendered: nftables.Rendered) -> nftables.TableState:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("nft: simulated failure")
        self.applied.append(rendered.ruleset)
        self.present = self.state_of(rendered.ruleset)
        return self.present

    def port(self) -> controller.Kernel:
        return controller.Kernel(self.read, self.apply)


OLD_RUN = nftables.TableState(frozenset({"0123456789abcdef"}), frozenset({("old", 1)}))
HALF = nftables.TableState(frozenset(), frozenset({("missing", "bridge")}))


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
    kernel = MemoryKernel(present=OLD_RUN)
    asyncio.run(drive(kernel, full_sync()[:2] + [kubeapi.Health("networkpolicies", False, "x"),
                                                  ("sleep", 0.2)]))
    assert kernel.applied == [] and kernel.present == OLD_RUN
    # Tables that are not whole (one deleted, a digest rule gone) are not kept: closed.
    kernel = MemoryKernel(present=HALF)
    asyncio.run(drive(kernel, [("sleep", 0.1)]))
    assert [nftables.digest(r) for r in kernel.applied] == [nftables.digest(nftables.closed())]


def test_a_node_that_cannot_be_closed_stops_the_controller() -> None:
    kernel = MemoryKernel()
    kernel.fail = 1
    with pytest.raises(DatapathError, match="cannot close the pod ports"):
        asyncio.run(drive(kernel, []))


def test_applies_only_changes_and_keeps_rules_while_unreachable() -> None:
    kernel = MemoryKernel(present=OLD_RUN)
    steps: list[Any] = [*full_sync(DENY), ("sleep", 0.1), *full_sync(DENY),
                        kubeapi.Health("pods", False, "connection refused"), ("sleep", 0.2)]
    asyncio.run(drive(kernel, steps))
    assert len(kernel.applied) == 1, "an identical relist or an outage applies nothing"
    steps = [*full_sync(DENY), kubeapi.Delete("networkpolicies", "prod/deny")]
    kernel = MemoryKernel(present=OLD_RUN)
    asyncio.run(drive(kernel, steps))
    assert A not in kernel.applied[-1].sets[ir.INGRESS_ISOLATED]


def test_deleted_tables_and_failed_applies_are_repaired() -> None:
    kernel = MemoryKernel(present=OLD_RUN)
    kernel.fail = 1

    def wipe() -> None:
        kernel.present = None

    def edit() -> None:  # a rule deleted by hand: the digest rule is still there
        assert kernel.present is not None
        kernel.present = nftables.TableState(kernel.present.digests, frozenset())

    asyncio.run(drive(kernel, [*full_sync(DENY), ("sleep", 0.2), wipe, ("sleep", 0.2),
                               edit, ("sleep", 0.2)]))
    assert kernel.present == kernel.state_of(kernel.applied[-1])
    assert len(kernel.applied) == 3, "after the failure, after the wipe, after the edit"
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


def test_pods_that_appear_while_policies_cannot_be_listed_stay_closed() -> None:
    """A policy that isolates a new pod may be among those not seen yet (S25)."""
    view = controller.ClusterView()
    for msg in full_sync(DENY):
        view.handle(msg)
    view.handle(kubeapi.Health("networkpolicies", False, "connection refused"))
    view.handle(kubeapi.Upsert("pods", "dev/new", pod("dev", "new", "10.32.0.7")))
    view.handle(kubeapi.Upsert("pods", "dev/b", pod("dev", "b", "10.32.0.8")))  # readdressed
    rs = view.ruleset()
    assert rs is not None
    assert IPv4Address("10.32.0.7") not in rs.sets[ir.KNOWN]
    assert IPv4Address("10.32.0.8") not in rs.sets[ir.KNOWN]
    assert A in rs.sets[ir.KNOWN], "pods seen before the outage keep their rules"
    view.handle(synced("networkpolicies", DENY))
    assert view.handle(kubeapi.Health("networkpolicies", True, "listed"))
    rs = view.ruleset()
    assert rs is not None and IPv4Address("10.32.0.7") in rs.sets[ir.KNOWN]


def test_ipvs_mode_is_named_at_start(monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    import socket

    from weave_cli.npc import main

    monkeypatch.setattr(socket, "if_nametoindex", lambda name: 7)
    with caplog.at_level("WARNING", logger="weave.npc"):
        main._warn_ipvs()
    assert "IPVS mode is not supported" in caplog.text
