"""The receive side of sealed datagrams (encryption on): open, then TAP, reassembly or relay.

``Opener.batch`` takes what one ``recvmsg_into`` returned (a GRO batch of ``seg``-byte
datagrams, the last maybe shorter, or one datagram) from the data path's ``ubuf`` and handles
every datagram in turn:

1. checks that cost nothing: version, ``flags == FLAG_SEALED`` (a plain datagram from anyone
   is dropped and counted, ``rx_plaintext``, never delivered), the ``hop`` is a neighbour with
   keys (``rx_no_key``), the fields are consistent (``wire.body_ok``) and the source known;
2. ``RxState.open``: the replay window is checked first, then the AEAD (the 40-byte header is
   the associated data); only a datagram that authenticates moves the window;
3. DATA plaintext is decrypted straight into ``fbuf`` so that consecutive pieces of one frame
   (same src, dst, ttl, seq, total; offsets following on) lie back to back: a *run*. A run is
   flushed when the next datagram does not continue it and at the end of the batch: a whole
   frame is one ``write`` to the TAP, a part of one is one piece for the reassembler, one for
   another peer is re-sealed for the next hop (hop-by-hop: a relay only has keys with its
   neighbours) and sent in GSO runs by ``Sender.sealed``. So a GRO batch of a TCP
   super-packet's datagrams costs one AEAD call per datagram and one write.
4. heartbeats, probes and acks (``hop`` must be their ``src``) are acted on only after they
   authenticated, so a forged one cannot make a link look alive or skew PMTU discovery.

Counters of the replay windows and AEAD failures live in the ``KeyBook``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag

from weave_cli.sleeve import sealrun, wire

if TYPE_CHECKING:
    from weave_cli.sleeve.engine import Datapath

H = wire.HEADER_SIZE
SH = wire.SEALED_SIZE
TAG = wire.TAG_SIZE
SEALED_OVERHEAD = wire.overhead(True)
Run = tuple[bytes, bytes, int, int, int]  # src, dst, ttl, seq, total


class Opener:
    def __init__(self, dp: Datapath) -> None:
        self.dp = dp
        self.fbuf = bytearray(wire.MAX_FRAME)
        self.fmv = memoryview(self.fbuf)
        self.cbuf = bytearray(wire.MAX_PMTU)
        self.cmv = memoryview(self.cbuf)
        self.rx_plaintext = self.rx_no_key = 0

    def batch(self, n: int, seg: int, addr: tuple[str, int], now: float) -> None:
        if seg < n and self._run(n, seg, now):
            return
        dp = self.dp
        ubuf, umv, fmv, local, known = dp.ubuf, dp.umv, self.fmv, dp.local, dp.known
        links = dp.links.links
        unpack = wire.SEALED.unpack_from
        run: Run | None = None
        start = fill = count = 0
        for pos in range(0, n, seg):
            end = min(pos + seg, n)
            dp.udp_rx += 1
            if end - pos < SH + TAG or ubuf[pos + 3] != wire.FLAG_SEALED:
                if end - pos >= H and ubuf[pos + 3] == 0 and ubuf[pos] == wire.VERSION:
                    self.rx_plaintext += 1  # plain sleeve datagrams are never delivered
                else:
                    dp.rx_bad += 1
                continue
            (version, kind, ttl, _flags, src, dst, seq, off, total, hop, epoch,
             pseq) = unpack(ubuf, pos)
            if version != wire.VERSION:
                dp.rx_bad += 1
                continue
            link = links.get(hop)
            rx = link.rx if link is not None else None
            if rx is None:
                self.rx_no_key += 1
                continue
            body = end - pos - SH - TAG
            if kind == wire.DATA:
                if not (0 < body and total <= wire.MAX_FRAME and off + body <= total):
                    dp.rx_bad += 1
                    continue
                if src not in known:
                    dp.rx_unknown += 1
                    continue
                key = (src, dst, ttl, seq, total)
                if key != run or off != start + fill:
                    if run is not None and fill:
                        self._flush(run, start, fill, count, now)
                    run, start, fill, count = key, off, 0, 0
                if rx.open(epoch, pseq, umv[pos + SH : end], umv[pos : pos + SH],
                           fmv[fill : fill + body], now):
                    fill += body
                    count += 1
                continue
            if run is not None and fill:
                self._flush(run, start, fill, count, now)
            run, fill = None, 0
            if (hop != src or dst != local
                    or not wire.body_ok(kind, body, off, total, SEALED_OVERHEAD)):
                dp.rx_bad += 1
            elif rx.open(epoch, pseq, umv[pos + SH : end], umv[pos : pos + SH],
                         self.cmv[:body], now):
                dp.on_control(kind, src, addr, seq, off, total, now)
        if run is not None and fill:
            self._flush(run, start, fill, count, now)

    def _run(self, n: int, seg: int, now: float) -> bool:
        """Take a GRO batch whole when it is one run: the consecutive pieces of one frame
        with consecutive pseqs, all newer than the current epoch's window, from one
        neighbour's primary key. The AEAD calls go through ``map``; any failure (a bad tag
        anywhere) leaves the windows as they were and returns False, so the datagram-by-datagram
        path takes the batch (and counts what is wrong)."""
        dp = self.dp
        k = -(-n // seg)
        cap = seg - SH - TAG
        if k < 2 or cap <= 0 or k > 2 * sealrun.MAX_RUN:
            return False
        ubuf, umv = dp.ubuf, dp.umv
        (version, kind, ttl, flags, src, dst, seq, off, total, hop, epoch,
         first) = wire.SEALED.unpack_from(ubuf)
        payload = n - k * (SH + TAG)
        if (version != wire.VERSION or kind != wire.DATA or flags != wire.FLAG_SEALED
                or total > wire.MAX_FRAME or off + payload > total or src not in dp.known
                or payload <= (k - 1) * cap):
            return False
        link = dp.links.links.get(hop)
        rx = link.rx if link is not None else None
        if rx is None:
            return False
        st = rx.keys[0].cur
        if epoch != st.epoch & wire.EPOCH_MASK or first <= st.window.top:
            return False
        lay = sealrun.layout(cap, k)
        t = lay.fields.unpack_from(ubuf)
        if (t[0::5].count(t[0]) != k or t[2::5].count(t[2]) != k or t[3::5].count(t[3]) != k
                or b"".join(t[1::5]) != lay.offsets(off) or b"".join(t[4::5]) != lay.pseqs(first)):
            return False
        bodies = list(lay.bodies(umv))
        bodies[-1] = umv[(k - 1) * seg + SH : n]
        outs = list(lay.plain(self.fmv))
        outs[-1] = self.fmv[(k - 1) * cap : payload]
        try:
            sealrun.consume(map(st.aead.decrypt_into, lay.nonces(first), bodies, lay.heads(umv),
                                outs))
        except (InvalidTag, ValueError):
            return False
        st.window.commit_run(first, k)
        dp.udp_rx += k
        self._flush((src, dst, ttl, seq, total), off, payload, k, now)
        return True

    def _flush(self, run: Run, start: int, fill: int, count: int, now: float) -> None:
        """Deliver the ``fill`` opened bytes of a run (frame bytes from ``start``)."""
        dp = self.dp
        src, dst, ttl, seq, total = run
        if dst == dp.local:
            if start == 0 and fill == total:
                dp.write(self.fmv, 0, total)
            else:
                frame = dp.reasm.add(src, seq, start, total, self.fmv[:fill], now)
                if frame is not None:
                    dp.write(memoryview(frame), 0, total)
        elif ttl <= 1:
            dp.ttl_expired += count
        elif (link := dp.hops.get(dst)) is None:
            dp.no_route += count
        else:
            dp.relayed += count
            dp.out.sealed(self.fmv[:fill], start, total, link, ttl - 1, src, dst, seq)
