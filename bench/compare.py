"""What every benchmark shares: warm-up, rounds in a balanced order, medians, ratios and the printed table.

A comparison runs its set-ups (this plugin and a baseline, plain and encrypted, ...) in the same run,
on the same servers, so that all see the same machine load; it is fair only when none of them always
runs first or last, cold or warm. ``run_rounds`` gives that: untimed warm-up rounds first, then
``--rounds`` rounds (at least 5) in which the order of the set-ups changes from round to round
(``balanced_order``: ABBA for two, every permutation for three), and the medians of the rounds are
what a script reports.
"""

import argparse
import concurrent.futures
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

MIN_ROUNDS = 5


def rounds_type(text: str) -> int:
    """A number of measured rounds for argparse: a whole number, at least MIN_ROUNDS."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of rounds, at least {MIN_ROUNDS}, is needed: "
                                         f"got {text!r}") from None
    if value < MIN_ROUNDS:
        raise argparse.ArgumentTypeError(f"at least {MIN_ROUNDS} rounds are needed (medians of fewer are not "
                                         f"reported): got {value}; make each round shorter instead "
                                         "(fewer objects or instances, smaller sizes)")
    return value


def add_rounds_option(parser: argparse.ArgumentParser, default: int = MIN_ROUNDS, what: str = "") -> None:
    """``--rounds N`` (N >= 5), the measured rounds after the warm-up; medians are reported."""
    parser.add_argument("--rounds", type=rounds_type, default=default,
                        help=f"measured rounds{what}, at least {MIN_ROUNDS}, after a warm-up round, in an order "
                             f"that changes every round; medians are reported (default {default})")


def balanced_order(names: Sequence, round_number: int) -> list:
    """The order of ``names`` in round ``round_number``, from a Williams design: over ``2 * len(names)``
    rounds each name runs in every position equally often, and right after every other name equally
    often. Two set-ups run A B, B A, A B, ... (ABBA ABBA in time); three run all six orders."""
    names = list(names)
    count = len(names)
    if count == 0:
        return []
    first = [0] + [(k + 1) // 2 if k % 2 else count - k // 2 for k in range(1, count)]  # 0, 1, n-1, 2, n-2...
    cycle = round_number % (count if count % 2 == 0 else 2 * count)  # odd: the square, then its mirror
    order = [names[(index + cycle) % count] for index in first]
    return order[::-1] if cycle >= count else order


def run_rounds(names: Sequence, measure: Callable, rounds: int, warm_up: int = 1) -> dict:
    """Calls ``measure(name, round_number)`` for every name in ``warm_up`` untimed rounds (numbered -1,
    -2, ...; their results are dropped), then in ``rounds`` rounds numbered 0, 1, ... in
    ``balanced_order``. Returns {name: [the result of each measured round, in round order]}."""
    for number in range(1, warm_up + 1):
        for name in balanced_order(names, number - 1):
            measure(name, -number)
    results: dict = {name: [] for name in names}
    for number in range(rounds):
        for name in balanced_order(names, number):
            results[name].append(measure(name, number))
    return results


def medians(results: dict) -> dict:
    """{name: median} of ``run_rounds``' results when each is a number, {name: {cell: median}} when each
    is a dict of numbers (one per phase, say)."""
    out = {}
    for name, values in results.items():
        if values and isinstance(values[0], dict):
            out[name] = {cell: statistics.median(value[cell] for value in values) for cell in values[0]}
        else:
            out[name] = statistics.median(values)
    return out


def round_ratios(top: Sequence, bottom: Sequence, cell=None) -> list[float]:
    """The ratio of each round's two results, ``top[i] / bottom[i]`` (of their ``cell`` when they are dicts):
    the rounds of one run pair up, since their set-ups ran next to each other."""
    if cell is not None:
        top, bottom = [value[cell] for value in top], [value[cell] for value in bottom]
    return [a / b for a, b in zip(top, bottom, strict=True)]


def spread(values: Iterable[float]) -> str:
    """``min-max`` of the rounds, to print beside a median (how much one run moved)."""
    values = list(values)
    return f"{min(values):.3g}-{max(values):.3g}"


def timed(function: Callable, *arguments):
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = function(*arguments)
    return time.perf_counter() - started, result


def pooled(function: Callable, items: Iterable, clients: int):
    """(seconds, [results]) of ``function`` over ``items`` run by ``clients`` threads at once."""
    items = list(items)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(function, items))
    return time.perf_counter() - started, results


def table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """Rows under headers, the first column left-aligned and the others right-aligned; floats with two
    decimals unless given as text already."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[index]) for row in cells)) if cells else len(str(header))
              for index, header in enumerate(headers)]

    def line(values):
        return "  ".join(value.ljust(widths[0]) if index == 0 else value.rjust(widths[index])
                         for index, value in enumerate(values)).rstrip()

    return "\n".join([line([str(header) for header in headers]), *(line(row) for row in cells)])


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def describe(rounds: int, warm_up: int = 1) -> str:
    """The line every report carries: how its figures were taken."""
    return (f"medians of {rounds} rounds after {warm_up} warm-up round{'s' if warm_up != 1 else ''}, "
            "the order of the set-ups changing every round")
