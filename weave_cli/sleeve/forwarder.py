"""The sleeve forwarder process: ``python -m weave_cli.sleeve.forwarder --ctl-fd N --port P
--host H``, started by the router in its network namespace with the ctl fd passed to it.

Start-up: PR_SET_PDEATHSIG(SIGTERM), the TAP (``tap.open_tap``), the UDP socket bound to
(host, port) with DF on every datagram (IP_PMTUDISC_PROBE: no kernel fragmentation, no PMTU
cache), UDP_GRO and big buffers; then the ``ready`` event. Any failure there sends ``error``
with the reason and exits 1. The process exits 0 when the ctl socket reaches EOF (the router
closed it or died, even by SIGKILL), so it is never orphaned.

The loop is one ``epoll`` over the TAP, the UDP socket and the ctl socket, level-triggered:
each wake-up drains up to ``BUDGET`` reads from each ready data fd (so neither direction
starves the other), then runs what is due: heartbeats and probes (``LinkTable.tick``),
reassembly expiry, and events to the router. Control messages that fail validation are
logged (at most one line per ``LOG_EVERY`` seconds) and ignored.
"""

from __future__ import annotations

import argparse
import logging
import select
import socket
import sys
import time
from functools import partial

from weave_cli.names import MESH_PORT, SLEEVE_IFNAME
from weave_cli.net.errors import DatapathError
from weave_cli.sleeve import control, engine, links, seal, sender, tap, wire
from weave_cli.sleeve.keybook import KeyBook

log = logging.getLogger("weave.sleeve")
BUDGET = 64
EXPIRE_EVERY = 0.25
LOG_EVERY = 10.0
IP_MTU_DISCOVER, IP_PMTUDISC_PROBE, IP_MTU = 10, 3, 14
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SOCKET_BUFFER = 8 << 20
CTL_BUFFER = 4 << 20


def set_buffers(sock: socket.socket, size: int) -> None:
    """Force big buffers (root), else ask for as much as the sysctl allows."""
    for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


