"""``BoundedMemo``: each value made once per key, never more than ``max_entries`` kept."""

from __future__ import annotations

import pytest

from tenantsvc.core.bounded_memo import BoundedMemo


def test_a_value_is_made_once_per_key():
    made = []
    memo = BoundedMemo(lambda key: made.append(key) or key * 2, max_entries=8)
    assert [memo[3], memo[3], memo[4]] == [6, 6, 8]
    assert made == [3, 4]


def test_it_never_holds_more_than_max_entries_and_starts_over_when_full():
    made = []
    memo = BoundedMemo(lambda key: made.append(key) or key, max_entries=3)
    for key in range(10):
        assert memo[key] == key
        assert len(memo) <= 3
    assert memo[9] == 9 and made.count(9) == 1  # the latest is kept
    memo[0]
    assert made.count(0) == 2  # forgotten when the memo started over, made again


def test_values_keep_refuses_are_made_again_and_never_held():
    made = []
    memo = BoundedMemo(lambda key: made.append(key) or (key if key % 2 else None), max_entries=8,
                       keep=lambda value: value is not None)
    assert [memo[1], memo[2], memo[1], memo[2]] == [1, None, 1, None]
    assert made == [1, 2, 2] and dict(memo) == {1: 1}


def test_max_entries_must_be_positive():
    with pytest.raises(ValueError):
        BoundedMemo(lambda key: key, max_entries=0)
