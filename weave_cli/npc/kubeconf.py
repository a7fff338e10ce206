"""How the network policy controller reaches the Kubernetes API server: ``ApiConfig`` and the
one HTTP session built from it (``ApiSession``), with every response bounded.

``ApiConfig`` is plain data: ``base_url`` (``http[s]://host[:port][/prefix]``, no trailing
slash, no user-info, query or fragment), ``token`` (a ``Secret``, or None for no
``Authorization`` header), ``ca_file`` (the CA bundle that verifies the server; None means the
system's roots) and ``token_file`` (where the token came from). The token is only ever read
from a file, never taken from argv or the environment, and a ``Secret`` shows ``<redacted>`` in
any repr, so neither the config nor an exception about it can leak it. The kubelet rotates
projected service-account tokens in place, so ``ApiSession`` re-reads ``token_file`` whenever
its mtime or size changes (a failed re-read keeps the token it has).

``ApiSession`` owns one ``aiohttp.ClientSession`` for all the informers of a config: connect
timeout 5 s, LIST total 60 s, watches unbounded in total but with a socket read timeout the
caller chooses (a bit above the watch's ``timeoutSeconds``). Every answer is hostile until
parsed: a status other than 200 becomes a ``KubeRequestError`` carrying the status and the
Status object's ``reason`` word only (never its free text, which a server could fill with
anything, our token included); a body over its limit is refused before it is allocated
(``Content-Length``) or as soon as it grows past it; bodies are asked for uncompressed and
never decompressed (no gzip bomb); redirects are not followed (they would carry the token
elsewhere). ``LineSplitter`` bounds the lines of a watch stream the same way, and ``describe``
turns any failure into a short reason of our own words (never an aiohttp message, which could
quote a URL or a header), fit for a log line or a ``Health`` message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from weave_cli import __version__
from weave_cli.crypto.secret import Secret
from weave_cli.errors import KubeConfigError, KubeRequestError

log = logging.getLogger("weave.npc")
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MAX_TOKEN_BYTES = 64 * 1024
MAX_ERROR_BYTES = 64 * 1024  # of a non-200 body: enough for any Status object
CONNECT_TIMEOUT = 5.0
LIST_TIMEOUT = 60.0
TOKEN_RE = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: a JWT, or any sane bearer token
REASON_RE = re.compile(r"[A-Za-z]{1,40}")


def read_token(path: Path) -> Secret:
    """The bearer token in ``path`` (surrounding whitespace dropped); ``KubeConfigError`` when
    it cannot be read, is empty, too long, or holds bytes that cannot go in a header."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TOKEN_BYTES + 1)
    except OSError as err:
        raise KubeConfigError(f"cannot read the API token file {path}: "
                              f"{err.strerror or type(err).__name__}") from None
    raw = raw.strip()
    if len(raw) > MAX_TOKEN_BYTES or not TOKEN_RE.fullmatch(raw):
        raise KubeConfigError(f"the API token file {path} does not hold a token",
                              "it must be one line of visible ASCII, at most 64 KiB")
    return Secret(raw)


