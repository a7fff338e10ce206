"""Our ACCEPT rules in iptables' filter table, for hosts where Docker drops forwarded traffic.

Docker sets the iptables FORWARD policy to DROP. With br_netfilter loaded (Docker loads it),
even traffic between two containers on the weave bridge passes FORWARD, and an accept in our
own nftables table cannot undo a drop in iptables' table. So, as the original did, we add::

    -i weave -m comment --comment weave:from-bridge -j ACCEPT
    -o weave -m comment --comment weave:to-bridge -j ACCEPT

at the top of DOCKER-USER when that chain exists (Docker's documented place for user rules,
which Docker never flushes), else at the top of FORWARD when its policy is DROP, else nowhere.
Our rules anywhere else (say FORWARD, before Docker created DOCKER-USER) are removed. Rules are
recognised by their ``weave:`` comment only; everything else in those chains is left alone.

Pure: ``parse_listing`` reads ``iptables -S`` (filter table) output; ``plan`` and ``removal``
return argument lists for ``iptables -w 5`` (``-I CHAIN 1 ...`` / ``-D CHAIN ...``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from weave_cli.names import BRIDGE, FIREWALL_COMMENT_PREFIX

DOCKER_USER = "DOCKER-USER"
FORWARD = "FORWARD"


def wanted_rules(chain: str, bridge: str = BRIDGE) -> list[list[str]]:
    """Our rule specs for ``chain``, in the order they should appear."""
    c = FIREWALL_COMMENT_PREFIX
    return [
        [chain, "-i", bridge, "-m", "comment", "--comment", f"{c}from-bridge", "-j", "ACCEPT"],
        [chain, "-o", bridge, "-m", "comment", "--comment", f"{c}to-bridge", "-j", "ACCEPT"],
    ]


@dataclass(frozen=True)
class FilterState:
    """What matters to us in the filter table: FORWARD's policy, DOCKER-USER, our rules."""

    forward_policy: str | None = None
    has_docker_user: bool = False
    ours: list[list[str]] = field(default_factory=list)  # [chain, spec...] as -S prints them


def parse_listing(text: str) -> FilterState:
    policy, docker_user, ours = None, False, []
    for line in text.splitlines():
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if len(words) >= 3 and words[0] == "-P" and words[1] == FORWARD:
            policy = words[2]
        elif len(words) >= 2 and words[0] == "-N" and words[1] == DOCKER_USER:
            docker_user = True
        elif len(words) >= 2 and words[0] == "-A" and _is_ours(words):
            ours.append(words[1:])
    return FilterState(policy, docker_user, ours)


def _is_ours(words: list[str]) -> bool:
    for i, word in enumerate(words[:-1]):
        if word == "--comment" and words[i + 1].startswith(FIREWALL_COMMENT_PREFIX):
            return True
    return False


def target_chain(state: FilterState) -> str | None:
    if state.has_docker_user:
        return DOCKER_USER
    if state.forward_policy == "DROP":
        return FORWARD
    return None


def plan(state: FilterState, bridge: str = BRIDGE) -> list[list[str]]:
    """iptables arguments that make our rules exactly right: deletions first, then inserts."""
    chain = target_chain(state)
    wanted = wanted_rules(chain, bridge) if chain else []
    steps = [["-D", *rule] for rule in state.ours if rule not in wanted]
    missing = [rule for rule in wanted if rule not in state.ours]
    # Insert in reverse at position 1, so the rules end up first and in wanted order.
    for rule in reversed(missing):
        steps.append(["-I", rule[0], "1", *rule[1:]])
    return steps


def removal(state: FilterState) -> list[list[str]]:
    """iptables arguments that delete every rule of ours."""
    return [["-D", *rule] for rule in state.ours]
