"""The mesh port's listening sockets, and the token bucket that limits what they accept.

A flood of connections to the mesh port (S27) must cost the router little and never starve
established peers. So the listener does not use ``asyncio.start_server``, which builds a task,
a transport and a protocol for every accepted connection before anyone can refuse it: a reader
callback on each listening socket takes connections straight from the kernel's accept queue
and asks the bucket about each one. With a token, the socket is handed to ``on_accept`` (the
driver wraps it in asyncio streams); without one, it is closed at once with SO_LINGER 0: an
RST, no byte read, no object made, and no TIME_WAIT left behind (a FIN close would leave one
per refused connection for a minute).

When the bucket is dry the listener stops watching the socket until the next token is due
(at most ``REFILL``, 50 ms), then drains in one go what the kernel queued meanwhile: the first
connection gets the token, the others the RST. So a flood wakes the router about 20 times a
second, not once per connection, and refusing costs an accept, a setsockopt and a close, about
15 µs here. It is bounded whatever the flood: at most ``BACKLOG`` connections wait per token
(the kernel drops the handshakes beyond that), so at most ``BACKLOG / REFILL`` (20480) are
refused a second, about a third of a core. Figures: docs/security.md, "What is protected".

Invariants: ``accepted`` counts tokens taken, so over any interval of T seconds it grows by at
most ``BURST + T / REFILL``; ``refused`` counts the RSTs; both only grow, and ``status`` is the
``AcceptLimit`` object of the report. A refusal is logged at most once per ``LOG_INTERVAL``,
with the count so far, so a flood cannot fill the log. An accept that fails for lack of
descriptors or memory (or for any reason not foreseen) pauses that socket for
``RETRY_DELAY``: the kernel would report it readable again at once, and raising from the
reader callback would only spin the loop and fill the log.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable

from weave_cli.ratelimit import TokenBucket

log = logging.getLogger("weave.mesh")
BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 by default)
BATCH = BACKLOG
RETRY_DELAY = 1.0
LOG_INTERVAL = 60.0
LINGER_RESET = struct.pack("ii", 1, 0)  # l_onoff 1, l_linger 0: close() sends an RST
# Accepts: a burst of 20, then one every 50 ms (20 a second), as in the original.
BURST, REFILL = 20, 0.05


def accept_bucket(burst: int = BURST, refill: float = REFILL) -> TokenBucket:
    """``burst`` tokens, then one every ``refill`` seconds."""
    return TokenBucket(1 / refill, burst)


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``host`` (as ``asyncio.start_server`` makes
    them: one per address family ``host`` resolves to, SO_REUSEADDR, IPv6 only on AF_INET6)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as err:
                raise OSError(err.errno, f"error while attempting to bind on address "
                              f"{addr!r}: {(err.strerror or '').lower()}") from None
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Accepts on ``host:port`` through ``bucket``; ``sockets`` are the listening sockets."""

    def __init__(self, host: str, port: int, on_accept: Callable[[socket.socket], None],
                 bucket: TokenBucket | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.on_accept = on_accept
        self.bucket = bucket or accept_bucket()
        self.accepted = self.refused = 0
        self.logged_at: float | None = None
        self.sockets = _listening_sockets(host, port)
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._ready, sock)

    def status(self) -> dict[str, object]:
        return {"Burst": round(self.bucket.burst), "PerSecond": round(self.bucket.rate),
                "Accepted": self.accepted, "Refused": self.refused}

    def _ready(self, sock: socket.socket) -> None:
        """Drain the accept queue (at most ``BATCH``), then, if the bucket is dry, stop
        watching the socket until the next token is due: a flood then wakes the router once
        per token (20 times a second), not once per connection, and each wake-up refuses in
        one go what the kernel queued meanwhile (``BACKLOG`` holds 50 ms of 20000 a second)."""
        now = self.loop.time()
        for _ in range(BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break
            except OSError as err:  # out of descriptors or memory, or anything unforeseen:
                log.warning("cannot accept on the mesh port: %s; pausing %.0fs",  # never spin
                            err.strerror or err, RETRY_DELAY)
                self._pause(sock, RETRY_DELAY)
                return
            if self.bucket.take(now):
                self.accepted += 1
                conn.setblocking(False)
                self.on_accept(conn)
            else:
                self._refuse(conn, now)
        if self.bucket.tokens < 1:  # a millisecond late rather than a hair before the token
            self._pause(sock, self.bucket.wait() + 0.001)

    def _refuse(self, conn: socket.socket, now: float) -> None:
        self.refused += 1
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass  # already reset by the peer: close() is all there is to do
        conn.close()
        if self.logged_at is None or now >= self.logged_at + LOG_INTERVAL:
            self.logged_at = now
            log.warning("inbound connections over the accept limit (%d a second, burst %d) "
                        "are refused: %d so far", round(self.bucket.rate),
                        round(self.bucket.burst), self.refused)

    def _pause(self, sock: socket.socket, delay: float) -> None:
        self.loop.remove_reader(sock.fileno())
        self.loop.call_later(delay, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        if sock.fileno() >= 0:  # not closed meanwhile
            self.loop.add_reader(sock.fileno(), self._ready, sock)

    def close(self) -> None:
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
                sock.close()
