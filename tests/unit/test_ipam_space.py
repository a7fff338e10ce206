"""A peer's space against a plain set model: allocate lowest, free with coalescing, donate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weave_cli.ipam.address import Range
from weave_cli.ipam.space import Space, SpaceError


@st.composite
def ranges(draw: st.DrawFn) -> Range:
    a, b = sorted((draw(st.integers(0, 128)), draw(st.integers(0, 128))))
    return Range(a, b)


def _addrs(rs: list[Range]) -> set[int]:
    return {a for r in rs for a in range(r.start, r.end)}


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ranges()),
        st.tuples(st.just("remove"), ranges()),
        st.tuples(st.just("allocate"), ranges()),
        st.tuples(st.just("release"), st.integers(0, 128)),
        st.tuples(st.just("donate"), ranges()),
    ),
    max_size=30,
)


@given(ops)
def test_space_matches_set_model(steps: list[tuple[str, object]]) -> None:
    space, ours, free = Space(), set[int](), set[int]()
    for op, arg in steps:
        if op == "add":
            assert isinstance(arg, Range)
            space.add(arg)
            ours |= _addrs([arg])
            free |= _addrs([arg])
        elif op == "remove":
            assert isinstance(arg, Range)
            space.remove(arg)
            ours -= _addrs([arg])
            free -= _addrs([arg])
        elif op == "allocate":
            assert isinstance(arg, Range)
            want = min((a for a in free if a in arg), default=None)
            assert space.allocate(arg) == want
            if want is not None:
                free.discard(want)
        elif op == "release":
            assert isinstance(arg, int)
            if arg in ours and arg not in free:
                space.release(arg)
                free.add(arg)
            else:
                with pytest.raises(SpaceError):
                    space.release(arg)
        else:
            assert isinstance(arg, Range)
            total = len(free)
            gift = space.donate(arg)
            if gift is None:
                assert not (free & _addrs([arg])) or total // 2 == 0
                continue
            given_away = _addrs([gift])
            assert arg.contains_range(gift) and given_away <= free
            assert gift.size <= total // 2, "a donor never gives more than half its free space"
            # The gift ends at the end of the biggest free chunk inside the request.
            assert gift.end - 1 in free and gift.end not in (free & _addrs([arg]))
            ours -= given_away
            free -= given_away
        space.check()
        assert _addrs(space.ours) == ours and _addrs(space.free) == free
        assert space.num_free() == len(free) and space.num_owned() == len(ours)


def test_release_coalesces_neighbours() -> None:
    space = Space()
    space.add(Range(10, 20))
    got = [space.allocate(Range(0, 100)) for _ in range(3)]
    assert got == [10, 11, 12] and space.free == [Range(13, 20)]
    space.release(11)
    assert space.free == [Range(11, 12), Range(13, 20)]
    space.release(12)
    assert space.free == [Range(11, 20)]
    space.release(10)
    assert space.free == [Range(10, 20)]


def test_donate_takes_upper_part_of_biggest_chunk_at_most_half() -> None:
    space = Space()
    space.add(Range(0, 64))
    assert space.donate(Range(0, 64)) == Range(32, 64)
    assert space.ours == [Range(0, 32)]
    space.add(Range(100, 104))
    # Biggest chunk in the request is 100..104, but at most half of 36 free may go: all 4 go.
    assert space.donate(Range(100, 200)) == Range(100, 104)
    lone = Space()
    lone.add(Range(7, 8))
    assert lone.donate(Range(0, 100)) is None, "one free address: nothing to give"
    assert Space().donate(Range(0, 10)) is None
