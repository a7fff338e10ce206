"""A small synchronous HTTP client for the router's API.

It speaks HTTP/1.1 over the control socket ($WEAVE_RUN_DIR/weave.sock) with the standard
library only, so commands that just ask the router something start fast. Read-only calls fall
back to the status port (127.0.0.1:6782) when the socket is not accessible (non-root users).

Errors are translated here: a socket that is missing or refuses becomes ``NotRunningError``;
an HTTP error status becomes ``RouterError`` carrying the body the router sent.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from weave_cli.errors import NotRunningError, RouterError
from weave_cli.names import STATUS_PORT, Paths

MAX_RESPONSE = 16 * 1024 * 1024


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


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
        conn = self._connection(method, timeout if timeout is not None else self.timeout)
        try:
            conn.request(method, url, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read(MAX_RESPONSE)
            return Response(resp.status, data)
        except (ConnectionError, FileNotFoundError, socket.timeout, OSError) as err:
            raise NotRunningError(
                f"weave router is not running (no answer at {self.paths.socket}: {_reason(err)})",
                "start it with 'weave launch'",
            ) from None
        finally:
            conn.close()

    def _connection(self, method: str, timeout: float) -> http.client.HTTPConnection:
        sock_path = self.paths.socket
        try:
            sock_path.stat()
        except PermissionError:
            if method != "GET":
                raise NotRunningError(
                    f"cannot reach the control socket {sock_path}: permission denied",
                    "run this command as root (sudo)",
                ) from None
            return http.client.HTTPConnection("127.0.0.1", STATUS_PORT, timeout=timeout)
        except FileNotFoundError:
            pass
        return _UnixConnection(str(sock_path), timeout)

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
        except NotRunningError:
            return False


def _reason(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError):
        return "no such socket"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.timeout):
        return "timed out"
    return err.strerror or type(err).__name__ if isinstance(err, OSError) else str(err)
