"""A small synchronous HTTP client for the router's API.

It speaks HTTP/1.1 over the control socket ($WEAVE_RUN_DIR/weave.sock) with the standard
library only, so commands that just ask the router something start fast. Read-only calls fall
back to the status port (127.0.0.1:6782) when the socket is not accessible (non-root users).

Errors are translated here: a socket that is missing or refuses becomes ``NotRunningError``;
an HTTP error status becomes ``RouterError`` carrying the body the router sent.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from weave_cli.errors import NotRunningError, RouterError, TimeoutError_
from weave_cli.names import STATUS_PORT, Paths

MAX_RESPONSE = 16 * 1024 * 1024


def _exchange(
    sock: socket.socket, method: str, url: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One HTTP/1.1 request with ``Connection: close``; the response is read to EOF.

    The router's responses are small and always carry Content-Length or end at close, so a
    bounded read to EOF is all the parsing needed; http.client would cost ~15 ms of imports
    on every CLI start.
    """
    lines = [f"{method} {url} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body or b'')}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
    chunks: list[bytes] = []
    size = 0
    while chunk := sock.recv(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise OSError("response too large")
    raw = b"".join(chunks)
    head, sep, payload = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError("malformed HTTP response")
    if b"transfer-encoding: chunked" in head.lower():
        payload = _dechunk(payload)
    return int(status_line[1]), payload


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            raise OSError("malformed chunked body")
        length = int(data[pos:line_end].split(b";")[0] or b"0", 16)
        if length == 0:
            return b"".join(out)
        out.append(data[line_end + 2 : line_end + 2 + length])
        pos = line_end + 2 + length + 2


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise RouterError("the router answered with something that is not JSON") from None


class RouterClient:
    """Calls one router, addressed by its ``Paths`` (the lab gives each host its own)."""

    def __init__(self, paths: Paths | None = None, timeout: float = 10.0) -> None:
        self.paths = paths or Paths.from_env()
        self.timeout = timeout

    def request(
        self,
        method: str,
        url: str,
        form: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One HTTP call; raises NotRunningError when nothing answers. Never raises on status."""
        body = urlencode(form, doseq=True).encode() if form is not None else None
        hdrs = dict(headers or {})
        if body is not None:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            sock = self._connect(method, timeout if timeout is not None else self.timeout)
            with sock:
                status, data = _exchange(sock, method, url, body, hdrs)
            return Response(status, data)
        except TimeoutError:
            raise TimeoutError_(
                f"the router did not answer within {timeout or self.timeout:.1f}s",
                f"it may be overloaded; see {self.paths.log_file}",
            ) from None
        except (ValueError, OSError) as err:
            raise NotRunningError(
                f"weave router is not running (no answer at {self.paths.socket}: {_reason(err)})",
                "start it with 'weave launch'",
            ) from None

    def _connect(self, method: str, timeout: float) -> socket.socket:
        """The control socket; read-only calls fall back to the status port without access."""
        sock_path = self.paths.socket
        if not os.access(sock_path, os.R_OK | os.W_OK) and sock_path.exists():
            if method != "GET":
                raise NotRunningError(
                    f"cannot reach the control socket {sock_path}: permission denied",
                    "run this command as root (sudo)",
                )
            return socket.create_connection(("127.0.0.1", STATUS_PORT), timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(sock_path))
        except OSError:
            sock.close()
            raise
        return sock

    def call(self, method: str, url: str, **kw: Any) -> Response:
        """Like ``request`` but turns any non-2xx status into ``RouterError``."""
        resp = self.request(method, url, **kw)
        if not 200 <= resp.status < 300:
            raise RouterError(resp.text.strip() or f"router answered HTTP {resp.status}")
        return resp

    def ready(self, timeout: float = 1.0) -> bool:
        """True when the router answers GET /status with 200."""
        try:
            return self.request("GET", "/status", timeout=timeout).status == 200
        except (NotRunningError, TimeoutError_):
            return False


def _reason(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return "no such socket"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.timeout):
        return "timed out"
    if isinstance(err, OSError):
        return err.strerror or str(err) or type(err).__name__
    return str(err)
