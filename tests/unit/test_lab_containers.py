"""Lab container naming (weave_cli/lab/topology.py): what a name may be and which namespaces
a lab owns, so ``weave lab down`` removes containers and nothing else."""

from __future__ import annotations

import pytest

from weave_cli.errors import LabError
from weave_cli.lab.topology import Lab, validate_container_name


@pytest.mark.parametrize("name", ["a", "web", "c1", "x2345678901z"])
def test_good_names(name: str) -> None:
    assert validate_container_name(name) == name


@pytest.mark.parametrize("name", ["", "h1", "h12", "sw", "1a", "Web", "a-b", "a" * 13])
def test_bad_names(name: str) -> None:
    with pytest.raises(LabError, match="invalid container name"):
        validate_container_name(name)


def test_the_lab_owns_its_containers_only() -> None:
    lab = Lab("t1")
    assert lab.container_netns("web") == "wl-t1-c-web"
    assert lab.owns_netns("wl-t1-c-web") and lab.container_from_netns("wl-t1-c-web") == "web"
    assert lab.owns_netns("wl-t1-h2") and lab.owns_netns("wl-t1-sw")
    for other in ("wl-t12-c-web", "wl-t1-c-", "wl-t1-c-Bad", "wl-t1-x-web", "c-web"):
        assert not lab.owns_netns(other) and lab.container_from_netns(other) is None
    assert lab.hosts_from_netns(["wl-t1-c-web", "wl-t1-h1"]) == [lab.host(1)]

