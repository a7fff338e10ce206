"""Lab underlay faults as data (weave_cli/lab/rules.py) and the ``weave lab partition`` options.

Pure: the rendered ``nft -f`` scripts, the fault specs in rule comments and how the CLI's
options become a Fault; the rules are applied to real traffic in
tests/lab/test_datapath_faults_lab.py.
"""

from __future__ import annotations

import json
import os

import pytest

from weave_cli.errors import LabError
from weave_cli.lab import rules
from weave_cli.lab.rules import Fault, RuleRef
from weave_cli.lab.topology import Host

H1, H2, H3 = Host("x", 1), Host("x", 2), Host("x", 3)


def _adds(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("add rule")]


@pytest.mark.parametrize(("fault", "spec"), [
    (Fault(), "all"),
    (Fault("tcp"), "tcp"),
    (Fault("udp"), "udp"),
    (Fault("udp", 6784), "udp/6784"),
    (Fault("udp", None, 700), "udp>700"),
    (Fault("tcp", 6783, 1000), "tcp/6783>1000"),
    (Fault("all", None, 1400), "all>1400"),
])
def test_spec_round_trips(fault: Fault, spec: str) -> None:
    assert fault.spec == spec
    assert rules.parse_spec(spec) == fault
    assert rules.comment(H2, H1, fault) == f"wl:h1-h2:{spec}"
    assert rules.parse_comment(f"wl:h1-h2:{spec}") == (("h1", "h2"), spec)


@pytest.mark.parametrize("spec", [
    "", "icmp", "ALL", "udp/", "udp/0", "udp/65536", "udp/06784", "all/80", "udp>", "udp>67",
    "udp>65536", "udp>0700", "udp>700/6784", "udp/6784>700x", "udp 6784", "tcp/-1",
])
def test_bad_specs_are_not_ours(spec: str) -> None:
    assert rules.parse_spec(spec) is None
    assert rules.parse_comment(f"wl:h1-h2:{spec}") is None


def test_comments_that_are_not_ours() -> None:
    assert rules.parse_comment("other") is None
    assert rules.parse_comment("wl:h1h2:all") is None
    assert rules.parse_comment("wl:h1-h2:all:x") is None
    assert rules.parse_comment("xwl:h1-h2:all") is None


def test_whole_and_protocol_partitions_render_as_before() -> None:
    adds = _adds(rules.partition_script(H2, H1, "all", []))
    assert adds == [
        'add rule bridge weavelab forward ip saddr 198.18.0.1 ip daddr 198.18.0.2 counter drop '
        'comment "wl:h1-h2:all"',
        'add rule bridge weavelab forward ip saddr 198.18.0.2 ip daddr 198.18.0.1 counter drop '
        'comment "wl:h1-h2:all"',
    ]
    udp = _adds(rules.partition_script(H1, H3, Fault("udp"), []))
    assert [line.split(" ip daddr ")[1] for line in udp] == [
        '198.18.0.3 meta l4proto udp counter drop comment "wl:h1-h3:udp"',
        '198.18.0.1 meta l4proto udp counter drop comment "wl:h1-h3:udp"',
    ]


def test_a_port_drops_it_as_source_and_destination_both_ways() -> None:
    adds = _adds(rules.partition_script(H1, H2, Fault("udp", 6784), []))
    assert adds == [
        f'add rule bridge weavelab forward ip saddr {src} ip daddr {dst} udp {side} 6784 '
        'counter drop comment "wl:h1-h2:udp/6784"'
        for src, dst in (("198.18.0.1", "198.18.0.2"), ("198.18.0.2", "198.18.0.1"))
        for side in ("dport", "sport")
    ]


def test_a_size_limit_is_on_the_ip_total_length() -> None:
    adds = _adds(rules.partition_script(H1, H2, Fault("udp", None, 700), []))
    assert len(adds) == 2
    assert all(" meta l4proto udp ip length > 700 counter drop " in line for line in adds)
    both = _adds(rules.partition_script(H1, H2, Fault("udp", 6783, 700), []))
    assert [line.split(" ip daddr ")[1].split(" counter")[0] for line in both] == [
        "198.18.0.2 udp dport 6783 ip length > 700", "198.18.0.2 udp sport 6783 ip length > 700",
        "198.18.0.1 udp dport 6783 ip length > 700", "198.18.0.1 udp sport 6783 ip length > 700",
    ]
    every = _adds(rules.partition_script(H1, H2, Fault("all", None, 1400), []))
    assert all("198.18.0.2 ip length > 1400 counter drop" in line or
               "198.18.0.1 ip length > 1400 counter drop" in line for line in every)