def route_mtu(addr: tuple[str, int]) -> int:
    """The MTU of the route towards ``addr`` (1500 when the kernel cannot tell)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(addr)
            return int(probe.getsockopt(socket.IPPROTO_IP, IP_MTU))
        except OSError:
            return 1500


def open_udp(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        set_buffers(sock, SOCKET_BUFFER)
        try:
            sock.setsockopt(sender.SOL_UDP, sender.UDP_GRO, 1)
        except OSError:
            log.warning("UDP_GRO unavailable: receiving one datagram per call")
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise DatapathError(f"cannot use UDP {host or '*'}:{port}: {err.strerror}",
                            "is another weave router using this port?") from None
    return sock


def parent_death_signal() -> None:
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PDEATHSIG
    except (OSError, AttributeError):
        log.warning("prctl(PR_SET_PDEATHSIG) failed; relying on ctl EOF")


class Forwarder:
    def __init__(self, ctl: socket.socket, tap_fd: int, sock: socket.socket,
                 book: KeyBook | None = None) -> None:
        self.ctl = ctl
        self.tap_fd = tap_fd
        self.sock = sock
        self.links = links.LinkTable(route_mtu, book=book)
        self.dp = engine.Datapath(tap_fd, sock, self.links)
        self.next_expire = 0.0
        self.last_log = -LOG_EVERY
        self.bad_control = 0
        self.events_dropped = 0

    def emit(self, event: control.Event) -> None:
        try:
            self.ctl.send(control.encode_event(event))
        except (OSError, control.ControlError):
            self.events_dropped += 1  # not reading, or gone (EOF ends the loop): advisory

    def on_ctl(self, mask: int) -> bool:
        """Handle one control message; False at EOF (an empty datagram is not EOF unless
        the peer has hung up: SEQPACKET reads both as b"")."""
        try:
            data = self.ctl.recv(control.MAX_MESSAGE + 1)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data and mask & (select.EPOLLHUP | select.EPOLLRDHUP):
            return False
        try:
            request = control.decode_request(data)
        except control.ControlError as err:
            self.bad_control += 1
            now = time.monotonic()
            if now - self.last_log >= LOG_EVERY:
                self.last_log = now
                log.warning("ignoring bad control message (%d so far): %s", self.bad_control, err)
            return True
        if isinstance(request, control.SleeveConfig):
            if request.encrypted != self.dp.sealed:
                log.info("sleeve datagrams are %s", "encrypted (AES-256-GCM)"
                         if request.encrypted else "NOT encrypted")
            self.dp.configure(request)
        else:
            counters = self.dp.counters()
            counters["bad_control"] = self.bad_control
            counters["events_dropped"] = self.events_dropped
            self.emit(control.Stats(counters))
        return True

    def timers(self, now: float) -> None:
        for out in self.links.tick(now):
            if out.batch:
                self.dp.out.control(out.data, out.link, 2)
            else:
                self.dp.out.control(out.data, out.link, 1,
                                    partial(self.links.send_failed, out, now))
        if now >= self.next_expire:
            self.next_expire = now + EXPIRE_EVERY
            self.dp.reasm.expire(now)
            self.links.book.expire(now)

    def run(self) -> int:
        ep = select.epoll()
        tap_fd, udp_fd, ctl_fd = self.tap_fd, self.sock.fileno(), self.ctl.fileno()
        ep.register(tap_fd, select.EPOLLIN)
        ep.register(udp_fd, select.EPOLLIN)
        ep.register(ctl_fd, select.EPOLLIN | select.EPOLLRDHUP)
        dp, lt, monotonic = self.dp, self.links, time.monotonic
        try:
            while True:
                wait = min(lt.next_deadline(), self.next_expire) - monotonic()
                ready = ep.poll(max(0.0, wait))
                now = monotonic()
                for fd, mask in ready:
                    if fd == udp_fd:
                        dp.drain_udp(BUDGET, now)
                    elif fd == tap_fd:
                        dp.drain_tap(BUDGET)
                    elif not self.on_ctl(mask):
                        return 0
                if now >= lt.next_deadline() or now >= self.next_expire:
                    self.timers(now)
                if lt.events:
                    for event in lt.take_events():
                        self.emit(event)
        finally:
            ep.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weave_cli.sleeve.forwarder")
    parser.add_argument("--ctl-fd", type=int, required=True)
    parser.add_argument("--port", type=int, default=MESH_PORT)
    parser.add_argument("--host", default="")
    parser.add_argument("--ifname", default=SLEEVE_IFNAME)
    # Rekeying limits (tests and experiments; the router does not pass them).
    parser.add_argument("--rekey-messages", type=int, default=seal.REKEY_AFTER_MESSAGES)
    parser.add_argument("--rekey-seconds", type=float, default=seal.REKEY_AFTER_SECONDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="weave-sleeve[%(process)d]: %(message)s")
    parent_death_signal()
    ctl = socket.socket(fileno=args.ctl_fd)
    ctl.setblocking(False)
    try:
        set_buffers(ctl, CTL_BUFFER)
        tap_fd = tap.open_tap(args.ifname)
        sock = open_udp(args.host, args.port)
    except (DatapathError, OSError) as err:
        reason = str(err)
        log.error("%s", reason)
        ctl.setblocking(True)
        try:
            ctl.send(control.encode_event(control.Failed(reason)))
        except OSError:
            pass
        return 1
    port = sock.getsockname()[1]
    fwd = Forwarder(ctl, tap_fd, sock, KeyBook(args.rekey_messages, args.rekey_seconds))
    fwd.emit(control.Ready(args.ifname, port))
    log.info("sleeve up on %s, UDP port %d (frame overhead %d bytes)", args.ifname, port,
             wire.FRAME_OVERHEAD)
    return fwd.run()


if __name__ == "__main__":
    sys.exit(main())
