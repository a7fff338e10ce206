"""Traffic programs of the policy tests (standard library only), run inside namespaces with
``python -c PROGRAM ARGS``.

* ``SERVER PORT``: accepts TCP connections on PORT forever; to each it sends the address it
  saw the connection come from, then closes. Prints ``ready`` once listening.
* ``CLIENT TARGET...``: connects to every ``addr:port`` at once (1.5 s each) and prints one JSON
  object ``{target: "ok <address the server saw>" | "refused" | "blocked"}``: refused means an
  RST came back, blocked that nothing did.
* ``HAMMER TARGET SECONDS``: tries to connect to ``addr:port`` every 50 ms for SECONDS (0.3 s
  each) and prints ``{"tries": N, "connected": M}``; a closed pod must show M == 0.
"""

SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64); print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(peer[0].encode()); c.close()
"""

CLIENT = r"""
import json, socket, sys, threading
out = {}
def one(t):
    host, port = t.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.5) as c:
            out[t] = "ok " + c.recv(64).decode()
    except ConnectionRefusedError:
        out[t] = "refused"
    except OSError:
        out[t] = "blocked"
ts = [threading.Thread(target=one, args=(t,)) for t in sys.argv[1:]]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"""

HAMMER = r"""
import json, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1); end = time.monotonic() + float(sys.argv[2])
tries = connected = 0
while time.monotonic() < end:
    tries += 1
    try:
        socket.create_connection((host, int(port)), timeout=0.3).close(); connected += 1
    except OSError:
        pass
    time.sleep(0.05)
print(json.dumps({"tries": tries, "connected": connected}))
"""

# UDP echo on port 9000 over IPv4 (broadcasts too) and IPv6; prints ready.
UDP_ECHO = r"""
import socket, threading
def serve(family, addr):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, 9000))
    while True:
        data, peer = s.recvfrom(2048); s.sendto(data, peer)
threading.Thread(target=serve, args=(socket.AF_INET6, "::"), daemon=True).start()
threading.Thread(target=serve, args=(socket.AF_INET, "0.0.0.0"), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# UDP_ASK HOW DEST [DEST_MAC]: one datagram to DEST port 9000 and whether an echo comes back
# from another address than ours (prints "echo" or "none"). HOW: "ip" (a plain socket; DEST
# may be a broadcast address or "fe80::x%ethwe"), or "vlan0" / "bcastmac" (a frame written on
# ethwe by hand: 802.1Q with VLAN 0 to the pod's MAC DEST_MAC, or a unicast IPv4 datagram in a
# broadcast Ethernet frame).
UDP_ASK = r"""
import socket, struct, sys
how, dest = sys.argv[1], sys.argv[2]
def csum(b):
    b += b"\0" * (len(b) % 2); s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16; return ~s & 0xffff
family = socket.AF_INET6 if ":" in dest else socket.AF_INET
u = socket.socket(family, socket.SOCK_DGRAM); u.settimeout(1.5)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
u.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0)); sport = u.getsockname()[1]
words = __import__("subprocess").run(["ip", "-o", "addr", "show", "dev", "ethwe"],
                                     capture_output=True, text=True).stdout.split()
mine = {words[i + 1].split("/")[0] for i, w in enumerate(words) if w in ("inet", "inet6")}
if how == "ip":
    u.sendto(b"probe", socket.getaddrinfo(dest, 9000, family, socket.SOCK_DGRAM)[0][4])
else:
    src = words[words.index("inet") + 1].split("/")[0]
    udp = struct.pack("!HHHH", sport, 9000, 13, 0) + b"probe"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dest))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    dmac = bytes.fromhex(sys.argv[3].replace(":", "")) if how == "vlan0" else b"\xff" * 6
    tag = struct.pack("!HH", 0x8100, 0) if how == "vlan0" else b""
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); raw.bind(("ethwe", 0))
    smac = raw.getsockname()[4]
    raw.send(dmac + smac + tag + b"\x08\x00" + ip + udp)
try:
    while True:  # a broadcast comes back from our own echo server too: not an answer
        peer = u.recvfrom(2048)[1][0].split("%")[0]
        if peer not in mine:
            print("echo"); break
except OSError:
    print("none")
"""
