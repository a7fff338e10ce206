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
