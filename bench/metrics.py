"""Benchmark: the cost of the metrics on the hot path: an area with the MeteredArea wrapper / without, same run.

The memory store makes the storage itself as cheap as it gets, so the ratio is the worst case: over
S3, Azure or GCS an operation takes milliseconds and the counters' cost (a few hundred nanoseconds)
disappears in it. Each round runs create + read + read_range + remove on the same uuids through both
areas, in alternating order, with 1 and 8 threads; the best round of each counts. Also printed: one
``Counter.add`` alone, and what the counters cost per operation in nanoseconds.

Run by hand (numbers depend on the machine; only the ratios of one run mean something):

    .venv/bin/python bench/metrics.py [--operations 20000] [--rounds 5] [--size 4096]
"""

import argparse
import concurrent.futures
import os
import time
import uuid as uuidlib

from orthanc_objstore.areas.contract import ObjectArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.metrics.metered import MeteredArea, StorageMetrics
from orthanc_objstore.metrics.registry import Counter
from orthanc_objstore.storage.providers.memory import MemoryStore


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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=4096, help="bytes per attachment")
    args = parser.parse_args()
    data = os.urandom(args.size)
    uuids = [str(uuidlib.uuid4()) for _ in range(args.operations)]
    print(f"Counter.add alone: {counter_add_ns():.0f} ns")
    for threads in (1, 8):
        plain = ObjectArea(MemoryStore(), Naming())
        metrics = StorageMetrics()
        metered = MeteredArea(ObjectArea(MemoryStore(), Naming()), metrics, "object-storage")
        best = {"plain": float("inf"), "metered": float("inf")}
        one_pass(plain, uuids[:1000], data, threads)  # warm-up
        one_pass(metered, uuids[:1000], data, threads)
        for round_number in range(args.rounds):
            order = [("plain", plain), ("metered", metered)]
            for name, area in order if round_number % 2 == 0 else reversed(order):
                best[name] = min(best[name], one_pass(area, uuids, data, threads))
        operations = 4 * args.operations
        counted = metrics.metrics.value("orthanc_objstore_operations_total", operation="read",
                                        storage="object-storage")
        assert counted == args.rounds * args.operations + 1000  # every round, and the warm-up
        per_plain = best["plain"] / operations * 1e9
        per_metered = best["metered"] / operations * 1e9
        print(f"{threads} thread(s): plain {per_plain:.0f} ns/operation, metered {per_metered:.0f} ns/operation, "
              f"+{per_metered - per_plain:.0f} ns; throughput ratio metered/plain {best['plain'] / best['metered']:.3f}")


if __name__ == "__main__":
    main()
