"""The subset of Go's ``text/template`` that ``weave report -f TEMPLATE`` needs.

``render_template(template, data)`` evaluates a template against the decoded ``/report`` JSON
(dicts, lists, str, int, float, bool, None). The report models Go structs as dicts, so a field
path ``.A.B`` is a chain of dict-key lookups, and a key that is not there is an error naming the
field, as ``can't evaluate field`` is in Go. One exception mirrors Go's ``omitempty`` nil
sections: when the condition of ``if``/``with``/``range`` is a bare field path, an absent *last*
key is null (false), so ``{{if .IPAM}}...{{end}}`` works on a report without IPAM while
``{{.IPAM.Range}}`` on such a report is an error naming ``IPAM``.

Supported (and nothing else; anything else is a ``UsageError`` saying what is not supported):

* text, copied verbatim; ``\\n`` in text is two characters, as in Go. Inside quoted string
  literals Go escapes (``"\\n"``, ``"\\t"``, ``"\\x41"``...) are interpreted, as in Go;
  back-quoted raw strings are not;
* actions ``{{PIPELINE}}``; comments ``{{/* ... */}}``; trim markers ``{{- `` and `` -}}``
  that drop all whitespace (space, tab, CR, LF) before / after the action;
* operands: ``.``, ``.A.B``, ``$`` and ``$.A`` (the root), string/raw-string/number literals,
  ``true``/``false``/``nil``, ``(PIPELINE).A`` and pipes ``X | f`` (X becomes f's last argument);
* blocks ``{{if}}``, ``{{with}}`` (rebinds ``.``), ``{{range}}`` (rebinds ``.`` to each element;
  maps iterate their values in sorted key order; ``null`` iterates zero times), each with
  ``{{else}}``; ``{{else if}}`` / ``{{else with}}`` chains; truthiness as in Go: false, 0, null
  and empty string/list/map are false;
* functions ``json`` (compact, like ``json.Marshal``: no spaces, ``<>&`` escaped as ``\\u003c``..),
  ``len``, ``printf`` (verbs ``%s %d %v %q %%`` with flags ``- + 0 space``, width, precision;
  Go's ``%!d(string=x)``, ``%!s(MISSING)`` and ``%!(EXTRA ...)`` markers), ``index``, ``not``,
  ``and``, ``or`` (short-circuit), ``eq``, ``ne``.

Not supported: variables (``$x :=``), ``define``/``template``/``block``, ``break``/``continue``,
other functions and verbs.

Printing follows Go's ``fmt`` ``%v``: strings as-is, ``true``/``false``, ints in decimal, floats
in Go's shortest form (``1e+21``), lists ``[a b c]``, maps ``map[k:v ...]`` with sorted keys, a
null inside a list or map ``<nil>``; a null printed by an action is ``<no value>``.

Bounds: templates over ``MAX_TEMPLATE_BYTES`` (64 KiB UTF-8) and block/parenthesis nesting over
``MAX_DEPTH`` (32, each ``else if`` counts as one level) are rejected before evaluation; evaluation
stops with a ``UsageError`` after ``MAX_STEPS`` executed nodes or ``MAX_OUTPUT_CHARS`` of output,
so a template of nested ranges cannot run for minutes. Errors carry ``line L, col C`` (1-based).

The module is a small lexer (``_lex``) → recursive-descent parser (``_Parser``) → tree walker
(``_Exec``), plus Go ``fmt``/``json`` emulation (``format_value``, ``_sprintf``, ``_go_json``).
Size: it is over the 600-line guideline because the stages share the private AST and the error
positions; the natural split, if it grows, is the fmt/json emulation into ``gofmt.py``.
"""

from __future__ import annotations

import json as _json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Union

from weave_cli.errors import UsageError
from weave_cli.gofmt import format_value, go_float, go_quote, go_type, sorted_keys

__all__ = ["MAX_DEPTH", "MAX_OUTPUT_CHARS", "MAX_STEPS", "MAX_TEMPLATE_BYTES", "format_value",
           "render_template"]

