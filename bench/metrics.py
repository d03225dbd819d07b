"""Benchmark: the cost of the metrics on the hot path: an area with the MeteredArea wrapper / without, same run.

The memory store makes the storage itself as cheap as it gets, so the ratio is the worst case: over
S3, Azure or GCS an operation takes milliseconds and the counters' cost (a few hundred nanoseconds)
disappears in it. Each round runs create + read + read_range + remove on the same uuids through both
areas, with 1 and 8 threads; after a warm-up round (1000 uuids), the two run in an order that changes
every round (ABBA, bench/compare.py), and the medians of the rounds count. Also printed: one
``Counter.add`` alone, and what the counters cost per operation in nanoseconds.

Run by hand (numbers depend on the machine; only the ratios of one run mean something):

    .venv/bin/python bench/metrics.py [--operations 20000] [--rounds 5] [--size 4096]
"""

import argparse
import concurrent.futures
import os
import sys
import time
import uuid as uuidlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare  # noqa: E402

from orthanc_objstore.areas.contract import ObjectArea  # noqa: E402
from orthanc_objstore.areas.naming import Naming  # noqa: E402
from orthanc_objstore.metrics.metered import MeteredArea, StorageMetrics  # noqa: E402
from orthanc_objstore.metrics.registry import Counter  # noqa: E402
from orthanc_objstore.storage.providers.memory import MemoryStore  # noqa: E402


def one_pass(area, uuids, data, threads):
    def work(chunk):
        for uuid in chunk:
            area.create(uuid, 1, data)
            area.read(uuid, 1)
            area.read_range(uuid, 1, 10, 100)
            area.remove(uuid, 1)

    chunks = [uuids[i::threads] for i in range(threads)]
    started = time.perf_counter()
    if threads == 1:
        work(uuids)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, chunks))
    return time.perf_counter() - started


def counter_add_ns(count=1_000_000):
    counter = Counter()
    started = time.perf_counter()
    for _ in range(count):
        counter.add(1)
    return (time.perf_counter() - started) / count * 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=20_000, help="attachments per round (4 operations each)")
    compare.add_rounds_option(parser)
    parser.add_argument("--size", type=int, default=4096, help="bytes per attachment")
    args = parser.parse_args()
    data = os.urandom(args.size)
    uuids = [str(uuidlib.uuid4()) for _ in range(args.operations)]
    print(f"Counter.add alone: {counter_add_ns():.0f} ns; {compare.describe(args.rounds)}")
    operations = 4 * args.operations
    rows = []
    for threads in (1, 8):
        metrics = StorageMetrics()
        areas = {"plain": ObjectArea(MemoryStore(), Naming()),
                 "metered": MeteredArea(ObjectArea(MemoryStore(), Naming()), metrics, "object-storage")}

        def measure(name, round_number, areas=areas, threads=threads):
            return one_pass(areas[name], uuids if round_number >= 0 else uuids[:1000], data, threads)

        seconds = compare.run_rounds(list(areas), measure, args.rounds)
        counted = metrics.metrics.value("orthanc_objstore_operations_total", operation="read",
                                        storage="object-storage")
        assert counted == args.rounds * args.operations + 1000, "the metered area missed reads"  # and the warm-up
        median = compare.medians(seconds)
        per_plain, per_metered = (median[name] / operations * 1e9 for name in ("plain", "metered"))
        rows.append([threads, f"{per_plain:.0f}", f"{per_metered:.0f}", f"{per_metered - per_plain:+.0f}",
                     f"{median['plain'] / median['metered']:.3f}",
                     compare.spread(compare.round_ratios(seconds["plain"], seconds["metered"]))])
    print(compare.table(["threads", "plain ns/op", "metered ns/op", "difference", "throughput metered/plain",
                         "rounds' ratios"], rows))


if __name__ == "__main__":
    main()
