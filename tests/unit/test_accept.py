"""The mesh port's listener (weave_cli/router/accept.py) over real loopback sockets: what the
token bucket lets through, how the rest is refused (an RST, nothing read), the pause while the
bucket is dry, and the one log line."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket

import pytest

from weave_cli.router.accept import Listener, accept_bucket


def _connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=2)
    client.settimeout(0.2)
    return client


def _reset(client: socket.socket) -> bool:
    """The server closed the connection with an RST (not a FIN, not still open)."""
    try:
        client.recv(1)  # b"" would be a FIN
    except ConnectionResetError:
        return True
    except TimeoutError:
        pass  # still open
    return False


def test_beyond_the_burst_connections_are_reset_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "weave.mesh")

    async def main() -> tuple[Listener, list[socket.socket], list[socket.socket]]:
        taken: list[socket.socket] = []
        listener = Listener("127.0.0.1", 0, taken.append, accept_bucket(5, 60.0))
        port = listener.sockets[0].getsockname()[1]
        clients = [_connect(port) for _ in range(30)]  # completed by the kernel, queued
        await asyncio.sleep(0.2)
        listener.close()
        return listener, taken, clients

    listener, taken, clients = asyncio.run(main())
    assert (listener.accepted, listener.refused, len(taken)) == (5, 25, 5)
    assert listener.status() == {"Burst": 5, "PerSecond": 0, "Accepted": 5, "Refused": 25}
    # the first five (the kernel queues in order) are the server's; every other one was reset
    assert [_reset(c) for c in clients] == [False] * 5 + [True] * 25
    assert all(not s.getblocking() for s in taken)
    lines = [r.getMessage() for r in caplog.records if "accept limit" in r.getMessage()]
    assert lines == ["inbound connections over the accept limit (0 a second, burst 5) are "
                     "refused: 1 so far"]
    for s in taken + clients:
        s.close()


def test_a_dry_bucket_pauses_the_listener_until_the_next_token() -> None:
    async def main() -> list[tuple[int, int]]:
        taken: list[socket.socket] = []
        listener = Listener("127.0.0.1", 0, taken.append, accept_bucket(1, 1.0))
        port = listener.sockets[0].getsockname()[1]
        seen = []
        clients = [_connect(port)]
        await asyncio.sleep(0.1)
        seen.append((listener.accepted, listener.refused))  # the one token is taken: dry
        clients += [_connect(port) for _ in range(3)]
        await asyncio.sleep(0.4)
        seen.append((listener.accepted, listener.refused))  # paused: nothing looked at
        await asyncio.sleep(1.0)
        seen.append((listener.accepted, listener.refused))  # at 1 s: one token, two RSTs
        listener.close()
        for s in taken + clients:
            s.close()
        return seen

    assert asyncio.run(main()) == [(1, 0), (1, 0), (2, 2)]


def test_an_accept_that_fails_pauses_the_socket_instead_of_spinning(
        caplog: pytest.LogCaptureFixture) -> None:
    """Out of descriptors (EMFILE, a real one: the soft limit lowered to the lowest free one), the
    listener logs once, stops watching the socket for RETRY_DELAY, then takes the connection."""
    caplog.set_level(logging.WARNING, "weave.mesh")

    async def main() -> tuple[int, int]:
        taken: list[socket.socket] = []
        listener = Listener("127.0.0.1", 0, taken.append, accept_bucket(5, 60.0))
        port = listener.sockets[0].getsockname()[1]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        client = _connect(port)
        try:
            lowest_free = os.dup(0)  # descriptors are numbered from the lowest free one
            os.close(lowest_free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            await asyncio.sleep(0.3)  # accept fails: paused, one warning
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        during = len(taken)
        await asyncio.sleep(1.2)  # RETRY_DELAY later the socket is watched again
        after = len(taken)
        listener.close()
        for s in [*taken, client]:
            s.close()
        return during, after

    assert asyncio.run(main()) == (0, 1)
    warnings = [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(warnings) == 1 and "pausing" in warnings[0], warnings


def test_the_listener_binds_like_asyncio_and_a_taken_port_is_an_error() -> None:
    async def main() -> None:
        listener = Listener("127.0.0.1", 0, lambda s: s.close())
        port = listener.sockets[0].getsockname()[1]
        assert listener.status() == {"Burst": 20, "PerSecond": 20, "Accepted": 0, "Refused": 0}
        with pytest.raises(OSError, match="error while attempting to bind"):
            Listener("127.0.0.1", port, lambda s: s.close())
        listener.close()
        listener.close()  # twice is harmless

    asyncio.run(main())
