"""The controller: one asyncio task owns the cluster view and the tables in the kernel.

``ClusterView`` (pure) holds the parsed pods, namespaces and policies by key, fed by the
informers' messages (``kubeapi``); ``ruleset()`` is None until every kind has been listed
completely once, then the compiled ``Ruleset``. ``run`` is the task: it applies a ruleset only
when it differs from the one the kernel holds, and checks every ``interval`` seconds that the
kernel still holds it.

Failing closed (S25) is a property of what this module never does:

* it never deletes or flushes a table: not on exit, not on a crash, not when the API server is
  unreachable (the informers keep the last view and retry; nothing is recompiled from a
  partial list, since an informer reports a kind only after a complete list);
* at start it leaves the tables of the previous run in place until the first complete view;
  only when there are none does it install ``nftables.closed()``, where no pod is known and
  every pod port of the node is closed;
* while the policies cannot be listed, a pod that appears (or changes address) stays unknown,
  so closed, until they can (a policy that isolates it may be among those not seen);
* a pod it cannot parse stays unknown, so closed; a policy it cannot parse keeps its previous
  version, or, when it has none, is replaced by a deny-all of its namespace in both directions
  (logged), since ignoring a policy could open what it closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from weave_cli.net.errors import DatapathError
from weave_cli.npc import compile as npc_compile
from weave_cli.npc import kubeapi, model, nftables
from weave_cli.npc.ir import Ruleset

log = logging.getLogger("weave.npc")
CLOSED = nftables.render(nftables.closed())
KINDS = kubeapi.KINDS


def _deny_all(obj: Any) -> model.Policy | None:
    """The stand-in for a policy that cannot be parsed: deny all in its namespace."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    try:
        return model.parse_policy({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        })
    except model.ModelError:
        return None


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "pods": model.parse_pod,
    "namespaces": model.parse_namespace,
    "networkpolicies": model.parse_policy,
}


@dataclass
class ClusterView:
    """Parsed objects by kind, then key ("namespace/name", or "name" for namespaces)."""

    objects: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})
    synced: set[str] = field(default_factory=set)
    # Keys whose object could not be parsed, with the reason (logged once per new reason).
    rejected: dict[str, str] = field(default_factory=dict)
    # While the policies' informer fails, a policy that isolates a new pod may be among those
    # not seen yet: pods that appear (or change address) meanwhile are held out of the view,
    # so closed, until the policies have been listed again.
    policies_ok: bool = True
    held: set[str] = field(default_factory=set)

    def _hold_if_new(self, key: str, parsed: Any) -> None:
        before = self.objects["pods"].get(key)
        if not self.policies_ok and (before is None or before.ip != parsed.ip):
            self.held.add(key)

    def _parse(self, kind: str, key: str, obj: Any) -> Any | None:
        try:
            parsed = _PARSERS[kind](obj)
        except model.ModelError as err:
            reason = str(err)
            if self.rejected.get(f"{kind} {key}") != reason:
                log.warning("npc: %s %s ignored: %s", kind, key, reason)
            self.rejected[f"{kind} {key}"] = reason
            if kind != "networkpolicies":
                return None
            previous = self.objects[kind].get(key)
            if previous is not None:
                return previous
            log.warning("npc: policy %s stands for deny-all of its namespace until fixed", key)
            return _deny_all(obj)
        self.rejected.pop(f"{kind} {key}", None)
        return parsed

    def handle(self, msg: kubeapi.Message) -> bool:
        """Take one informer message; whether the view changed."""
        if isinstance(msg, kubeapi.Health):
            if msg.kind != "networkpolicies" or msg.ok == self.policies_ok:
                return False
            self.policies_ok = msg.ok
            released = bool(self.held) and msg.ok
            if msg.ok:
                self.held.clear()
            return released
        if isinstance(msg, kubeapi.Synced):
            fresh = {}
            for key in [k for k in self.rejected if k.startswith(f"{msg.kind} ")]:
                if key.split(" ", 1)[1] not in msg.objects:
                    del self.rejected[key]
            for key, obj in msg.objects.items():
                parsed = self._parse(msg.kind, key, obj)
                if parsed is not None:
                    if msg.kind == "pods":
                        self._hold_if_new(key, parsed)
                    fresh[key] = parsed
            if msg.kind == "pods":
                self.held &= set(fresh)
            changed = fresh != self.objects[msg.kind] or msg.kind not in self.synced
            self.objects[msg.kind] = fresh
            self.synced.add(msg.kind)
            return changed
        if isinstance(msg, kubeapi.Upsert):
            parsed = self._parse(msg.kind, msg.key, msg.obj)
            before = self.objects[msg.kind].get(msg.key)
            if parsed is None:
                self.objects[msg.kind].pop(msg.key, None)
            else:
                if msg.kind == "pods":
                    self._hold_if_new(msg.key, parsed)
                self.objects[msg.kind][msg.key] = parsed
            return parsed != before
        if isinstance(msg, kubeapi.Delete):
            self.rejected.pop(f"{msg.kind} {msg.key}", None)
            self.held.discard(msg.key)
            return self.objects[msg.kind].pop(msg.key, None) is not None
        return False

    def ruleset(self) -> Ruleset | None:
        if not self.synced.issuperset(KINDS):
            return None
        pods = [pod for key, pod in self.objects["pods"].items() if key not in self.held]
        return npc_compile.compile_policies(
            pods, self.objects["namespaces"].values(),
            self.objects["networkpolicies"].values())