MAX_TEMPLATE_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_STEPS = 1_000_000
MAX_OUTPUT_CHARS = 16 * 1024 * 1024
MAX_PRINTF_WIDTH = 4096  # checked before padding: a width is work done before the output cap

_FUNCS = frozenset({"json", "len", "printf", "index", "not", "and", "or", "eq", "ne"})
_KEYWORDS = frozenset({"if", "with", "range", "else", "end"})
_UNSUPPORTED_KEYWORDS = frozenset({"define", "template", "block", "break", "continue"})
_TRIM_WS = " \t\r\n"


class _Fail(Exception):
    """Internal: an error at a source offset; turned into ``UsageError`` with line/col."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


def _fail(pos: int, message: str) -> NoReturn:
    raise _Fail(pos, message)


# ---------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class _Field:
    root: str  # "" = dot, "$" = the data passed to render_template
    names: tuple[str, ...]
    pos: int


@dataclass(frozen=True)
class _Literal:
    value: Any
    pos: int


@dataclass(frozen=True)
class _Func:
    name: str
    pos: int


@dataclass(frozen=True)
class _Paren:
    pipe: _Pipeline
    names: tuple[str, ...]
    pos: int


_Operand = Union[_Field, _Literal, _Func, _Paren]


@dataclass(frozen=True)
class _Command:
    operands: tuple[_Operand, ...]
    pos: int


@dataclass(frozen=True)
class _Pipeline:
    commands: tuple[_Command, ...]
    pos: int


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Action:
    pipe: _Pipeline


@dataclass(frozen=True)
class _Block:
    kind: str  # "if" | "with" | "range"
    pipe: _Pipeline
    body: tuple[_Node, ...]
    orelse: tuple[_Node, ...]
    pos: int


_Node = Union[_Text, _Action, _Block]

# -------------------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Token:
    kind: str
    value: Any
    pos: int
    spaced: bool  # whitespace directly before this token


@dataclass(frozen=True)
class _ActionItem:
    tokens: tuple[_Token, ...]
    pos: int


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN_RE = re.compile(
    rf"""
      (?P<ws>\s+)
    | (?P<close>\}}\}})
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<field>(?:\.{_IDENT})+)
    | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+
                      |(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
    | (?P<dot>\.)
    | (?P<var>\$[A-Za-z0-9_]*(?:\.{_IDENT})*)
    | (?P<ident>{_IDENT})
    | (?P<lparen>\()
    | (?P<rparen>\))
    | (?P<pipe>\|)
    | (?P<assign>:?=)
    """,
    re.VERBOSE,
)
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"'}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)


def _unquote(body: str, pos: int) -> str:
    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        if esc[0] in "xuU":
            cp = int(esc[1:], 16)
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                _fail(pos, f"invalid escape \\{esc} in string")
            return chr(cp)
        if esc[0] in "01234567" and len(esc) == 3:
            return chr(int(esc, 8))
        _fail(pos, f"unknown escape sequence \\{esc} in string")

    return _ESCAPE_RE.sub(one, body)


def _number(text: str, pos: int) -> int | float:
    clean = text.replace("_", "")
    try:
        low = clean.lower().lstrip("+-")
        if low.startswith(("0x", "0b", "0o")):
            return int(clean, 0)
        if any(c in low for c in ".e"):
            return float(clean)
        if len(low) > 1 and low.startswith("0"):
            return int(clean, 8)
        return int(clean)
    except ValueError:
        _fail(pos, f"bad number syntax: {text!r}")


def _lex_action(src: str, i: int, spaced: bool) -> tuple[list[_Token], int, bool]:
    """Tokens of the action starting at ``i`` (after ``{{``); returns (tokens, end, trim_right)."""
    tokens: list[_Token] = []
    start = i
    while True:
        if i >= len(src):
            _fail(start, "unclosed action: missing }}")
        if spaced and src.startswith("-}}", i):
            return tokens, i + 3, True
        m = _TOKEN_RE.match(src, i)
        if m is None:
            ch = src[i]
            if ch == '"':
                _fail(i, "unterminated quoted string")
            if ch == "`":
                _fail(i, "unterminated raw quoted string")
            _fail(i, f"unexpected {ch!r} in action")
        kind = m.lastgroup or ""
        text = m.group()
        if kind == "ws":
            spaced = True
            i = m.end()
            continue
        if kind == "close":
            return tokens, m.end(), False
        value: Any = text
        if kind == "string":
            kind, value = "literal", _unquote(text[1:-1], i)
        elif kind == "raw":
            kind, value = "literal", text[1:-1]
        elif kind == "number":
            kind, value = "literal", _number(text, i)
        elif kind == "field":
            value = tuple(text[1:].split("."))
        elif kind == "assign":
            _fail(i, "variables are not supported in weave templates")
        tokens.append(_Token(kind, value, i, spaced))
        spaced = False
        i = m.end()


def _lex(src: str) -> list[str | _ActionItem]:
    """Split ``src`` into text strings and actions, applying trim markers and dropping comments."""
    items: list[str | _ActionItem] = []
    i = 0
    trim_next = False
    while i < len(src):
        j = src.find("{{", i)
        text = src[i:] if j < 0 else src[i:j]
        if trim_next:
            text = text.lstrip(_TRIM_WS)
        if j < 0:
            items.append(text)
            break
        k = j + 2
        trim_left = src.startswith("-", k) and src[k + 1:k + 2] in tuple(_TRIM_WS)
        if trim_left:
            text = text.rstrip(_TRIM_WS)
            k += 2
        if text:
            items.append(text)
        if src.startswith("/*", k):
            close = src.find("*/", k + 2)
            if close < 0:
                _fail(j, "unclosed comment")
            k = close + 2
            if src.startswith(" -}}", k):
                i, trim_next = k + 4, True
            elif src.startswith("}}", k):
                i, trim_next = k + 2, False
            else:
                _fail(close, "comment ends before closing delimiter")
            continue
        tokens, i, trim_next = _lex_action(src, k, trim_left)
        items.append(_ActionItem(tuple(tokens), j))
    return items


# ------------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, items: list[str | _ActionItem]) -> None:
        self.items = items
        self.i = 0

    def parse(self) -> tuple[_Node, ...]:
        nodes, term = self._nodes(0)
        if term is not None:
            _fail(term.pos, f"unexpected {{{{{term.tokens[0].value}}}}}")
        return nodes

    def _nodes(self, depth: int) -> tuple[tuple[_Node, ...], _ActionItem | None]:
        nodes: list[_Node] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if isinstance(item, str):
                nodes.append(_Text(item))
                continue
            toks = item.tokens
            head = toks[0] if toks else None
            if head is not None and head.kind == "ident" and head.value in _KEYWORDS:
                if head.value in ("else", "end"):
                    return tuple(nodes), item
                nodes.append(self._block(head.value, toks[1:], item.pos, depth + 1))
            elif head is not None and head.kind == "ident" and head.value in _UNSUPPORTED_KEYWORDS:
                _fail(head.pos, f"{{{{{head.value}}}}} is not supported in weave templates")
            else:
                nodes.append(_Action(self._pipeline(toks, item.pos)))
        return tuple(nodes), None

    def _block(self, kind: str, toks: Sequence[_Token], pos: int, depth: int) -> _Block:
        if depth > MAX_DEPTH:
            _fail(pos, f"blocks nested deeper than {MAX_DEPTH}")
        pipe = self._pipeline(toks, pos, what=kind)
        body, term = self._nodes(depth)
        if term is None:
            _fail(pos, f"unclosed {{{{{kind}}}}}: missing {{{{end}}}}")
        orelse: tuple[_Node, ...] = ()
        if term.tokens[0].value == "else":
            rest = term.tokens[1:]
            if rest:
                if not (rest[0].kind == "ident" and rest[0].value in ("if", "with")):
                    _fail(rest[0].pos, "unexpected tokens after else (only 'else if'/'else with')")
                orelse = (self._block(rest[0].value, rest[1:], term.pos, depth + 1),)
                return _Block(kind, pipe, body, orelse, pos)
            orelse, term = self._nodes(depth)
            if term is None or term.tokens[0].value != "end":
                _fail(pos, f"unclosed {{{{{kind}}}}}: missing {{{{end}}}} after {{{{else}}}}")
        if len(term.tokens) > 1:
            _fail(term.tokens[1].pos, "unexpected tokens after end")
        return _Block(kind, pipe, body, orelse, pos)

    def _pipeline(self, toks: Sequence[_Token], pos: int, what: str = "command") -> _Pipeline:
        pipe, i = self._pipe_at(toks, 0, pos, False, 0, what)
        if i != len(toks):
            _fail(toks[i].pos, "unexpected ) in action")
        return pipe

    def _pipe_at(self, toks: Sequence[_Token], i: int, pos: int, in_paren: bool, depth: int,
                 what: str) -> tuple[_Pipeline, int]:
        commands: list[_Command] = []
        operands: list[_Operand] = []
        while i < len(toks):
            t = toks[i]
            if t.kind == "rparen":
                if in_paren:
                    break
                _fail(t.pos, "unexpected ) in action")
            if t.kind == "pipe":
                if not operands:
                    _fail(t.pos, "missing command before |")
                commands.append(self._command(operands))
                operands = []
                i += 1
                continue
            if t.kind == "lparen":
                if depth + 1 > MAX_DEPTH:
                    _fail(t.pos, f"parentheses nested deeper than {MAX_DEPTH}")
                inner, i = self._pipe_at(toks, i + 1, t.pos, True, depth + 1, "command")
                if i >= len(toks):
                    _fail(t.pos, "unclosed left paren")
                i += 1
                names: tuple[str, ...] = ()
                if i < len(toks) and toks[i].kind == "field" and not toks[i].spaced:
                    names = toks[i].value
                    i += 1
                operands.append(_Paren(inner, names, t.pos))
                continue
            operands.append(self._operand(t))
            i += 1
        if operands:
            commands.append(self._command(operands))
        elif commands:
            _fail(toks[i - 1].pos, "missing command after |")
        if not commands:
            _fail(pos, f"missing value for {what}")
        return _Pipeline(tuple(commands), pos), i

    @staticmethod
    def _command(operands: list[_Operand]) -> _Command:
        first = operands[0]
        if isinstance(first, _Literal) and first.value is None:
            _fail(first.pos, "nil is not a command")
        return _Command(tuple(operands), first.pos)

    @staticmethod
    def _operand(t: _Token) -> _Operand:
        if t.kind == "literal":
            return _Literal(t.value, t.pos)
        if t.kind == "field":
            return _Field("", t.value, t.pos)
        if t.kind == "dot":
            return _Field("", (), t.pos)
        if t.kind == "var":
            name, *fields = t.value.split(".")
            if name != "$":
                _fail(t.pos, f"variables are not supported in weave templates ({name})")
            return _Field("$", tuple(fields), t.pos)
        if t.kind == "ident":
            consts = {"true": True, "false": False, "nil": None}
            if t.value in consts:
                return _Literal(consts[t.value], t.pos)
            if t.value in _FUNCS:
                return _Func(t.value, t.pos)
            if t.value in _KEYWORDS or t.value in _UNSUPPORTED_KEYWORDS:
                _fail(t.pos, f"unexpected keyword {t.value!r} in command")
            _fail(t.pos, f'function "{t.value}" not defined (available: '
                  + ", ".join(sorted(_FUNCS)) + ")")
        _fail(t.pos, f"unexpected {t.value!r} in command")  # pragma: no cover - lexer kinds


def _bad_verb(verb: str, v: Any) -> str:
    return f"%!{verb}(<nil>)" if v is None else f"%!{verb}({go_type(v)}={format_value(v)})"


def _pad(s: str, flags: str, width: int | None, numeric: bool) -> str:
    if width is None or len(s) >= width:
        return s
    if "-" in flags:
        return s + " " * (width - len(s))
    if "0" in flags and numeric:
        sign = s[0] if s[:1] in ("+", "-", " ") else ""
        return sign + s[len(sign):].rjust(width - len(sign), "0")
    return s.rjust(width)


def _format_verb(verb: str, v: Any, flags: str, width: int | None, prec: int | None) -> str:
    """One ``%`` directive applied to ``v``; lists and maps apply it element-wise, as Go does."""
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_format_verb(verb, x, flags, width, prec) for x in v) + "]"
    if isinstance(v, dict):
        pairs = (f"{_format_verb(verb, k, flags, width, prec)}:"
                 f"{_format_verb(verb, v[k], flags, width, prec)}" for k in sorted_keys(v))
        return "map[" + " ".join(pairs) + "]"
    if isinstance(v, str) and verb in "svq":
        s = v if prec is None else v[:prec]
        if verb == "q":
            s = go_quote(s, ascii_only="+" in flags)
        return _pad(s, flags, width, numeric=False)
    if isinstance(v, int) and not isinstance(v, bool) and verb in "dvq":
        if verb == "q":
            ok = 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF
            return _pad(go_quote(chr(v) if ok else "\ufffd", "+" in flags, "'"), flags, width,
                        numeric=False)
        digits = str(abs(v)) if prec is None else str(abs(v)).rjust(prec, "0")
        sign = "-" if v < 0 else "+" if "+" in flags else " " if " " in flags else ""
        zero_ok = prec is None
        return _pad(sign + digits, flags if zero_ok else flags.replace("0", ""), width, True)
    if verb == "v" and (v is None or isinstance(v, (bool, float))):
        return _pad(format_value(v), flags, width, numeric=isinstance(v, float))
    return _bad_verb(verb, v)


_DIRECTIVE_RE = re.compile(r"%([-+ 0#]*)(\d+)?(?:\.(\d*))?(.?)", re.S)


def _sprintf(fmt: str, args: Sequence[Any], pos: int) -> str:
    out: list[str] = []
    i = 0
    argi = 0
    while True:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        m = _DIRECTIVE_RE.match(fmt, j)
        assert m is not None  # the pattern matches any "%..."
        flags, width_s, prec_s, verb = m.groups()
        i = m.end()
        if verb == "":
            out.append("%!(NOVERB)")
            break
        if verb == "%":
            out.append("%")
            continue
        if verb not in "sdvq" or "#" in flags:
            _fail(pos, f"printf: %{flags}{verb} is not supported (use %s, %d, %v, %q or %%, "
                  "with flags - + 0 space, width and precision)")
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        if len(width_s or "") > 4 or len(prec_s or "") > 4:
            _fail(pos, f"printf: width and precision are limited to {MAX_PRINTF_WIDTH}")
        width = int(width_s) if width_s else None
        prec = int(prec_s or "0") if prec_s is not None else None
        if (width or 0) > MAX_PRINTF_WIDTH or (prec or 0) > MAX_PRINTF_WIDTH:
            _fail(pos, f"printf: width and precision are limited to {MAX_PRINTF_WIDTH}")
        out.append(_format_verb(verb, args[argi], flags, width, prec))
        argi += 1
    if argi < len(args):
        extra = ", ".join("<nil>" if a is None else f"{go_type(a)}={format_value(a)}"
                          for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _json_ready(v: Any, pos: int) -> Any:
    """The value as Go's ``json.Marshal`` would see it: integral floats print as integers."""
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            _fail(pos, f"json: unsupported value: {go_float(v)}")
        return int(v) if v.is_integer() and abs(v) < 1e21 else v
    if isinstance(v, (list, tuple)):
        return [_json_ready(x, pos) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_ready(x, pos) for k, x in v.items()}
    return v


def _go_json(v: Any, pos: int) -> str:
    """Compact JSON like Go's ``json.Marshal``: dict order kept (the report's struct order)."""
    text = _json.dumps(_json_ready(v, pos), separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _truth(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def _kind(v: Any, pos: int, fn: str) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    _fail(pos, f"{fn}: cannot compare a {go_type(v)}")


def _eq(a: Any, b: Any, pos: int, fn: str) -> bool:
    ka, kb = _kind(a, pos, fn), _kind(b, pos, fn)
    if "nil" in (ka, kb):
        return ka == kb
    if ka != kb:
        _fail(pos, f"{fn}: incompatible types for comparison ({go_type(a)} and {go_type(b)})")
    return bool(a == b)


# ----------------------------------------------------------------------------------- executor


class _Exec:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.out: list[str] = []
        self.size = 0
        self.steps = 0

    def _tick(self, pos: int) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            _fail(pos, f"template does too much work (over {MAX_STEPS} steps)")

    def _write(self, s: str, pos: int) -> None:
        self.size += len(s)
        if self.size > MAX_OUTPUT_CHARS:
            _fail(pos, f"template output exceeds {MAX_OUTPUT_CHARS} characters")
        self.out.append(s)

    def walk(self, nodes: Sequence[_Node], dot: Any, pos: int = 0) -> None:
        for node in nodes:
            self._tick(pos)
            if isinstance(node, _Text):
                self._write(node.text, pos)
            elif isinstance(node, _Action):
                v = self.pipeline(node.pipe, dot)
                self._write("<no value>" if v is None else format_value(v), node.pipe.pos)
            else:
                self._block(node, dot)

    def _block(self, node: _Block, dot: Any) -> None:
        cmds = node.pipe.commands
        op = cmds[0].operands[0]
        if len(cmds) == 1 and len(cmds[0].operands) == 1 and isinstance(op, _Field):
            # a bare field as the condition tests presence: an absent last key is false
            self._tick(op.pos)
            base = self.root if op.root == "$" else dot
            v = self._fields(base, op.root, op.names, op.pos, absent_ok=True)
        else:
            v = self.pipeline(node.pipe, dot)
        if node.kind == "if":
            self.walk(node.body if _truth(v) else node.orelse, dot, node.pos)
        elif node.kind == "with":
            if _truth(v):
                self.walk(node.body, v, node.pos)
            else:
                self.walk(node.orelse, dot, node.pos)
        else:
            if isinstance(v, dict):
                elems: list[Any] = [v[k] for k in sorted_keys(v)]
            elif isinstance(v, (list, tuple)):
                elems = list(v)
            elif v is None:
                elems = []
            else:
                _fail(node.pos, f"range can't iterate over {format_value(v)} ({go_type(v)})")
            for elem in elems:
                self.walk(node.body, elem, node.pos)
            if not elems:
                self.walk(node.orelse, dot, node.pos)

    def pipeline(self, pipe: _Pipeline, dot: Any) -> Any:
        value: Any = None
        for n, cmd in enumerate(pipe.commands):
            value = self._command(cmd, dot, (value,) if n else ())
        return value

    def _command(self, cmd: _Command, dot: Any, final: tuple[Any, ...]) -> Any:
        first, rest = cmd.operands[0], cmd.operands[1:]
        if isinstance(first, _Func):
            return self._call(first, rest, dot, final)
        if rest or final:
            _fail(cmd.pos, "can't give argument to non-function " + _describe(first))
        return self.arg(first, dot)

    def arg(self, op: _Operand, dot: Any) -> Any:
        self._tick(op.pos)
        if isinstance(op, _Literal):
            return op.value
        if isinstance(op, _Field):
            base = self.root if op.root == "$" else dot
            return self._fields(base, op.root, op.names, op.pos)
        if isinstance(op, _Paren):
            return self._fields(self.pipeline(op.pipe, dot), "(...)", op.names, op.pos)
        return self._call(op, (), dot, ())

    @staticmethod
    def _fields(cur: Any, path: str, names: Sequence[str], pos: int,
                absent_ok: bool = False) -> Any:
        for n, name in enumerate(names):
            shown = path or "."
            if isinstance(cur, dict):
                if name not in cur and absent_ok and n == len(names) - 1:
                    return None
                if name not in cur:
                    keys = ", ".join(str(k) for k in list(cur)[:12])
                    more = ", ..." if len(cur) > 12 else ""
                    hint = f" (fields here: {keys}{more})" if keys else " (it is empty)"
                    _fail(pos, f'no field "{name}" in {shown}{hint}')
                cur = cur[name]
            elif cur is None:
                _fail(pos, f'cannot read field "{name}": {shown} is null or absent')
            else:
                _fail(pos, f'cannot read field "{name}" of {shown}: it is a {go_type(cur)}')
            path = f"{path}.{name}"
        return cur

    def _call(self, fn: _Func, ops: Sequence[_Operand], dot: Any, final: tuple[Any, ...]) -> Any:
        name, pos = fn.name, fn.pos
        if name in ("and", "or"):
            if not ops and not final:
                _fail(pos, f"{name}: wrong number of args: want at least 1, got 0")
            v: Any = None
            for i in range(len(ops) + len(final)):  # lazily: Go stops at the deciding argument
                v = self.arg(ops[i], dot) if i < len(ops) else final[i - len(ops)]
                if _truth(v) != (name == "and"):
                    return v
            return v
        args = [self.arg(o, dot) for o in ops] + list(final)
        return _apply(name, args, pos)


def _describe(op: _Operand) -> str:
    if isinstance(op, _Field):
        return (op.root or "") + ("." + ".".join(op.names) if op.names else op.root or ".")
    if isinstance(op, _Literal):
        return format_value(op.value)
    return "(...)"


def _arity(name: str, args: Sequence[Any], pos: int, lo: int, hi: int | None = None) -> None:
    if len(args) < lo or (hi is not None and len(args) > hi):
        want = f"{lo}" if hi == lo else f"at least {lo}" if hi is None else f"{lo}..{hi}"
        _fail(pos, f"{name}: wrong number of args: want {want}, got {len(args)}")


def _apply(name: str, args: list[Any], pos: int) -> Any:
    if name == "json":
        _arity(name, args, pos, 1, 1)
        return _go_json(args[0], pos)
    if name == "len":
        _arity(name, args, pos, 1, 1)
        v = args[0]
        if isinstance(v, str):
            return len(v.encode("utf-8", "surrogatepass"))
        if isinstance(v, (list, tuple, dict)):
            return len(v)
        _fail(pos, f"len of {format_value(v) if v is not None else 'nil'} ({go_type(v)})")
    if name == "printf":
        _arity(name, args, pos, 1)
        if not isinstance(args[0], str):
            _fail(pos, f"printf: format must be a string, not {go_type(args[0])}")
        return _sprintf(args[0], args[1:], pos)
    if name == "not":
        _arity(name, args, pos, 1, 1)
        return not _truth(args[0])
    if name == "eq":
        _arity(name, args, pos, 2)
        return any(_eq(args[0], b, pos, name) for b in args[1:])
    if name == "ne":
        _arity(name, args, pos, 2, 2)
        return not _eq(args[0], args[1], pos, name)
    # index
    _arity(name, args, pos, 1)
    cur = args[0]
    for key in args[1:]:
        if isinstance(cur, dict):
            cur = cur.get(key)
        elif isinstance(cur, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                _fail(pos, f"index: cannot index a {go_type(cur)} with a {go_type(key)}")
            if not 0 <= key < len(cur):
                _fail(pos, f"index: index out of range: {key}")
            cur = cur[key] if not isinstance(cur, str) else cur.encode()[key]
        else:
            _fail(pos, f"index: cannot index {'nil' if cur is None else go_type(cur)}")
    return cur


# ------------------------------------------------------------------------------------- public


def _position(src: str, pos: int) -> str:
    line = src.count("\n", 0, pos) + 1
    col = pos - (src.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, col {col}"


def render_template(template: str, data: Any) -> str:
    """Evaluate ``template`` (the Go text/template subset above) against ``data``.

    Raises ``UsageError`` for a template that does not parse, names an unknown function, reads a
    field that the data does not have, exceeds the size/nesting/work bounds, or misuses a
    function; the message says ``template: line L, col C: ...`` and names the field or construct.
    """
    if len(template.encode("utf-8", "surrogatepass")) > MAX_TEMPLATE_BYTES:
        raise UsageError(f"template is larger than {MAX_TEMPLATE_BYTES // 1024} KiB",
                         "shorten the template")
    try:
        nodes = _Parser(_lex(template)).parse()
    except _Fail as e:
        raise UsageError(f"bad template: {_position(template, e.pos)}: {e.message}") from None
    ex = _Exec(data)
    try:
        ex.walk(nodes, data)
    except _Fail as e:
        raise UsageError(f"template: {_position(template, e.pos)}: {e.message}") from None
    except RecursionError:
        raise UsageError("template: data nested too deeply to print") from None
    return "".join(ex.out)
