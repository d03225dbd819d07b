"""bench/compare.py: the balanced order, the warm-up, medians and the refusal of fewer than 5 rounds."""

import argparse
import collections
import itertools
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))

import compare  # noqa: E402


@pytest.mark.parametrize("names", [("A", "B"), ("A", "B", "C"), ("A", "B", "C", "D"), ("A", "B", "C", "D", "E")])
def test_every_name_runs_in_every_position_and_after_every_other_equally_often(names):
    orders = [compare.balanced_order(names, number) for number in range(2 * len(names))]
    assert all(sorted(order) == sorted(names) for order in orders)
    positions = collections.Counter((name, order.index(name)) for order in orders for name in names)
    assert set(positions.values()) == {2}, positions
    neighbours = collections.Counter(pair for order in orders for pair in itertools.pairwise(order))
    assert len(set(neighbours.values())) == 1 and len(neighbours) == len(names) * (len(names) - 1), neighbours


def test_two_set_ups_run_abba_and_three_in_all_six_orders():
    assert [compare.balanced_order("AB", number) for number in range(4)] == [
        ["A", "B"], ["B", "A"], ["A", "B"], ["B", "A"]]
    assert len({tuple(compare.balanced_order("ABC", number)) for number in range(6)}) == 6


def test_run_rounds_warms_up_untimed_then_keeps_each_measured_round_in_order():
    calls = []

    def measure(name, number):
        calls.append((name, number))
        return {"seconds": number * 10 + 10 + ord(name) - ord("A")}

    results = compare.run_rounds(["A", "B"], measure, rounds=5)
    assert calls[:2] == [("A", -1), ("B", -1)]
    assert [number for _, number in calls[2:]] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [call[0] for call in calls[2:6]] == ["A", "B", "B", "A"]
    assert results == {"A": [{"seconds": n * 10 + 10} for n in range(5)],
                       "B": [{"seconds": n * 10 + 11} for n in range(5)]}
    assert compare.medians(results) == {"A": {"seconds": 30}, "B": {"seconds": 31}}
    assert compare.round_ratios(results["B"], results["A"], "seconds") == [11 / 10, 21 / 20, 31 / 30, 41 / 40, 51 / 50]


def test_fewer_than_five_rounds_are_refused_with_what_is_allowed():
    parser = argparse.ArgumentParser()
    compare.add_rounds_option(parser)
    assert parser.parse_args([]).rounds == 5
    assert parser.parse_args(["--rounds", "7"]).rounds == 7
    with pytest.raises(argparse.ArgumentTypeError, match="at least 5 rounds are needed.*got 2"):
        compare.rounds_type("2")
    with pytest.raises(argparse.ArgumentTypeError, match="whole number of rounds, at least 5.*'many'"):
        compare.rounds_type("many")


def test_table_aligns_columns():
    text = compare.table(["set-up", "seconds"], [["plain", 1.0], ["encrypted", 12.345]])
    assert text.splitlines() == ["set-up     seconds", "plain         1.00", "encrypted    12.35"]
