"""Moves bytes between TCP sockets and the pure ``MeshCore``.

One task (``run``) owns the core: every other task — socket readers, dialers, HTTP handlers —
only appends closures to ``inbox`` and sets ``wakeup``; ``run`` applies them in order, then
carries out the actions the core asked for (dial, send, close, persist targets) and sleeps
until the core's next deadline or the next message. No locks, and the core never sees a socket.

Connection ids are small integers chosen here; the core only knows those ids.
Inbound accepts are rate-limited by a token bucket before anything is read, so a flood of
connections cannot starve established peers: the listener (``router/accept.py``) refuses a
connection without a token with an RST before any asyncio object exists for it; only the
accepted ones are wrapped in streams and reach the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from weave_cli.router.accept import Listener, accept_bucket
from weave_cli.router.mesh import Close, Dial, MeshCore, Send, TargetsChanged
from weave_cli.router.protocol import AUTH_FAILED

log = logging.getLogger("weave.mesh")
T = TypeVar("T")
READ_CHUNK = 256 * 1024
MAX_WRITE_BUFFER = 32 * 1024 * 1024
DIAL_TIMEOUT = 10.0
AUTH_LOG_INTERVAL = 60.0


class MeshDriver:
    def __init__(
        self,
        core: MeshCore,
        *,
        host: str,
        port: int,
        on_targets: Callable[[list[str]], None],
    ) -> None:
        self.core = core
        self.host, self.port = host, port
        self.on_targets = on_targets
        self.inbox: deque[Callable[[float], None]] = deque()
        self.wakeup = asyncio.Event()
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.readers: dict[int, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.next_id = 1
        self.loop = asyncio.get_running_loop()
        self.accepts = accept_bucket()
        self.auth_logged: dict[str, float] = {}  # remote host -> when we last logged it
        self.server: Listener | None = None

    # --- inputs -------------------------------------------------------------------------
    def submit(self, fn: Callable[[float], None]) -> None:
        self.inbox.append(fn)
        self.wakeup.set()

    async def query(self, fn: Callable[[MeshCore, float], T]) -> T:
        """Run ``fn`` on the core inside the owner task and return its result."""
        fut: asyncio.Future[T] = self.loop.create_future()

        def apply(now: float) -> None:
            try:
                fut.set_result(fn(self.core, now))
            except Exception as err:  # handed to the caller, which translates it
                fut.set_exception(err)

        self.submit(apply)
        return await fut

    async def start(self) -> None:
        self.server = Listener(self.host, self.port, self._accepted, self.accepts)

    def accept_status(self) -> dict[str, object]:
        """The ``AcceptLimit`` object of the report: the bucket and what it let through."""
        return self.server.status() if self.server is not None else {}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _accepted(self, conn: socket.socket) -> None:
        """A connection the listener took (it had a token): wrap it in streams, register it."""
        self._spawn(self._adopt(conn))

    async def _adopt(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=READ_CHUNK)
        except OSError:
            conn.close()  # reset by the peer in the meantime
            return
        except asyncio.CancelledError:
            conn.close()  # shutting down
            raise
        peer = writer.get_extra_info("peername") or ("?", 0)
        self._register(reader, writer, (str(peer[0]), int(peer[1])), outbound=False, target=None)

    def _register(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        addr: tuple[str, int],
        *,
        outbound: bool,
        target: str | None,
    ) -> None:
        cid, self.next_id = self.next_id, self.next_id + 1
        self.writers[cid] = writer
        self.submit(
            lambda now: self.core.connection_opened(cid, addr, outbound, now, target=target)
        )
        self.readers[cid] = asyncio.ensure_future(self._read_loop(cid, reader))

    def _data(self, cid: int, chunk: bytes, now: float) -> None:
        self.core.connection_data(cid, chunk, now)

    def _lost(self, cid: int, reason: str, now: float) -> None:
        self.core.connection_closed(cid, reason, now)

    async def _read_loop(self, cid: int, reader: asyncio.StreamReader) -> None:
        reason = "connection closed by peer"
        try:
            while chunk := await reader.read(READ_CHUNK):
                self.submit(functools.partial(self._data, cid, chunk))
        except (OSError, asyncio.IncompleteReadError) as err:
            reason = f"read error: {err.strerror or err}" if isinstance(err, OSError) else str(err)
        except asyncio.CancelledError:
            return
        self.readers.pop(cid, None)  # this task is ending; _close must not cancel it
        self._close(cid)
        self.submit(functools.partial(self._lost, cid, reason))

    async def _dial(self, target: str, host: str, port: int) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=READ_CHUNK), DIAL_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as err:
            what = (err.strerror or str(err)).lower() if isinstance(err, OSError) else "timed out"
            error = f"dial tcp {host}:{port}: {what}"
            self.submit(lambda now: self.core.dial_failed(target, error, now))
            return
        peer = writer.get_extra_info("peername") or (host, port)
        self._register(reader, writer, (str(peer[0]), int(peer[1])), outbound=True, target=target)

    # --- the owner task -----------------------------------------------------------------
    async def run(self) -> None:
        """Apply queued inputs, fire due timers, carry out actions; sleep until woken or due.

        Already-queued inputs are always drained before sleeping, and a due deadline never
        stops the inbox from being read (both happen in every turn of the loop).
        """
        while True:
            deadline = self.core.next_deadline()
            now = self.loop.time()
            if not self.inbox and (deadline is None or deadline > now):
                self.wakeup.clear()
                timeout = None if deadline is None else deadline - now
                try:
                    await asyncio.wait_for(self.wakeup.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)  # let readers and HTTP handlers run between batches
            now = self.loop.time()
            while self.inbox:
                self.inbox.popleft()(now)
            deadline = self.core.next_deadline()
            if deadline is not None and deadline <= now:
                self.core.tick(now)
            self._carry_out()

    def _carry_out(self) -> None:
        for action in self.core.actions():
            if isinstance(action, Send):
                writer = self.writers.get(action.conn)
                if writer is None or writer.is_closing():
                    continue
                writer.write(action.data)
                if writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                    log.warning("connection %d: peer is not reading; closing", action.conn)
                    self._close(action.conn)
                    reason = "send buffer full: peer is not reading"
                    self.submit(functools.partial(self._lost, action.conn, reason))
            elif isinstance(action, Close):
                # After an auth failure the peer must still read our last frame: FIN, not RST.
                auth = action.reason.startswith(AUTH_FAILED)
                if auth:
                    self._log_auth_failure(action.conn, action.reason)
                self._close(action.conn, graceful=auth)
            elif isinstance(action, Dial):
                self._spawn(self._dial(action.target, action.host, action.port))
            elif isinstance(action, TargetsChanged):
                try:
                    self.on_targets(list(action.targets))
                except Exception as err:  # persistence must not stop the mesh
                    log.error("cannot persist targets: %s", err)

    def _log_auth_failure(self, cid: int, reason: str) -> None:
        """One warning per remote address per AUTH_LOG_INTERVAL (the table is bounded), so a
        peer with the wrong password — or a flood — cannot fill the log."""
        writer = self.writers.get(cid)
        peer = writer.get_extra_info("peername") if writer is not None else None
        host = str(peer[0]) if peer else "?"
        now = self.loop.time()
        if now < self.auth_logged.get(host, -AUTH_LOG_INTERVAL) + AUTH_LOG_INTERVAL:
            return
        if len(self.auth_logged) >= 1024:
            self.auth_logged.clear()
        self.auth_logged[host] = now
        log.warning("connection with %s refused: %s", host, reason)

    def _close(self, cid: int, graceful: bool = False) -> None:
        writer = self.writers.pop(cid, None)
        reader = self.readers.pop(cid, None)
        if reader is not None:
            reader.cancel()
        if writer is not None:
            with contextlib.suppress(Exception):
                if graceful and writer.transport.get_write_buffer_size() == 0:
                    writer.transport.close()  # nothing left to flush: an immediate FIN
                else:
                    writer.transport.abort()  # close() would wait for a peer that never reads

    async def shutdown(self) -> None:
        if self.server is not None:
            self.server.close()
        for cid in list(self.writers):
            self._close(cid)
        for task in list(self.tasks):
            task.cancel()
