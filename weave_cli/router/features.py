"""The FEATURES map of the mesh handshake: its byte format, limits and the required entries.

Body layout (docs/protocol.md section 3)::

    0  1  count N      number of entries, at most 64
    then N times:  key_len (1 byte, 1..64), key (ASCII [A-Za-z0-9_.-]),
                   value_len (2 bytes, 0..1024), value (UTF-8, no control characters)

Pure; every decoding error is a ``ProtocolError`` with a one-line reason (untrusted text in it
is escaped and truncated by ``show``). Re-exported by ``weave_cli.router.protocol``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from weave_cli.errors import ProtocolError
from weave_cli.router.peer import PeerName, valid_nickname

MAX_FEATURES: Final = 64
MAX_KEY: Final = 64
MAX_VALUE: Final = 1024
FEATURES_MAX_BODY: Final = 1 + MAX_FEATURES * (1 + MAX_KEY + 2 + MAX_VALUE)
REQUIRED_FEATURES: Final = ("Name", "NickName", "UID", "ConnID")
_KEY_RE: Final = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DECIMAL_RE: Final = re.compile(r"\A(0|[1-9][0-9]{0,19})\Z")


@dataclass(frozen=True)
class RemoteIdentity:
    name: PeerName
    nickname: str
    uid: int
    conn_id: int
    features: Mapping[str, str]  # the extras only: the required four are the fields above


def show(value: str | bytes, limit: int = 32) -> str:
    """A bounded, escaped rendering of untrusted input for a one-line reason."""
    text = repr(value[:limit])
    return text + "..." if len(value) > limit else text


def encode_features(features: Mapping[str, str]) -> bytes:
    """Encode a validated map (raises ValueError when it breaks the limits)."""
    if len(features) > MAX_FEATURES:
        raise ValueError(f"too many features: {len(features)} > {MAX_FEATURES}")
    out = bytearray([len(features)])
    for key, value in features.items():
        raw = value.encode("utf-8")
        if not _KEY_RE.match(key) or len(raw) > MAX_VALUE or _CONTROL_RE.search(value):
            raise ValueError(f"invalid feature {show(key)}={show(value)}")
        out += bytes([len(key)]) + key.encode("ascii") + len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def decode_features(body: bytes) -> dict[str, str]:
    """Decode a FEATURES body; raises ProtocolError on anything malformed. Never over-reads."""
    if not body or body[0] > MAX_FEATURES:
        raise ProtocolError("invalid features: entry count missing or above 64")
    result: dict[str, str] = {}
    pos = 1
    for _ in range(body[0]):
        klen = body[pos] if pos < len(body) else 0
        key_raw = body[pos + 1 : pos + 1 + klen]
        pos += 1 + klen
        vlen = int.from_bytes(body[pos : pos + 2], "big")
        value_raw = body[pos + 2 : pos + 2 + vlen]
        pos += 2 + vlen
        if pos > len(body) or not 1 <= klen <= MAX_KEY or vlen > MAX_VALUE:
            raise ProtocolError("invalid features: truncated or oversized entry")
        key = key_raw.decode("latin-1")
        try:
            value = value_raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"invalid features: value of {show(key)} is not UTF-8") from None
        if not _KEY_RE.match(key) or _CONTROL_RE.search(value) or key in result:
            raise ProtocolError(f"invalid features: bad or duplicate entry {show(key)}")
        result[key] = value
    if pos != len(body):
        raise ProtocolError("invalid features: trailing bytes")
    return result


def _decimal(features: Mapping[str, str], key: str) -> int:
    text = features[key]
    if not _DECIMAL_RE.match(text) or int(text) >= 1 << 64:
        raise ProtocolError(f"invalid feature {key}={show(text)}: expected a 64-bit decimal")
    return int(text)


def parse_remote_identity(features: Mapping[str, str]) -> RemoteIdentity:
    """Validate the required features; raises ProtocolError with a one-line reason."""
    missing = [key for key in REQUIRED_FEATURES if key not in features]
    if missing:
        raise ProtocolError(f"missing required features: {', '.join(missing)}")
    try:
        name = PeerName.parse(features["Name"])
    except ValueError:
        raise ProtocolError(f"invalid feature Name={show(features['Name'])}") from None
    nickname = features["NickName"]
    if not valid_nickname(nickname):
        raise ProtocolError(f"invalid feature NickName={show(nickname)}")
    uid = _decimal(features, "UID")
    if uid == 0:
        raise ProtocolError("invalid feature UID=0: the run id must be non-zero")
    extras = {k: v for k, v in features.items() if k not in REQUIRED_FEATURES}
    return RemoteIdentity(name, nickname, uid, _decimal(features, "ConnID"),
                          MappingProxyType(extras))
