"""Large-instance benchmark: Orthanc's peak memory and time per large DICOM file, and the stores' large put/get.

Part 1, through Orthanc (the host's 1.10.1): for each size (50 MB and 200 MB; 1 GB with --gigabyte), each
measurement starts a fresh Orthanc of one set-up, uploads one instance of that size once, reads it back
twice (/instances/ID/file, storage cache off) and deletes it. For each size, a warm-up round of every
set-up with a 10 MB instance comes first, then ``--orthanc-rounds`` rounds in which the order of the
five set-ups changes every round (bench/compare.py). Reported, as medians of the rounds: the rise of Orthanc's peak
RSS (VmHWM of /proc/PID/status at the end minus VmRSS once started), the upload time and the mean read
time, for Orthanc's own storage, the naive plugin (bench/naive_plugin.py), this plugin plain, with A1
and with A2 encryption, and each as a ratio to Orthanc's own storage. "+1.00x" in the last column means
one more copy of the file than Orthanc's own storage holds at its peak.

Part 2, store level (no Orthanc): each provider's store vs the plain SDK call (bench/providers.py's
Naive) for one large put and get (both read the same object), each timed alone, after a warm-up round,
in ``--rounds`` rounds whose order alternates (ABBA); medians; ratio = SDK seconds / store seconds.

    .venv/bin/python bench/large.py [--sizes 50,200] [--gigabyte] [--provider s3] [--orthanc-rounds 5]
                                    [--store-providers s3,azure,gcs] [--store-size 50] [--rounds 9]
                                    [--skip-orthanc] [--skip-stores]
"""

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import compare  # noqa: E402
import providers  # noqa: E402
import run  # noqa: E402
from support.dicom import large_instance  # noqa: E402
from support.orthanc import Orthanc  # noqa: E402

MB = 1000 * 1000
SETUPS = ("file storage", "naive plugin", "this plugin", "plugin A1", "plugin A2")
WARM_UP_SIZE = 10 * MB


def memory_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def configurations(provider: str, workdir: str):
    """The server and {set-up: (settings, environment)}: bench/run.py's three, plus the plugin with A1, A2."""
    server, found = run.setups(provider, workdir)
    plugin_settings, environment = found["this plugin"]
    key_path = os.path.join(workdir, "master.key")
    with open(key_path, "wb") as file:
        file.write(base64.b64encode(os.urandom(32)) + b"\n")
    section = next(name for name in plugin_settings if isinstance(plugin_settings[name], dict))
    result = {"file storage": found["file storage"], "naive plugin": found["naive plugin"],
              "this plugin": found["this plugin"]}
    for fmt in ("A1", "A2"):
        encrypted = {**plugin_settings, section: {**plugin_settings[section],
                                                  "StorageEncryption": {"MasterKey": [1, key_path], "Format": fmt}}}
        result[f"plugin {fmt}"] = (encrypted, environment)
    return server, result


def measure(settings, environment, dicom: bytes, folder: str) -> dict:
    orthanc = Orthanc(folder, settings, env=environment).start()
    try:
        pid = orthanc.process.pid
        time.sleep(0.5)
        baseline = memory_kb(pid, "VmRSS")
        started = time.perf_counter()
        instance = json.loads(orthanc.request("POST", "/instances", dicom, timeout=1800)[1])["ID"]
        upload = time.perf_counter() - started
        reads = []
        for _ in range(2):
            started = time.perf_counter()
            body = orthanc.request("GET", f"/instances/{instance}/file", timeout=1800)[1]
            reads.append(time.perf_counter() - started)
            assert body == dicom, "a read returned other bytes than were uploaded"
            del body
        peak = memory_kb(pid, "VmHWM")
        orthanc.delete(f"/instances/{instance}")  # the emulators keep objects in memory or on disk
        return {"rise": (peak - baseline) * 1024, "upload": upload, "read": statistics.mean(reads)}
    finally:
        orthanc.stop()
        shutil.rmtree(folder, ignore_errors=True)


def orthanc_part(arguments, workdir):
    sizes = [int(size) * MB for size in arguments.sizes.split(",")] + ([1000 * MB] if arguments.gigabyte else [])
    server, setups = configurations(arguments.provider, os.path.join(workdir, arguments.provider))
    try:
        warm_up = large_instance(WARM_UP_SIZE, ".9")
        for size in sizes:
            dicom = large_instance(size)

            def one(name, round_number, dicom=dicom, size=size):
                settings, environment = setups[name]
                folder = os.path.join(workdir, arguments.provider, f"{name.replace(' ', '-')}-{size}-{round_number}")
                return measure(settings, environment, warm_up if round_number < 0 else dicom, folder)

            results = compare.run_rounds(SETUPS, one, arguments.orthanc_rounds)
            report_orthanc(arguments.provider, len(dicom), compare.medians(results), arguments.orthanc_rounds)
            del dicom
    finally:
        server.stop()


