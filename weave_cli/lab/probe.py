"""A UDP echo probe for lab containers and tests: the lab has no ping binary.

    python -m weave_cli.lab.probe serve [--port P] [--seconds S]
        answers every datagram with b"echo:" + the datagram, prints "ready" once bound, and
        exits after S seconds without traffic (default 20)
    python -m weave_cli.lab.probe ask ADDR [--port P] [--seconds S]
        sends b"hello" every 0.3 s until an answer comes (prints it, exit 0) or S seconds
        pass (prints "no answer", exit 1)

Run them inside namespaces (``weave lab exec c1 -- python -m weave_cli.lab.probe serve``).
Standard library only, so it starts fast and needs nothing in the namespace.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

PORT = 7777
RETRY = 0.3


def serve(port: int, seconds: float) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", port))
        sock.settimeout(seconds)
        print("ready", flush=True)
        try:
            while True:
                data, peer = sock.recvfrom(2048)
                sock.sendto(b"echo:" + data, peer)
        except TimeoutError:
            return 0


def ask(addr: str, port: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(RETRY)
        while time.monotonic() < deadline:
            try:
                sock.sendto(b"hello", (addr, port))
                data, _ = sock.recvfrom(2048)
            except OSError:  # timeout, or unreachable: try again until the deadline
                time.sleep(max(0.0, min(RETRY, deadline - time.monotonic())) / 10)
                continue
            print(data.decode(errors="replace"))
            return 0
    print("no answer")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weave_cli.lab.probe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    a = sub.add_parser("ask")
    a.add_argument("addr")
    for p, seconds in ((s, 20.0), (a, 3.0)):
        p.add_argument("--port", type=int, default=PORT)
        p.add_argument("--seconds", type=float, default=seconds)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        return serve(args.port, args.seconds)
    return ask(args.addr, args.port, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