@dataclass
class Kernel:
    """The effects the task needs, blocking (run in a worker thread): what the tables hold
    (None: no tables), replace them (and what they hold then), br_netfilter's switch."""

    read: Callable[[], nftables.TableState | None]
    apply: Callable[[nftables.Rendered], nftables.TableState]
    ensure_switch: Callable[[], str | None] = lambda: None


async def _apply(kernel: Kernel, rendered: nftables.Rendered,
                 why: str) -> nftables.TableState | None:
    try:
        applied = await asyncio.to_thread(kernel.apply, rendered)
    except Exception as err:  # noqa: BLE001 - logged; the old tables stay and we retry
        log.error("npc: could not apply the policy (%s); the previous rules stay: %s", why, err)
        return None
    log.info("npc: policy applied (%s): ruleset %s", why, rendered.digest)
    return applied


async def start(kernel: Kernel) -> nftables.TableState | None:
    """Before the first view: keep tables that are whole and ours, else close every pod port
    (raises ``DatapathError`` when even that fails: a node must not stay open)."""
    if (changed := await asyncio.to_thread(kernel.ensure_switch)) is not None:
        log.info("npc: %s", changed)
    present = await asyncio.to_thread(kernel.read)
    if present is not None and present.digests:
        log.info("npc: keeping the policy tables in the kernel until the API server is read")
        return None
    why = "no tables yet" if present is None else "tables not whole"
    try:
        applied = await asyncio.to_thread(kernel.apply, CLOSED)
    except Exception as err:
        raise DatapathError(f"cannot close the pod ports ({why}): {err}",
                            "check that nft works in this namespace") from None
    log.info("npc: %s: every pod port closed until the API server is read", why)
    return applied


async def run(queue: asyncio.Queue[kubeapi.Message], kernel: Kernel,
              interval: float = 5.0, view: ClusterView | None = None) -> None:
    """The controller task: forever, until cancelled (which leaves the tables as they are)."""
    view = view or ClusterView()
    health: dict[str, bool] = {}
    applied = await start(kernel)
    wanted = CLOSED if applied is not None else None
    dirty = False
    loop = asyncio.get_running_loop()
    next_check = loop.time() + interval
    while True:
        try:
            msg: kubeapi.Message | None = await asyncio.wait_for(
                queue.get(), timeout=max(0.0, next_check - loop.time()))
        except TimeoutError:
            msg = None
        while msg is not None:
            if isinstance(msg, kubeapi.Health) and health.get(msg.kind) != msg.ok:
                health[msg.kind] = msg.ok
                (log.info if msg.ok else log.warning)(
                    "npc: %s %s%s", msg.kind, "in sync" if msg.ok else "unreachable",
                    "" if msg.ok else f" ({msg.reason}); the rules in the kernel stay")
            dirty |= view.handle(msg)
            msg = queue.get_nowait() if not queue.empty() else None
        # Compiling and rendering thousands of pods takes a while: in a worker thread, so the
        # informers keep reading meanwhile (only this task touches the view, and it waits).
        if dirty and (fresh := await asyncio.to_thread(_compiled, view)) is not None:
            dirty = False
            wanted = fresh
            if applied is None or wanted.digest not in applied.digests:
                applied = await _apply(kernel, wanted, "cluster changed") or applied
        if loop.time() >= next_check:
            applied = await _reconcile(kernel, wanted, applied)
            next_check = loop.time() + interval


def _compiled(view: ClusterView) -> nftables.Rendered | None:
    rs = view.ruleset()
    return None if rs is None else nftables.render(rs)


async def _reconcile(kernel: Kernel, wanted: nftables.Rendered | None,
                     applied: nftables.TableState | None) -> nftables.TableState | None:
    """Every interval: the tables hold exactly what was applied last, or are rewritten
    (``wanted`` None: tables of an earlier run, kept while they are whole)."""
    try:
        if (changed := await asyncio.to_thread(kernel.ensure_switch)) is not None:
            log.warning("npc: %s", changed)
        present = await asyncio.to_thread(kernel.read)
    except Exception as err:  # noqa: BLE001 - a failed check is retried at the next interval
        log.error("npc: could not read the policy tables: %s", err)
        return applied
    if wanted is None:
        if present is not None and present.digests:
            return applied
        wanted = CLOSED
    elif applied is not None and present == applied:
        return applied
    return await _apply(kernel, wanted, "the kernel's tables had changed") or applied