def test_one_transaction_declares_the_table_and_replaces_only_this_pair() -> None:
    existing = [RuleRef(4, ("h1", "h2"), "all"), RuleRef(5, ("h1", "h2"), "all"),
                RuleRef(6, ("h1", "h3"), "udp>700")]
    script = rules.partition_script(H2, H1, "udp/6784", existing)
    assert script.startswith("table bridge weavelab {\n  chain forward {\n    type filter hook "
                             "forward priority 0; policy accept;\n")
    deletes = [line for line in script.splitlines() if line.startswith("delete rule")]
    assert deletes == ["delete rule bridge weavelab forward handle 4",
                       "delete rule bridge weavelab forward handle 5"]
    assert script.index("handle 5") < script.index("add rule")  # old rules go first
    assert rules.heal_script(H1, H3, existing) == "delete rule bridge weavelab forward handle 6\n"
    assert rules.heal_script(H2, H3, existing) == ""
    assert rules.heal_all_script() == "table bridge weavelab\ndelete table bridge weavelab\n"


def test_listing_keeps_our_rules_with_their_faults() -> None:
    listing = json.dumps({"nftables": [
        {"metainfo": {"json_schema_version": 1}}, {"chain": {"name": "forward"}},
        {"rule": {"handle": 4, "comment": "wl:h1-h2:udp/6784", "expr": []}},
        {"rule": {"handle": 5, "comment": "wl:h1-h2:udp/6784", "expr": []}},
        {"rule": {"handle": 6, "comment": "wl:h1-h3:udp>700", "expr": []}},
        {"rule": {"handle": 7, "comment": "someone else's", "expr": []}},
        {"rule": {"handle": 8, "expr": []}},
    ]})
    refs = rules.parse_listing(listing)
    assert [(r.handle, r.pair, r.mode) for r in refs] == [
        (4, ("h1", "h2"), "udp/6784"), (5, ("h1", "h2"), "udp/6784"), (6, ("h1", "h3"), "udp>700")]
    assert refs[2].fault == Fault("udp", None, 700)
    assert rules.parse_listing("  \n") == []


def test_fault_checks_say_what_to_do() -> None:
    assert rules.fault("udp", 6784, 700) == Fault("udp", 6784, 700)
    for args, words in [
        (("icmp",), "unknown partition mode"),
        (("all", 6784), "--port needs --mode tcp or --mode udp"),
        (("udp", 0), "--port must be between 1 and 65535"),
        (("udp", 70000), "--port must be between 1 and 65535"),
        (("udp", None, 67), "--max-size must be between 68 and 65535"),
        (("udp", None, 65536), "--max-size must be between 68 and 65535"),
    ]:
        with pytest.raises(LabError) as err:
            rules.fault(*args)  # type: ignore[arg-type]
        assert words in err.value.message and err.value.hint
    with pytest.raises(LabError, match="invalid partition spec"):
        rules.partition_script(H1, H2, "udp/x", [])


def test_cli_options_become_one_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from weave_cli.commands.lab import app
    from weave_cli.lab import ops

    calls: list[tuple[str, str, str, Fault]] = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(ops, "partition", lambda *args: calls.append(args))
    runner = CliRunner()
    for argv, expected in [
        ([], Fault()),
        (["--tcp-only"], Fault("tcp")),
        (["--udp-only"], Fault("udp")),
        (["--mode", "tcp"], Fault("tcp")),
        (["--mode", "udp", "--port", "6784"], Fault("udp", 6784)),
        (["--udp-only", "--port", "6784"], Fault("udp", 6784)),
        (["--mode", "udp", "--max-size", "700"], Fault("udp", None, 700)),
        (["--mode", "udp", "--udp-only", "--port", "6783", "--max-size", "700"],
         Fault("udp", 6783, 700)),
        (["--max-size", "1400"], Fault("all", None, 1400)),
    ]:
        calls.clear()
        result = runner.invoke(app, ["partition", "--name", "t", "h1", "h2", *argv])
        assert result.exit_code == 0, (argv, result.output, result.exception)
        assert calls == [("t", "h1", "h2", expected)], argv
    calls.clear()
    for argv, words in [
        (["--tcp-only", "--udp-only"], "exclude each other"),
        (["--mode", "tcp", "--udp-only"], "contradict"),
        (["--port", "6784"], "--port needs --mode tcp or --mode udp"),
        (["--mode", "icmp"], "unknown partition mode"),
        (["--mode", "udp", "--max-size", "10"], "--max-size must be between"),
    ]:
        result = runner.invoke(app, ["partition", "h1", "h2", *argv])
        assert isinstance(result.exception, LabError), (argv, result.output)
        assert words in result.exception.message, argv
    assert calls == []
