"""An accept flood for the lab tests: TCP connections to ADDR:PORT at a paced rate. No tests here.

    python floodgen.py ADDR PORT SECONDS RATE [WORKERS]

``WORKERS`` processes (default 2, one per core here) each open ``RATE / WORKERS`` connections
a second with non-blocking sockets under epoll, at most ``WINDOW`` in flight each. A connection
counts as ``completed`` when its handshake finished (the server's kernel took it into its accept
queue: the server has to accept it); it then sends an encrypted-looking preamble (what a peer
with a password sends first) and is closed with SO_LINGER 0, so it ends in an RST and leaves no
TIME_WAIT behind on either side (the flood can run from one address for as long as needed).
``reset`` counts connects refused or reset before completing, ``timeout`` those without an
answer within ``CONNECT_TIMEOUT``. The pacing catches up after a slow moment but never bursts
more than ``WINDOW`` at once, so the rate is an average the flood really sustained.

Prints one JSON line: totals, ``seconds`` (measured from the start of the first worker to the
end of the last), ``rate`` (completed per second) and ``per_second`` (completed in each whole
second, all workers together), so a test can check the rate held throughout, not on average.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import struct
import sys
import time

WINDOW = 256
CONNECT_TIMEOUT = 1.0
LINGER_RESET = struct.pack("ii", 1, 0)
PREAMBLE = b"WVPY\x01\x01\x01" + bytes(32)  # magic, versions, then 32 bytes of "public key"


def worker(addr: str, port: int, start: float, seconds: float, rate: float) -> dict[str, object]:
    ep = select.epoll()
    inflight: dict[int, tuple[socket.socket, float]] = {}
    counts = {"attempts": 0, "completed": 0, "reset": 0, "timeout": 0}
    per_second = [0] * (int(seconds) + 1)
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rate) - counts["attempts"]
        for _ in range(max(0, min(due, WINDOW - len(inflight)))):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            counts["attempts"] += 1
            code = s.connect_ex((addr, port))
            if code not in (0, errno.EINPROGRESS):
                counts["reset"] += 1
                s.close()
                continue
            inflight[s.fileno()] = (s, now)
            ep.register(s.fileno(), select.EPOLLOUT)
        for fd, _ in ep.poll(0.001):
            s, _ = inflight.pop(fd)
            ep.unregister(fd)
            # reset after the handshake (the server refused it from its accept queue): it
            # completed all the same
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in (0, errno.ECONNRESET):
                counts["completed"] += 1
                per_second[min(int(time.monotonic() - start), len(per_second) - 1)] += 1
                try:
                    s.send(PREAMBLE)
                except OSError:
                    pass
            else:
                counts["reset"] += 1
            s.close()
        if inflight:
            now = time.monotonic()
            for fd, (s, opened) in list(inflight.items()):
                if now - opened > CONNECT_TIMEOUT:
                    del inflight[fd]
                    ep.unregister(fd)
                    s.close()
                    counts["timeout"] += 1
    for s, _ in inflight.values():
        s.close()
    return {**counts, "per_second": per_second[: int(seconds)], "ended": time.monotonic()}


def main() -> None:
    addr, port = sys.argv[1], int(sys.argv[2])
    seconds, rate = float(sys.argv[3]), float(sys.argv[4])
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    start = time.monotonic() + 0.2  # every worker starts its schedule at the same moment
    pipes = []
    for _ in range(workers):
        r, w = os.pipe()
        if os.fork() == 0:
            os.close(r)
            time.sleep(max(0.0, start - time.monotonic()))
            out = worker(addr, port, start, seconds, rate / workers)
            os.write(w, json.dumps(out).encode())
            os._exit(0)
        os.close(w)
        pipes.append(r)
    results = []
    for r in pipes:
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        results.append(json.loads(data))
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    total: dict[str, object] = {k: sum(int(x[k]) for x in results)
                                for k in ("attempts", "completed", "reset", "timeout")}
    took = max(float(x["ended"]) for x in results) - start
    total["seconds"] = round(took, 2)
    total["rate"] = round(int(total["completed"]) / took)  # type: ignore[call-overload]
    total["per_second"] = [sum(x["per_second"][i] for x in results)
                           for i in range(int(seconds))]
    print(json.dumps(total), flush=True)


if __name__ == "__main__":
    main()
