"""The nftables table and the iptables rules as data (weave_cli/net/nft.py, iptables.py): what
is rendered, how a listing is compared, and which iptables changes are planned."""

from __future__ import annotations

import json
from ipaddress import IPv4Interface

from weave_cli.net import iptables, nft

DOCKER = """-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER
-N DOCKER-USER
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
"""


def test_table_without_exposure_only_accepts() -> None:
    chains = nft.desired([])
    text = nft.script(chains)
    assert text.startswith("table inet weave {}\ndelete table inet weave\ntable inet weave {\n")
    assert 'iifname "weave" accept comment "weave:from-bridge"' in text
    assert 'oifname "weave" accept comment "weave:to-bridge"' in text
    assert "masquerade" not in text
    assert "type nat hook postrouting priority 100; policy accept;" in text


def test_exposed_subnets_are_masqueraded_once_each() -> None:
    exposed = [IPv4Interface("10.32.0.3/12"), IPv4Interface("10.40.1.1/24"),
               IPv4Interface("10.32.0.4/12")]
    text = nft.script(nft.desired(exposed))
    assert text.count("masquerade") == 4  # out + in, for each of the two subnets
    assert 'ip saddr 10.32.0.0/12 oifname != "weave" masquerade' in text
    assert ('ip daddr 10.40.1.0/24 ip saddr != 10.40.1.0/24 oifname "weave" '
            'iifname != "weave" masquerade') in text
    assert "ip saddr 10.40.1.0/24 ip daddr 224.0.0.0/4 return" in text


def test_delete_script_tolerates_a_missing_table() -> None:
    assert nft.delete_script() == "table inet weave {}\ndelete table inet weave\n"


def listing(chains: list[nft.Chain], drop_comment: str | None = None) -> object:
    """What ``nft -j list table inet weave`` prints for these chains."""
    entries: list[dict[str, object]] = [{"metainfo": {"version": "1.0.6"}},
                                        {"table": {"family": "inet", "name": "weave"}}]
    for ch in chains:
        entries.append({"chain": {"family": "inet", "table": "weave", "name": ch.name,
                                  "type": ch.type, "hook": ch.hook, "prio": ch.prio,
                                  "policy": ch.policy}})
    for ch in chains:
        for _, comment in ch.rules:
            if comment != drop_comment:
                entries.append({"rule": {"chain": ch.name, "comment": comment, "expr": []}})
    return json.loads(json.dumps({"nftables": entries}))


def test_listing_compares_equal_and_notices_a_deleted_rule() -> None:
    chains = nft.desired([IPv4Interface("10.32.0.3/12")])
    assert nft.canonical_listing(listing(chains)) == nft.canonical(chains)
    gone = nft.canonical_listing(listing(chains, drop_comment="weave:expose 10.32.0.0/12 out"))
    assert gone != nft.canonical(chains)
    assert nft.canonical(nft.desired([])) != nft.canonical(chains)
    assert nft.canonical_listing({"nftables": "junk"}) == frozenset()
    assert nft.canonical_listing([]) == frozenset()


def test_parse_docker_listing() -> None:
    state = iptables.parse_listing(DOCKER)
    assert state.forward_policy == "DROP" and state.has_docker_user and state.ours == []
    assert iptables.target_chain(state) == "DOCKER-USER"


def test_plan_inserts_into_docker_user_in_order() -> None:
    steps = iptables.plan(iptables.parse_listing(DOCKER))
    assert steps == [
        ["-I", "DOCKER-USER", "1", "-o", "weave", "-m", "comment", "--comment",
         "weave:to-bridge", "-j", "ACCEPT"],
        ["-I", "DOCKER-USER", "1", "-i", "weave", "-m", "comment", "--comment",
         "weave:from-bridge", "-j", "ACCEPT"],
    ]


def test_plan_is_empty_when_done_and_moves_rules_out_of_forward() -> None:
    done = DOCKER + (
        '-A DOCKER-USER -i weave -m comment --comment "weave:from-bridge" -j ACCEPT\n'
        '-A DOCKER-USER -o weave -m comment --comment "weave:to-bridge" -j ACCEPT\n'
    )
    assert iptables.plan(iptables.parse_listing(done)) == []
    stale = done + '-A FORWARD -i weave -m comment --comment "weave:from-bridge" -j ACCEPT\n'
    assert iptables.plan(iptables.parse_listing(stale)) == [
        ["-D", "FORWARD", "-i", "weave", "-m", "comment", "--comment", "weave:from-bridge",
         "-j", "ACCEPT"]
    ]
    assert len(iptables.removal(iptables.parse_listing(stale))) == 3


def test_forward_drop_without_docker_user_and_accept_policy() -> None:
    drop = iptables.parse_listing("-P FORWARD DROP\n")
    assert iptables.target_chain(drop) == "FORWARD"
    assert {s[1] for s in iptables.plan(drop)} == {"FORWARD"}
    accept = iptables.parse_listing("-P FORWARD ACCEPT\n-A FORWARD -j ACCEPT\n")
    assert iptables.target_chain(accept) is None and iptables.plan(accept) == []


def test_foreign_comments_and_bad_lines_are_ignored() -> None:
    text = ('-A FORWARD -m comment --comment "not-weave" -j ACCEPT\n'
            '-A FORWARD -m comment --comment "unterminated\n')
    assert iptables.parse_listing(text).ours == []


def test_with_trusted_subnets_vxlan_from_elsewhere_is_dropped_and_read_back() -> None:
    from weave_cli.net import nft as nftmod

    ports = nftmod.LocalPorts.for_mesh_port(6783, ("198.18.0.0/24", "10.0.0.0/8"))
    chains = nftmod.desired([], ports=ports)
    text = nftmod.script(chains)
    assert "udp dport 6784 ip saddr != { 10.0.0.0/8, 198.18.0.0/24 } counter drop" in text
    assert nftmod.ports_of(nftmod.canonical(chains)) == ports
    plain = nftmod.desired([], ports=nftmod.LocalPorts.for_mesh_port(6783))
    assert "saddr !=" not in nftmod.script(plain)


def test_the_guarded_tcp_ports_follow_the_status_and_http_listeners() -> None:
    from weave_cli.config import LaunchConfig

    assert LaunchConfig().validate().listener_ports == (6782,)
    moved = LaunchConfig(status_addr="127.0.0.1:7782", http_addr="127.0.0.1:7784").validate()
    assert moved.listener_ports == (7782, 7784)
    assert LaunchConfig(status_addr=None).validate().listener_ports == (6782,)  # disabled
    ports = nft.LocalPorts.for_mesh_port(6783, (), moved.listener_ports)
    # the moved listeners, the mesh port, and the original's control port 6784 in any case
    assert ports == nft.LocalPorts((6783, 6784, 7782, 7784), (6783, 6784))
    text = nft.script(nft.desired([], ports=ports))
    assert 'iifname "weave" tcp dport { 6783, 6784, 7782, 7784 } counter drop' in text
    assert ('ip daddr 127.0.0.0/8 iifname != "lo" tcp dport { 6783, 6784, 7782, 7784 } '
            'counter drop comment "weave:guard localnet tcp 6783,6784,7782,7784"') in text
    # the CLI's expose and hide read them back, so they keep what the router chose
    assert nft.ports_of(nft.canonical(nft.desired([], ports=ports))) == ports
    # a listener on the mesh or the control port adds nothing
    same = nft.LocalPorts.for_mesh_port(6783, (), (6784, 6783))
    assert same.tcp == (6783, 6784)