def report_orthanc(provider, size, rows, rounds):
    own = rows["file storage"]
    print(f"\n[{provider}] one instance of {size / MB:.0f} MB, uploaded once, read twice (Orthanc 1.10.1); "
          f"{compare.describe(rounds)}; ratios to Orthanc's own storage")
    print(f"{'set-up':13} {'peak rise':>10} {'x file':>7} {'upload s':>9} {'read s':>7} "
          f"{'rise/own':>9} {'upload/own':>11} {'read/own':>9} {'extra copies':>13}")
    for name, row in rows.items():
        print(f"{name:13} {row['rise'] / MB:8.0f}MB {row['rise'] / size:6.2f}x {row['upload']:9.2f} "
              f"{row['read']:7.2f} {row['rise'] / own['rise']:9.2f} {row['upload'] / own['upload']:11.2f} "
              f"{row['read'] / own['read']:9.2f} {(row['rise'] - own['rise']) / size:+12.2f}x")
    plain = rows["this plugin"]
    for fmt in ("A1", "A2"):
        extra = (rows[f"plugin {fmt}"]["rise"] - plain["rise"]) / size
        print(f"  {fmt}: peak = plain {extra:+.2f}x the file (goal <= +1.00x)")
    print(f"  plain: peak = naive {(plain['rise'] - rows['naive plugin']['rise']) / size:+.2f}x the file (goal <= 0)")


def store_round(store, sdk, data, round_number: int) -> dict:
    """One round: a put of ``data`` by each of the two (an object each), then a get by each of the
    object the SDK wrote, in the order of ``round_number`` (ABBA); {(name, phase): seconds}."""
    pair = compare.balanced_order([("store", store), ("sdk", sdk)], round_number)
    seconds = {}
    keys = {name: f"bench/{uuid.uuid4()}" for name, _ in pair}
    for name, target in pair:
        started = time.perf_counter()
        target.put(keys[name], data)
        seconds[(name, "put")] = time.perf_counter() - started
    for name, target in pair:  # both read the same object: the server's side of the two reads is alike
        started = time.perf_counter()
        got = target.get(keys["sdk"])
        seconds[(name, "get")] = time.perf_counter() - started
        assert len(got) == len(data), "a read returned the wrong size"
        del got
    for name, target in pair:
        target.delete(keys[name])
    return seconds


def stores_part(arguments, workdir):
    """Per provider: the store's put and get of one large object against the plain SDK call, each timed
    alone, in rounds whose order alternates; medians; ratio = SDK seconds / store seconds (>= 0.95 asked)."""
    size = arguments.store_size * MB
    data = os.urandom(size)
    for provider in arguments.store_providers.split(","):
        server, backend = providers.server_and_backend(provider, workdir)
        try:
            ours, naive = backend.store(), providers.Naive(backend)
            store_round(ours, naive, data, 0)  # warm-up: connections, first allocations
            rounds = [store_round(ours, naive, data, number) for number in range(arguments.rounds)]
            median = compare.medians({"rounds": rounds})["rounds"]
            print(f"[{provider}] {size / MB:.0f} MB objects, 1 client, {compare.describe(arguments.rounds)}: "
                  + ", ".join(f"{phase} {median[('store', phase)]:.3f}/{median[('sdk', phase)]:.3f} s, "
                              f"SDK/store = {median[('sdk', phase)] / median[('store', phase)]:.2f}"
                              for phase in ("put", "get"))
                  + " (store / SDK seconds; target >= 0.95)")
        finally:
            backend.close()
            if server is not None:
                server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,200", help="instance sizes in MB (10^6 bytes)")
    parser.add_argument("--gigabyte", action="store_true", help="also a 1 GB instance (needs about 6 GB of RAM)")
    parser.add_argument("--provider", default="s3", help=f"for the Orthanc part, among {','.join(run.PROVIDERS)}")
    parser.add_argument("--store-providers", default="s3,azure,gcs")
    parser.add_argument("--store-size", type=int, default=50, help="object size of the store part, in MB")
    compare.add_rounds_option(parser, default=9, what=" of the store part")
    parser.add_argument("--orthanc-rounds", type=compare.rounds_type, default=compare.MIN_ROUNDS,
                        help="measured rounds of the Orthanc part, at least 5 (a fresh Orthanc per set-up and "
                             "round; medians)")
    parser.add_argument("--skip-orthanc", action="store_true")
    parser.add_argument("--skip-stores", action="store_true")
    arguments = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="objstore-bench-large-")
    try:
        if not arguments.skip_orthanc:
            orthanc_part(arguments, workdir)
        if not arguments.skip_stores:
            print()
            stores_part(arguments, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
