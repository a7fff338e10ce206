"""The history checker itself must catch a shared address and accept a legitimate reuse."""

from __future__ import annotations

import pytest
from ipamutil import History


def test_checker_flags_two_live_holders_of_one_address() -> None:
    h = History()
    h.record("h1", "a", "10.32.0.1/12")
    h.record("h2", "b", "10.32.0.1/12")
    with pytest.raises(AssertionError, match="10.32.0.1 held by a@h1 and b@h2"):
        h.check()


def test_checker_accepts_reuse_after_free_and_reclaim_by_the_same_container() -> None:
    h = History()
    h.record("h1", "a", "10.32.0.1/12")
    h.record("h1", "a", "10.32.0.1/12")  # asking again for the same ident gives it back
    h.released("h1", "a")
    h.record("h2", "b", "10.32.0.1/12")
    h.check()
    assert h.live() == {"10.32.0.1": ("h2", "b")}


def test_released_host_ends_all_its_holds() -> None:
    h = History()
    h.record("h1", "a", "10.32.0.1/12")
    h.record("h1", "b", "10.32.0.2/12")
    h.released("h1")
    assert h.live() == {}