@dataclass(frozen=True)
class ApiConfig:
    base_url: str
    token: Secret | None = None
    ca_file: Path | None = None
    token_file: Path | None = None

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.base_url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise KubeConfigError("the API server URL is malformed") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise KubeConfigError("the API server URL must be http[s]://host[:port]")
        if parts.username is not None or parts.password is not None:
            raise KubeConfigError("the API server URL must not hold credentials",
                                  "put the token in a file and pass that file")
        if parts.query or parts.fragment:
            raise KubeConfigError("the API server URL must not have a query or fragment")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @classmethod
    def in_cluster(cls, env: Mapping[str, str] | None = None,
                   account_dir: Path = SERVICE_ACCOUNT_DIR) -> ApiConfig:
        """The API server as a pod sees it: ``KUBERNETES_SERVICE_HOST``/``_PORT``, the
        service account's token and ``ca.crt`` beside it, over https."""
        env = os.environ if env is None else env
        host = env.get("KUBERNETES_SERVICE_HOST", "")
        port = env.get("KUBERNETES_SERVICE_PORT", "")
        if not host or not port:
            raise KubeConfigError("not running in a Kubernetes pod "
                                  "(KUBERNETES_SERVICE_HOST/PORT are not set)",
                                  "give the API server's URL explicitly")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise KubeConfigError("KUBERNETES_SERVICE_PORT is not a port number")
        if ":" in host:
            host = f"[{host}]"
        token_file = account_dir / "token"
        config = cls(f"https://{host}:{int(port)}", read_token(token_file),
                     account_dir / "ca.crt", token_file)
        config.ssl_context()  # a missing or broken CA fails now, not at every retry
        return config

    @classmethod
    def explicit(cls, url: str, token_file: Path | None = None,
                 ca_file: Path | None = None) -> ApiConfig:
        """``url`` with the token in ``token_file`` (none: no Authorization header)."""
        token = read_token(token_file) if token_file is not None else None
        config = cls(url, token, ca_file, token_file)
        config.ssl_context()
        if token is not None and not config.base_url.startswith("https:"):
            log.warning("the Kubernetes API token will be sent over plain http to %s",
                        config.base_url)
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context that verifies the server (None for http); ``KubeConfigError`` when
        the CA file cannot be loaded."""
        if not self.base_url.startswith("https:"):
            return None
        try:
            return ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None)
        except (OSError, ssl.SSLError, ValueError) as err:
            why = getattr(err, "strerror", None) or type(err).__name__
            raise KubeConfigError(f"cannot load the API server's CA {self.ca_file}: {why}") \
                from None


class ApiSession:
    """The HTTP session of one ``ApiConfig``: ``async with ApiSession(config) as api``.
    Entering it raises ``KubeConfigError`` only if the CA file became unusable since the
    config was made; every later failure is a request's (see the module docstring)."""

    def __init__(self, config: ApiConfig, *, connect_timeout: float = CONNECT_TIMEOUT,
                 list_timeout: float = LIST_TIMEOUT) -> None:
        self.config = config
        self.connect_timeout = connect_timeout
        self.list_timeout = list_timeout
        self.token = config.token
        self._token_stamp: tuple[int, int] | None = None  # the first request re-reads it
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiSession:
        connector = aiohttp.TCPConnector(ssl=self.config.ssl_context() or False)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(sock_connect=self.connect_timeout))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def closed(self) -> bool:
        return self._session is None

    def _headers(self) -> dict[str, str]:
        path = self.config.token_file
        stamp = _stamp(path)
        if path is not None and stamp != self._token_stamp:
            self._token_stamp = stamp
            try:
                self.token = read_token(path)
            except KubeConfigError as err:
                log.warning("%s; keeping the token read before", err)
        headers = {"Accept": "application/json", "Accept-Encoding": "identity",
                   "User-Agent": f"weave-npc/{__version__}"}
        if self.token is not None:
            headers["Authorization"] = "Bearer " + self.token.reveal().decode("ascii")
        return headers

    def _get(self, path: str, params: Mapping[str, str],
             timeout: aiohttp.ClientTimeout) -> Any:
        if self._session is None:
            raise RuntimeError("ApiSession used outside 'async with'")
        return self._session.get(self.config.base_url + path, params=params,
                                 headers=self._headers(), timeout=timeout,
                                 allow_redirects=False)

    async def get_json(self, path: str, params: Mapping[str, str], *, max_bytes: int) -> Any:
        """GET ``path`` and decode its JSON body, at most ``max_bytes`` of it."""
        timeout = aiohttp.ClientTimeout(total=self.list_timeout,
                                        sock_connect=self.connect_timeout)
        async with self._get(path, params, timeout) as resp:
            await check_status(resp)
            return decode_json(await read_bounded(resp, max_bytes))

    def watch(self, path: str, params: Mapping[str, str], *, read_timeout: float) -> Any:
        """The response of a streaming GET (``async with``); call ``check_status`` on it, then
        read ``resp.content``. Silence longer than ``read_timeout`` fails the read."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                        sock_read=read_timeout)
        return self._get(path, params, timeout)


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st is not None else None


async def check_status(resp: aiohttp.ClientResponse) -> None:
    """Nothing for 200; else ``KubeRequestError("HTTP <status> <Reason>", status)``."""
    if resp.status == 200:
        return
    reason = ""
    try:
        status = decode_json(await read_bounded(resp, MAX_ERROR_BYTES))
        reason = status_reason(status)
    except (KubeRequestError, aiohttp.ClientError, OSError, TimeoutError):
        pass
    raise KubeRequestError(f"HTTP {resp.status}{reason}", resp.status)


def status_reason(status: Any) -> str:
    """`` <Reason>`` of a Status object when it has a sane one (a word), else empty."""
    reason = status.get("reason") if isinstance(status, dict) else None
    return f" {reason}" if isinstance(reason, str) and REASON_RE.fullmatch(reason) else ""


async def read_bounded(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, refused (``KubeRequestError``) as soon as it is known to exceed
    ``max_bytes``: from ``Content-Length`` before reading, or while reading."""
    too_big = f"response body over {max_bytes} bytes"
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise KubeRequestError(too_big)
    body = bytearray()
    while chunk := await resp.content.readany():
        if len(body) + len(chunk) > max_bytes:
            raise KubeRequestError(too_big)
        body += chunk
    return bytes(body)


def decode_json(raw: bytes) -> Any:
    """``json.loads``, with every way garbage can fail it made a ``KubeRequestError``."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, huge ints, deep nesting
        raise KubeRequestError("malformed JSON") from None


class LineSplitter:
    """The lines of a stream that arrives in chunks. A line longer than ``limit`` bytes is a
    ``KubeRequestError`` as soon as it is seen to be: the buffer never holds more than
    ``limit`` bytes plus one chunk."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        search, pos, lines = len(self.buf), 0, []  # the old buffer holds no newline
        self.buf += chunk
        while (end := self.buf.find(b"\n", search)) >= 0:
            if end - pos > self.limit:
                raise self._too_long()
            lines.append(bytes(self.buf[pos:end]))
            pos = search = end + 1
        del self.buf[:pos]
        if len(self.buf) > self.limit:
            raise self._too_long()
        return lines

    def _too_long(self) -> KubeRequestError:
        self.buf.clear()
        return KubeRequestError(f"a watch event line over {self.limit} bytes")

    def end(self) -> None:
        """The stream ended: what is left must be blank (else an event was cut short)."""
        if self.buf.strip():
            raise KubeRequestError("the watch stream ended inside an event")


def describe(err: BaseException) -> str:
    """A short reason for a failure, of our own making: the exception's type and errno text
    at most, never an aiohttp message (that could quote a URL or a header)."""
    if isinstance(err, KubeRequestError):
        return err.message
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        return "the server's TLS certificate is not trusted"
    if isinstance(err, aiohttp.ClientConnectorError):
        return f"cannot connect ({err.os_error.strerror or type(err.os_error).__name__})"
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "the server disconnected"
    if isinstance(err, aiohttp.ClientPayloadError):
        return "the response was cut short"
    if isinstance(err, aiohttp.ClientResponseError):
        return "a malformed HTTP response"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return type(err).__name__
