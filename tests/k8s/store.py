"""The fake API server's objects: a versioned in-memory store with a bounded event history.

Representation: ``rv`` is the cluster's resource version, an int that every change bumps by
one (never reused, also across restarts when ``state_file`` is given); an object's
``metadata.resourceVersion`` is the decimal string of the ``rv`` of its last change.
``objects[resource][key]`` holds the current objects (key ``namespace/name``, or ``name`` for
namespaces) with ``kind`` and ``apiVersion`` filled. ``history`` holds ``Event`` s in ``rv``
order, all with ``rv > compacted``: a watch from version ``v >= compacted`` can be served
every event after ``v``; an older ``v`` is gone (410). ``compact()`` drops the whole history;
it is also trimmed to ``history_limit`` events.

``tick`` is an ``asyncio.Event`` replaced by a fresh one at each change (the old one is set):
a watcher takes ``tick`` *before* reading the history, so no change slips between the read and
the wait.

``state_file``: JSON ``{"rv": .., "objects": {..}}`` rewritten (temporary file, then rename)
after each change and loaded at start; history is not kept, so after a restart ``compacted``
is the loaded ``rv`` and older versions get 410 (clients relist).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    name: str
    kind: str
    api_version: str
    namespaced: bool


RESOURCES = {
    "pods": Resource("pods", "Pod", "v1", True),
    "namespaces": Resource("namespaces", "Namespace", "v1", False),
    "networkpolicies": Resource("networkpolicies", "NetworkPolicy", "networking.k8s.io/v1",
                                True),
}


@dataclass(frozen=True)
class Event:
    rv: int
    resource: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


class Gone(Exception):
    """A resource version older than the history holds."""


class Conflict(Exception):
    """Create of an existing object, or an update with a stale resourceVersion."""


class NotFound(Exception):
    pass


class Invalid(Exception):
    pass


def key_of(resource: str, obj: Obj) -> str:
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise Invalid("metadata.name is required")
    if not RESOURCES[resource].namespaced:
        return name
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    if not isinstance(ns, str) or not ns:
        raise Invalid("metadata.namespace is required")
    return f"{ns}/{name}"


class Store:
    def __init__(self, state_file: Path | None = None, history_limit: int = 10_000) -> None:
        self.state_file = state_file
        self.history_limit = history_limit
        self.rv = 0
        self.compacted = 0
        self.objects: dict[str, dict[str, Obj]] = {r: {} for r in RESOURCES}
        self.history: list[Event] = []
        self.tick = asyncio.Event()
        if state_file is not None and state_file.exists():
            saved = json.loads(state_file.read_text())
            self.rv = self.compacted = int(saved["rv"])
            for resource, objs in saved["objects"].items():
                self.objects[resource] = dict(objs)

    # --- reads

    def snapshot(self, resource: str, namespace: str | None = None) -> tuple[int, list[Obj]]:
        """(rv, the objects sorted by key), deep copies."""
        objs = self.objects[resource]
        keys = sorted(k for k in objs if namespace is None or k.startswith(namespace + "/"))
        return self.rv, [copy.deepcopy(objs[k]) for k in keys]

    def get(self, resource: str, key: str) -> Obj:
        try:
            return copy.deepcopy(self.objects[resource][key])
        except KeyError:
            raise NotFound(f'{resource} "{key}" not found') from None

    def events_after(self, rv: int, resource: str,
                     namespace: str | None = None) -> tuple[list[Event], int]:
        """The events of ``resource`` after ``rv`` and the store's rv; ``Gone`` if too old."""
        if rv < self.compacted:
            raise Gone(f"too old resource version: {rv} ({self.compacted})")
        lo, hi = 0, len(self.history)
        while lo < hi:  # the first event with rv > the given one
            mid = (lo + hi) // 2
            if self.history[mid].rv <= rv:
                lo = mid + 1
            else:
                hi = mid
        out = [e for e in self.history[lo:] if e.resource == resource and (
            namespace is None or e.obj["metadata"].get("namespace") == namespace)]
        return out, self.rv

    # --- changes

    def create(self, resource: str, obj: Obj) -> Obj:
        res = RESOURCES[resource]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise Invalid("metadata must be an object")
        if not meta.get("name") and isinstance(meta.get("generateName"), str):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not res.namespaced:
            meta.pop("namespace", None)
        key = key_of(resource, obj)
        if key in self.objects[resource]:
            raise Conflict(f'{resource} "{key}" already exists')
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        if resource == "namespaces":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("status", {"phase": "Active"})
        return self._change(resource, key, "ADDED", obj)

    def replace(self, resource: str, obj: Obj) -> Obj:
        res = RESOURCES[resource]
        obj = copy.deepcopy(obj)
        key = key_of(resource, obj)
        old = self.objects[resource].get(key)
        if old is None:
            raise NotFound(f'{resource} "{key}" not found')
        meta, old_meta = obj["metadata"], old["metadata"]
        wanted = meta.get("resourceVersion")
        if wanted not in (None, "") and wanted != old_meta["resourceVersion"]:
            raise Conflict(f'{resource} "{key}": the object has been modified')
        for field in ("uid", "creationTimestamp"):
            meta[field] = old_meta[field]
        if resource == "namespaces":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        return self._change(resource, key, "MODIFIED", obj)

    def delete(self, resource: str, key: str) -> Obj:
        """Delete one object; a namespace takes its pods and policies with it (at once)."""
        if key not in self.objects[resource]:
            raise NotFound(f'{resource} "{key}" not found')
        if resource == "namespaces":
            for inner in ("pods", "networkpolicies"):
                for k in [k for k in self.objects[inner] if k.startswith(key + "/")]:
                    self.delete(inner, k)
        obj = self.objects[resource].pop(key)
        return self._change(resource, key, "DELETED", obj)

    def compact(self) -> int:
        """Forget the history: every resource version before now is gone (410)."""
        self.history.clear()
        self.compacted = self.rv
        return self.rv

    def _change(self, resource: str, key: str, kind: str, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if kind != "DELETED":
            self.objects[resource][key] = obj
        self.history.append(Event(self.rv, resource, kind, copy.deepcopy(obj)))
        if len(self.history) > self.history_limit:
            dropped = self.history[: len(self.history) - self.history_limit]
            del self.history[: len(dropped)]
            self.compacted = dropped[-1].rv
        self.save()
        self.notify()
        return copy.deepcopy(obj)

    def notify(self) -> None:
        old, self.tick = self.tick, asyncio.Event()
        old.set()

    def save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps({"rv": self.rv, "objects": self.objects}))
        os.replace(tmp, self.state_file)
