"""Sending and receiving fastdp heartbeats (``overlay/hbframe.py``) in the router's loop.

Sending: one UDP socket, DF set (``IP_PMTUDISC_PROBE``), a datagram per neighbour and round to
``address:port+1``. Receiving: a packet socket bound to ``weave-vxhb``; its reader runs in the
event loop and hands every valid heartbeat to ``on_heard``. The device can be deleted and made
again by the keeper (a new ifindex): ``poll`` rebinds when the bound index is no longer the
device's. Only heartbeats arrive there, a few per neighbour per second, so reading is cheap.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping

from weave_cli.names import VXLAN_HB_IFNAME, VXLAN_HB_VNI
from weave_cli.overlay import hbframe
from weave_cli.router.peer import PeerName

ETH_P_ALL = 0x0003
IP_MTU_DISCOVER, IP_PMTUDISC_PROBE = 10, 3
MAX_FRAME = 65536
log = logging.getLogger("weave.fastdp")


def _ifindex(name: str) -> int | None:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


class FastdpHeartbeats:
    def __init__(self, local: PeerName, port: int, mtu: int,
                 on_heard: Callable[[PeerName], None]) -> None:
        self.local, self.port, self.mtu, self.on_heard = local, port, mtu, on_heard
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sender.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
        self.sender.setblocking(False)
        self.receiver: socket.socket | None = None
        self.bound: int | None = None
        self.errors: dict[PeerName, str] = {}
        self._payloads: dict[PeerName, bytes] = {}

    def poll(self) -> None:
        """(Re)bind the receiver to the heartbeat device if it exists under a new index."""
        index = _ifindex(VXLAN_HB_IFNAME)
        if index == self.bound and self.receiver is not None:
            return
        self._close_receiver()
        if index is None:
            return
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.bind((VXLAN_HB_IFNAME, 0))
        except OSError as err:
            sock.close()
            log.debug("cannot bind to %s: %s", VXLAN_HB_IFNAME, err)
            return
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self.receiver, self.bound = sock, index

    def send(self, neighbours: Mapping[PeerName, str]) -> None:
        """One heartbeat to each neighbour; a failure is kept in ``errors`` for the status."""
        for peer, addr in neighbours.items():
            payload = self._payloads.get(peer)
            if payload is None:
                payload = self._payloads[peer] = hbframe.encode(
                    VXLAN_HB_VNI, self.local, peer, self.mtu)
            try:
                self.sender.sendto(payload, (addr, self.port))
                self.errors.pop(peer, None)
            except OSError as err:
                self.errors[peer] = err.strerror or str(err)
        for gone in [p for p in self._payloads if p not in neighbours]:
            del self._payloads[gone]

    def _readable(self) -> None:
        assert self.receiver is not None
        for _ in range(64):
            try:
                frame = self.receiver.recv(MAX_FRAME)
            except BlockingIOError:
                return
            except OSError as err:  # the device went away: rebind on the next poll
                log.debug("heartbeat socket: %s", err)
                self._close_receiver()
                return
            found = hbframe.decode(frame, self.local)
            if found is not None:
                self.on_heard(found[0])

    def _close_receiver(self) -> None:
        if self.receiver is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.receiver.fileno())
            except (RuntimeError, ValueError):
                pass
            self.receiver.close()
        self.receiver, self.bound = None, None

    def close(self) -> None:
        self._close_receiver()
        self.sender.close()
