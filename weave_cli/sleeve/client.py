"""The router's handle on its sleeve forwarder process (asyncio).

    proc = SleeveProcess(port=6783)
    await proc.start()                  # spawned, TAP and UDP socket ready (or DatapathError)
    proc.send_config(SleeveConfig(...)) # full replacement; never blocks
    async for event in proc.events():   # Heard / Pmtu (Ready, Failed, Stats are consumed here)
        ...                             # the iteration ends when the forwarder exits
    counters = await proc.stats()
    await proc.stop()                   # close ctl, wait 2 s, then SIGKILL

The ctl socket is our end of ``socketpair(AF_UNIX, SOCK_SEQPACKET)``; the other end is passed
to the child as ``--ctl-fd``. It is non-blocking and read by ``loop.add_reader``: events go
to a bounded queue (the oldest is dropped when nobody reads, so a stalled consumer cannot grow
memory), ``stats`` replies resolve the oldest pending ``stats()`` call in order. Outgoing
messages wait in a small queue when the socket is full; a newer config replaces a queued one
(configs are full replacements, so only the latest matters).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence

from weave_cli.names import MESH_PORT
from weave_cli.net.errors import DatapathError
from weave_cli.sleeve import control

log = logging.getLogger("weave.sleeve")
STOP_GRACE = 2.0
EVENT_QUEUE = 1024
SO_SNDBUFFORCE = 32
CTL_BUFFER = 4 << 20


class SleeveProcess:
    def __init__(self, *, host: str = "", port: int = MESH_PORT, python: str = sys.executable,
                 ready_timeout: float = 10.0, stderr: int | None = None,
                 prefix: Sequence[str] = (), extra_args: Sequence[str] = ()) -> None:
        self.prefix = list(prefix)  # e.g. ["nsenter", "--net=/run/netns/x", "--"] (tests, lab)
        self.extra_args = list(extra_args)  # e.g. ["--rekey-messages", "1000"] (tests)
        self.host = host
        self.port = port
        self.python = python
        self.ready_timeout = ready_timeout
        self.stderr = stderr
        self.ready: control.Ready | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[control.Ready] | None = None
        self._failure = ""
        self._events: deque[control.Event] = deque(maxlen=EVENT_QUEUE)
        self._wake = asyncio.Event()
        self._closed = False
        self._stats: deque[asyncio.Future[dict[str, int]]] = deque()
        self._out: deque[tuple[str, bytes]] = deque()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def argv(self, fd: int) -> list[str]:
        return [*self.prefix, self.python, "-m", "weave_cli.sleeve.forwarder", "--ctl-fd", str(fd),
                "--port", str(self.port), "--host", self.host, *self.extra_args]

    async def start(self) -> None:
        """Spawn the forwarder and wait for ``ready``; DatapathError with its reason if not."""
        if self._proc is not None:
            raise DatapathError("the sleeve forwarder was already started")
        self._loop = loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            try:
                ours.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, CTL_BUFFER)
            except OSError:
                ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CTL_BUFFER)
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv(theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr)
        except OSError as err:
            ours.close()
            raise DatapathError(f"cannot start the sleeve forwarder: {err}") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        try:
            self.ready = await asyncio.wait_for(asyncio.shield(self._ready), self.ready_timeout)
        except (DatapathError, TimeoutError) as err:
            await self.stop()
            if isinstance(err, DatapathError):
                raise
            raise DatapathError(f"the sleeve forwarder was not ready in {self.ready_timeout}s")\
                from None

    def send_config(self, cfg: control.SleeveConfig) -> None:
        """Queue ``cfg`` (replacing a config not yet sent) and send what the socket takes."""
        data = cfg.encode()
        self._out = deque(m for m in self._out if m[0] != "config")
        self._out.append(("config", data))
        self._flush()

    async def stats(self, timeout: float = 5.0) -> dict[str, int]:
        """The forwarder's counters (DatapathError when it does not answer)."""
        if self._loop is None or self._closed:
            raise DatapathError("the sleeve forwarder is not running")
        fut: asyncio.Future[dict[str, int]] = self._loop.create_future()
        self._stats.append(fut)
        self._out.append(("stats", control.StatsRequest().encode()))
        self._flush()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise DatapathError("the sleeve forwarder did not answer a stats request") from None

    async def events(self) -> AsyncIterator[control.Event]:
        """Heard and Pmtu events as they come; ends once the forwarder has gone."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._wake.clear()
            await self._wake.wait()

    async def wait(self) -> int:
        assert self._proc is not None
        return await self._proc.wait()

    async def stop(self) -> None:
        """Close the ctl socket (the forwarder exits at EOF); SIGKILL after STOP_GRACE."""
        self._close("stopped")
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    # --- internals ----------------------------------------------------------------
    def _flush(self) -> None:
        if self._sock is None or self._closed:
            raise DatapathError("the sleeve forwarder is not running")
        while self._out:
            try:
                self._sock.send(self._out[0][1])
            except BlockingIOError:
                assert self._loop is not None
                self._loop.add_writer(self._sock.fileno(), self._writable)
                return
            except OSError as err:
                if err.errno == errno.EMSGSIZE:  # without SO_SNDBUFFORCE: wmem_max bounds it
                    self._out.popleft()
                    raise DatapathError("a control message is too large for the ctl socket",
                                        "run the router as root") from None
                self._close(f"ctl socket: {err}")
                raise DatapathError(f"the sleeve forwarder is gone: {err}") from None
            self._out.popleft()

    def _writable(self) -> None:
        assert self._loop is not None and self._sock is not None
        self._loop.remove_writer(self._sock.fileno())
        try:
            self._flush()
        except DatapathError:
            pass

    def _readable(self) -> None:
        assert self._sock is not None
        while not self._closed:
            try:
                data = self._sock.recv(control.MAX_MESSAGE + 1)
            except BlockingIOError:
                return
            except OSError as err:
                data, self._failure = b"", self._failure or str(err)
            if not data:
                self._close(self._failure or "the sleeve forwarder exited")
                return
            try:
                event = control.decode_event(data)
            except control.ControlError as err:
                log.warning("ignoring a bad message from the sleeve forwarder: %s", err)
                continue
            self._dispatch(event)

    def _dispatch(self, event: control.Event) -> None:
        if isinstance(event, control.Ready):
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(event)
        elif isinstance(event, control.Failed):
            self._failure = event.reason
        elif isinstance(event, control.Stats):
            while self._stats:
                fut = self._stats.popleft()
                if not fut.done():
                    fut.set_result(event.counters)
                    break
        else:
            self._events.append(event)
            self._wake.set()

    def _close(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._sock.fileno())
            self._loop.remove_writer(self._sock.fileno())
            self._sock.close()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(DatapathError(f"sleeve forwarder failed: {reason}"))
            self._ready.exception()  # retrieved: start() may be gone already
        for fut in self._stats:
            if not fut.done():
                fut.set_exception(DatapathError("the sleeve forwarder is gone"))
                fut.exception()
        self._stats.clear()
        self._wake.set()
