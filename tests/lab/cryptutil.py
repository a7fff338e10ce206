"""Lab helpers for password-protected networks: password files and an encrypted pair."""

from __future__ import annotations

from pathlib import Path

from dputil import FAST, lab_run, link_mode, until
from labutil import Lab, weave


def password_file(tmp: Path, name: str, text: str) -> str:
    """``text`` in a 0600 file ``tmp/name``, as an operator would keep it; its path."""
    path = tmp / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def encrypted_pair(net: Lab, tmp: Path, secret: str, hosts: int = 3) -> str:
    """A ``hosts``-host bare lab with password routers on h1 and h2, their link on the
    encrypted sleeve, containers c1 (h1) and c2 (h2); c2's address."""
    good = password_file(tmp, "good", secret)
    weave("lab", "up", "--name", net.name, "--hosts", str(hosts), "--bare")
    net.weave("h1", "launch", "--password-file", good, *FAST)
    net.weave("h2", "launch", "198.18.0.1", "--password-file", good, *FAST)
    until("h1-h2 sleeve", lambda: link_mode(net, "h1", "h2", "sleeve"))
    lab_run(net, "h1", "c1")
    return lab_run(net, "h2", "c2")
