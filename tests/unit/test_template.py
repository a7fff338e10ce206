"""The Go text/template subset behind `weave report -f`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.errors import UsageError
from weave_cli.template import (
    MAX_DEPTH,
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_BYTES,
    format_value,
    render_template,
)

DATA: dict[str, Any] = {
    "Version": "0.1.0",
    "Ready": True,
    "DNS": {"Domain": "weave.local.", "Upstream": ["8.8.8.8", "8.8.4.4"],
            "Address": "172.17.0.1:53", "TTL": 1, "Entries": None},
    "Router": {
        "Name": "aa:bb:cc:dd:ee:ff", "NickName": "h1", "Port": 6783, "Encryption": False,
        "Peers": [
            {"Name": "aa:bb:cc:dd:ee:ff", "NickName": "h1", "Connections": []},
            {"Name": "aa:bb:cc:dd:ee:01", "NickName": "h2", "Connections": [{"Outbound": True}]},
        ],
        "Targets": ["198.18.0.2", "198.18.0.3"],
        "TrustedSubnets": [],
        "Attrs": {"mtu": 1376, "encrypted": True},
        "Ratio": 0.5,
    },
}


def r(template: str, data: Any = DATA) -> str:
    return render_template(template, data)


def error(template: str, data: Any = DATA) -> str:
    with pytest.raises(UsageError) as info:
        render_template(template, data)
    return str(info.value)


# ---------------------------------------------------------------------------- fields, printing


def test_reference_example() -> None:
    assert r("{{.DNS.Domain}}") == "weave.local."


def test_literal_text_and_backslash_n_not_interpreted() -> None:
    assert r(r"name: {{.Router.NickName}}\n") == r"name: h1\n"


@pytest.mark.parametrize(
    ("template", "out"),
    [
        ("{{.Version}}", "0.1.0"),
        ("{{.Ready}} {{.Router.Encryption}}", "true false"),
        ("{{.Router.Port}}", "6783"),
        ("{{.Router.Ratio}}", "0.5"),
        ("{{.Router.Targets}}", "[198.18.0.2 198.18.0.3]"),
        ("{{.Router.TrustedSubnets}}", "[]"),
        ("{{.Router.Attrs}}", "map[encrypted:true mtu:1376]"),
        ("{{.DNS.Entries}}", "<no value>"),
        ("{{.Router.Peers}}", "[map[Connections:[] Name:aa:bb:cc:dd:ee:ff NickName:h1] "
                              "map[Connections:[map[Outbound:true]] Name:aa:bb:cc:dd:ee:01 "
                              "NickName:h2]]"),
        ("{{$.Version}}", "0.1.0"),
        ('{{"lit"}} {{`raw\\n`}} {{42}} {{-7}} {{true}}', "lit raw\\n 42 -7 true"),
        ("{{(.Router).NickName}}", "h1"),
    ],
)
def test_fields_print_like_go(template: str, out: str) -> None:
    assert r(template) == out


def test_dot_is_the_whole_value() -> None:
    assert r("{{.}}", "x") == "x"
    assert r("{{.}}", None) == "<no value>"
    assert r("{{.}}", [1, None, "a"]) == "[1 <nil> a]"


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e21, "1e+21"), (1e20, "100000000000000000000"), (0.0001, "0.0001"), (1e-05, "1e-05"),
     (2.0, "2"), (-1.5, "-1.5"), (float("inf"), "+Inf"), (float("nan"), "NaN")],
)
def test_floats_print_like_go(value: float, text: str) -> None:
    assert format_value(value) == text


# ------------------------------------------------------------------------------------- json


def test_json_compact_like_go() -> None:
    assert r("{{json .DNS}}") == ('{"Domain":"weave.local.","Upstream":["8.8.8.8","8.8.4.4"],'
                                  '"Address":"172.17.0.1:53","TTL":1,"Entries":null}')
    assert r('{{json "<a&b>"}}') == '"\\u003ca\\u0026b\\u003e"'
    assert r("{{json .}}", {"f": 1.0, "u": "é"}) == '{"f":1,"u":"é"}'
    assert r("{{.DNS | json}}") == r("{{json .DNS}}")


def test_json_nan_is_an_error() -> None:
    assert "unsupported value: NaN" in error("{{json .}}", float("nan"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=15,
)


@given(json_values)
def test_json_round_trips(value: Any) -> None:
    assert json.loads(r("{{json .}}", value)) == value


# -------------------------------------------------------------------------------- range, if


def test_range_rebinds_dot() -> None:
    assert r("{{range .Router.Peers}}{{.NickName}},{{end}}") == "h1,h2,"
    assert r("{{range .Router.Targets}}[{{.}}]{{end}}") == "[198.18.0.2][198.18.0.3]"


def test_range_nested_and_root() -> None:
    t = "{{range .Router.Peers}}{{.NickName}}:{{len .Connections}}@{{$.Version}} {{end}}"
    assert r(t) == "h1:0@0.1.0 h2:1@0.1.0 "


def test_range_map_sorted_values_and_else() -> None:
    assert r("{{range .Router.Attrs}}{{.}};{{end}}") == "true;1376;"
    assert r("{{range .DNS.Entries}}x{{else}}none{{end}}") == "none"
    assert r("{{range .Router.TrustedSubnets}}x{{else}}none{{end}}") == "none"


def test_range_over_scalar_is_an_error() -> None:
    assert "range can't iterate over 6783" in error("{{range .Router.Port}}{{end}}")


@pytest.mark.parametrize(
    ("cond", "truth"),
    [(".Ready", True), (".Router.Encryption", False), (".Router.Targets", True),
     (".Router.TrustedSubnets", False), (".DNS.Entries", False), (".Version", True),
     ('""', False), ("0", False), ("1", True), (".Router.Attrs", True), (".IPAM", False)],
)
def test_if_go_truthiness(cond: str, truth: bool) -> None:
    assert r(f"{{{{if {cond}}}}}yes{{{{else}}}}no{{{{end}}}}") == ("yes" if truth else "no")


def test_if_absent_section_is_false_but_reading_through_it_fails() -> None:
    assert r("{{if .IPAM}}{{.IPAM.Range}}{{else}}no ipam{{end}}") == "no ipam"
    assert 'no field "IPAM"' in error("{{.IPAM.Range}}")
    assert 'no field "Bogus"' in error("{{if .Router.Bogus.X}}{{end}}")


def test_else_if_and_with() -> None:
    t = "{{if .X}}x{{else if .Ready}}ready{{else}}no{{end}}"
    assert r(t, {"X": 0, "Ready": True}) == "ready"
    assert r(t, {"X": 0, "Ready": False}) == "no"
    assert r("{{with .DNS}}{{.Domain}}{{else}}-{{end}}") == "weave.local."
    assert r("{{with .DNS.Entries}}{{.}}{{else}}-{{end}}") == "-"


# ----------------------------------------------------------------------------- functions


def test_len() -> None:
    assert r("{{len .Router.Peers}} {{len .Router.Attrs}} {{len .Version}} {{len \"é\"}}") == (
        "2 2 5 2")
    assert "len of 6783" in error("{{len .Router.Port}}")


@pytest.mark.parametrize(
    ("template", "out"),
    [
        ('{{printf "%s %d" .Router.NickName .Router.Port}}', "h1 6783"),
        ('{{printf "%v|%v|%v" .Ready .Router.Targets .DNS.Entries}}',
         "true|[198.18.0.2 198.18.0.3]|<nil>"),
        ('{{printf "%q" .Router.NickName}}', '"h1"'),
        ('{{printf "%q" "a\\"b\\n"}}', '"a\\"b\\n"'),
        ('{{printf "%-6s|%6s|%.2s|%05d|%+d|%-4d|" "ab" "ab" "abc" 42 3 7}}',
         "ab    |    ab|ab|00042|+3|7   |"),
        ('{{printf "%-21v %-11v" "1.2.3.4:6783" "pending"}}', "1.2.3.4:6783          pending    "),
        ('{{printf "100%%"}}', "100%"),
        ('{{printf "%d" .Version}}', "%!d(string=0.1.0)"),
        ('{{printf "%s" .Router.Port}}', "%!s(int=6783)"),
        ('{{printf "%s %s" "a"}}', "a %!s(MISSING)"),
        ('{{printf "%s" "a" 1}}', "a%!(EXTRA int=1)"),
        ('{{printf "%d" .Router.Targets}}', "[%!d(string=198.18.0.2) %!d(string=198.18.0.3)]"),
        ('{{.Router.NickName | printf "<%s>"}}', "<h1>"),
    ],
)
def test_printf(template: str, out: str) -> None:
    assert r(template) == out


def test_printf_unsupported_verb() -> None:
    assert "%x is not supported" in error('{{printf "%x" 1}}')


def test_eq_ne_not_and_or_index() -> None:
    assert r('{{if eq .Router.NickName "h1"}}me{{end}}') == "me"
    assert r('{{if eq .Router.NickName "h9" "h1"}}any{{end}}') == "any"
    assert r("{{ne .Router.Port 6783}} {{not .Ready}}") == "false false"
    assert r("{{and .Ready .Version}} {{or .Router.Encryption .Version}}") == "0.1.0 0.1.0"
    assert r("{{and .Router.Encryption .Missing}}") == "false"  # short-circuits like Go
    assert r('{{index .Router.Targets 1}} {{index .Router.Attrs "mtu"}}') == "198.18.0.3 1376"
    assert r("{{(index .Router.Peers 1).NickName}}") == "h2"
    assert "incompatible types" in error('{{eq .Router.Port "6783"}}')
    assert "index out of range: 5" in error("{{index .Router.Targets 5}}")


# --------------------------------------------------------------------------- trim, comments


def test_trim_markers() -> None:
    assert r("a \n\t {{- .Version -}} \n b") == "a0.1.0b"
    assert r("{{range .Router.Targets -}}\n  {{.}}\n{{- end}}") == "198.18.0.2198.18.0.3"
    assert r("x {{-3}} y") == "x -3 y"  # no space after '-': a number, not a trim marker


def test_comments() -> None:
    assert r("a{{/* ignored }} */}}b") == "ab"
    assert r("a {{- /* c */ -}} b") == "ab"


def test_string_literal_with_braces() -> None:
    assert r('{{printf "}}%s{{" "x"}}') == "}}x{{"


# -------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("{{.Version", "unclosed action"),
        ("{{if .Ready}}x", "missing {{end}}"),
        ("{{range .Router.Peers}}x{{else}}", "missing {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{upper .Version}}", 'function "upper" not defined'),
        ("{{}}", "missing value for command"),
        ("{{if}}{{end}}", "missing value for if"),
        ("{{.Version .Ready}}", "can't give argument to non-function .Version"),
        ("{{.Version | .Ready}}", "can't give argument to non-function .Ready"),
        ("{{$x := .Version}}", "variables are not supported"),
        ("{{$x}}", "variables are not supported"),
        ('{{"abc}}', "unterminated quoted string"),
        ("{{template \"x\"}}", "not supported"),
        ("{{(.Version}}", "unclosed left paren"),
        ("{{.Version)}}", "unexpected )"),
        ("{{nil}}", "nil is not a command"),
        ("{{/* open", "unclosed comment"),
        ("{{json}}", "json: wrong number of args"),
        ("{{printf 1}}", "format must be a string"),
        ('{{"\\q"}}', "unknown escape"),
        ("{{end 1}}", "unexpected {{end}}"),
        ("{{if 1}}{{end 1}}", "unexpected tokens after end"),
        ("{{if 1}}{{else range .X}}{{end}}", "unexpected tokens after else"),
        ("{{.A # }}", "unexpected '#'"),
    ],
)
def test_bad_templates(template: str, needle: str) -> None:
    assert needle in error(template)


def test_missing_field_names_field_and_position() -> None:
    msg = error("line one\n  {{.Router.Bogus}}")
    assert 'no field "Bogus" in .Router' in msg
    assert "line 2, col 5" in msg  # the field token
    assert "NickName" in msg  # lists the fields that do exist


def test_field_of_null_and_of_scalar() -> None:
    assert 'cannot read field "X": .DNS.Entries is null' in error("{{.DNS.Entries.X}}")
    assert 'cannot read field "X" of .Version: it is a string' in error("{{.Version.X}}")


def test_usage_error_exit_code() -> None:
    with pytest.raises(UsageError) as info:
        render_template("{{.Nope}}", {})
    assert info.value.exit_code == 2


# -------------------------------------------------------------------------------- bounds


def test_template_size_bound() -> None:
    ok = "x" * MAX_TEMPLATE_BYTES
    assert r(ok) == ok
    assert "larger than 64 KiB" in error(ok + "x")


def test_nesting_bound() -> None:
    def nested(n: int) -> str:
        return "{{if 1}}" * n + "x" + "{{end}}" * n

    assert r(nested(MAX_DEPTH)) == "x"
    assert f"nested deeper than {MAX_DEPTH}" in error(nested(MAX_DEPTH + 1))
    assert f"nested deeper than {MAX_DEPTH}" in error("{{" + "(" * 40 + "1" + ")" * 40 + "}}")


def test_work_bound_stops_explosive_templates() -> None:
    data = {"L": list(range(200))}
    t = "{{range .L}}{{range $.L}}{{range $.L}}{{.}}{{end}}{{end}}{{end}}"
    assert "too much work" in error(t, data)
    big = {"S": "y" * (MAX_OUTPUT_CHARS // 8), "L": list(range(10))}
    assert "output exceeds" in error("{{range .L}}{{$.S}}{{end}}", big)


# ------------------------------------------------------------------------------ properties


@given(st.text().filter(lambda s: "{{" not in s and len(s.encode("utf-8", "surrogatepass"))
                        <= MAX_TEMPLATE_BYTES))
def test_text_without_actions_renders_unchanged(text: str) -> None:
    assert render_template(text, DATA) == text


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=30))
def test_q_output_reads_back_as_a_string_literal(s: str) -> None:
    quoted = render_template('{{printf "%q" .}}', s)
    assert render_template("{{" + quoted + "}}", None) == s


@given(st.lists(st.integers(), max_size=6))
def test_printf_d_of_ints(values: list[int]) -> None:
    fmt = " ".join("%d" for _ in values)
    args = " ".join(str(v) for v in values)
    assert render_template(f'{{{{printf "{fmt}" {args}}}}}', None) == " ".join(map(str, values))


_PIECES = ["{{", "}}", "{{-", " -}}", ".A", ".B", "$", "$.A", "(", ")", "|", " ", "if", "else",
           "end", "range", "with", "json", "len", "printf", "index", "eq", "and", "not",
           '"%s"', '"%d %q"', "`r`", "1", "-1", "1.5", "nil", "/*", "*/", "x", "\n", "#", ":="]


@given(st.lists(st.sampled_from(_PIECES), max_size=25).map("".join))
def test_any_template_renders_or_raises_usage_error(template: str) -> None:
    data = {"A": {"B": [1, "x", None, {"C": True}]}, "B": 1.5}
    try:
        assert isinstance(render_template(template, data), str)
    except UsageError:
        pass


def test_printf_width_is_bounded_before_any_padding() -> None:
    """A huge width must be refused up front, not after building a giant string."""
    import pytest as _pytest

    from weave_cli.errors import UsageError as _UsageError

    for template in ('{{printf "%999999999d" 1}}', '{{printf "%.99999s" "x"}}'):
        with _pytest.raises(_UsageError, match="limited"):
            render_template(template, {})
