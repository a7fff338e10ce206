"""``Secret``: a value that never shows itself in a repr, str, log line or traceback.

Representation: the wrapped ``bytes`` in ``_value`` (reached only through ``reveal()``).
``repr``/``str``/``format`` all give ``<redacted>``, so a ``Secret`` that ends up inside a
dataclass repr, a log argument or an exception message leaks nothing. Equality compares in
constant time; hashing is refused (a secret has no business being a dict key).
"""

from __future__ import annotations

import hmac
from typing import Final

REDACTED: Final = "<redacted>"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("Secret wraps bytes")
        self._value = value

    @classmethod
    def from_text(cls, text: str) -> Secret:
        return cls(text.encode("utf-8"))

    def reveal(self) -> bytes:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")
