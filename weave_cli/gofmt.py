"""Go's ``fmt`` printing of decoded JSON values (``%v``, float and string quoting).

Shared by the status renderer and the ``report -f`` template engine. Kept apart from the
template parser so that ``weave status`` does not pay for importing the parser.
Values are what ``json.loads`` produces: None, bool, int, float, str, list, dict.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any


def go_type(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return type(v).__name__


def go_float(f: float) -> str:
    """Go's ``%v`` for a float64: shortest digits; exponent form below 1e-4 or from 1e21."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    d = Decimal(repr(f)).normalize()
    exp = d.adjusted()
    if -4 <= exp < 21:
        return format(d, "f")
    digits = "".join(map(str, d.as_tuple().digits))
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{'-' if f < 0 else ''}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def sorted_keys(d: dict[Any, Any]) -> list[Any]:
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=repr)


def format_value(v: Any) -> str:
    """Go's ``fmt`` ``%v`` of a decoded JSON value (a null is ``<nil>``)."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(format_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{format_value(k)}:{format_value(v[k])}"
                                 for k in sorted_keys(v)) + "]"
    return str(v)


def go_quote(s: str, ascii_only: bool = False, quote: str = '"') -> str:
    """Go's ``strconv.Quote`` (``QuoteToASCII`` with ``ascii_only``; runes with ``quote="'"``)."""
    out = [quote]
    for ch in s:
        cp = ord(ch)
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable() and not (ascii_only and cp > 0x7E):
            out.append(ch)
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append(quote)
    return "".join(out)
