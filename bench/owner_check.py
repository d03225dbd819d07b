"""Benchmark: what the owner check (issue 15) costs per read on each provider, as a ratio with/without it.

For each provider (moto's S3, Azurite, fake-gcs-server, all on 127.0.0.1) the same objects are read
whole and by range, without ``owner`` (no check, as before) and with it (the recorded owner checked),
object after object in a shuffled order of kinds, in several rounds, after an untimed warm-up pass over
the first objects; the figure is the median time of one read of each kind and the ratio with/without.
A FaultProxy in front of each server counts the requests, to show that the check adds none for objects
with the metadata; "legacy" reads objects written without metadata
(by the official plugin) with ``owner``, which costs one metadata request more on GCS only.

Run by hand (only the ratios of one run mean something):

    .venv/bin/python bench/owner_check.py [--objects 100] [--size 65536] [--rounds 5]
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import compare  # noqa: E402
from support.backends import AzureBackend, GcsBackend  # noqa: E402
from support.servers import AzuriteServer, FaultProxy, MotoServer  # noqa: E402

from orthanc_objstore.config.sections import S3Config  # noqa: E402
from orthanc_objstore.storage.protocol import Owner  # noqa: E402
from orthanc_objstore.storage.providers.s3 import S3Store  # noqa: E402

WARM_UP_OBJECTS = 10


def s3_store(moto):
    bucket = f"bench-{uuidlib.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=bucket)
    proxy = FaultProxy(moto.port)
    return S3Store(S3Config(bucket_name=bucket, region="us-east-1", endpoint=proxy.url, access_key="test",
                            secret_key="test", virtual_addressing=False)), proxy


def measure(store, proxy, objects, size, rounds):
    owners = {f"bench/{uuidlib.uuid4()}.dcm": Owner(str(uuidlib.uuid4()), 1) for _ in range(objects)}
    legacy = {f"bench/{uuidlib.uuid4()}.dcm": Owner(str(uuidlib.uuid4()), 1) for _ in range(objects)}
    data = os.urandom(size)
    for key, owner in owners.items():
        store.put(key, data, owner=owner)
    for key in legacy:
        store.put(key, data)
    legacy_owners = list(legacy.items())
    kinds = {  # kind -> read of the i-th object
        "whole, unchecked": lambda i: store.get(keys[i]),
        "whole, checked": lambda i: store.get(keys[i], owner=owners[keys[i]]),
        "range, unchecked": lambda i: store.get_range(keys[i], 1000, 4096),
        "range, checked": lambda i: store.get_range(keys[i], 1000, 4096, owner=owners[keys[i]]),
        "whole, legacy, checked": lambda i: store.get(legacy_owners[i][0], owner=legacy_owners[i][1]),
    }
    keys = list(owners)
    times = {kind: [] for kind in kinds}
    counted = {kind: 0 for kind in kinds}
    order = list(kinds)
    shuffler = random.Random(15)
    for index in range(min(WARM_UP_OBJECTS, len(keys))):  # warm-up: connections, first allocations
        for kind in order:
            kinds[kind](index)
    for _ in range(rounds):
        for index in range(len(keys)):
            shuffler.shuffle(order)  # every kind in every position, object after object
            for kind in order:
                proxy.reset_counts()
                started = time.perf_counter()
                kinds[kind](index)
                times[kind].append(time.perf_counter() - started)
                counted[kind] += len(proxy.requests)
    requests = {kind: counted[kind] / len(times[kind]) for kind in kinds}
    for key in [*owners, *legacy]:
        store.delete(key)
    return {kind: (statistics.median(values), requests[kind]) for kind, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--size", type=int, default=64 * 1024)
    compare.add_rounds_option(parser)
    arguments = parser.parse_args()
    moto, azurite, gcs = MotoServer(), AzuriteServer(tempfile.mkdtemp(prefix="bench-azurite-")), None
    try:
        azure_backend = AzureBackend(azurite)
        gcs = GcsBackend()
        stores = {"S3 (moto)": s3_store(moto),
                  "Azure (Azurite)": (azure_backend.store(proxied=True), azure_backend.proxy),
                  "GCS (fake-gcs-server)": (gcs.store(proxied=True), gcs.proxy)}
        print(f"{arguments.objects} objects of {arguments.size} bytes, {arguments.rounds} rounds after a warm-up "
              "pass, kinds shuffled object after object; median ms per read, requests per read, ratio "
              "checked/unchecked")
        for name, (store, proxy) in stores.items():
            result = measure(store, proxy, arguments.objects, arguments.size, arguments.rounds)
            print(name)
            for kind, (seconds, per_read) in result.items():
                print(f"  {kind:24} {seconds * 1000:7.2f} ms  {per_read:.1f} requests")
            for shape in ("whole", "range"):
                ratio = result[f"{shape}, checked"][0] / result[f"{shape}, unchecked"][0]
                print(f"  ratio {shape:18} {ratio:.3f}")
            legacy = result["whole, legacy, checked"][0] / result["whole, unchecked"][0]
            print(f"  ratio legacy whole       {legacy:.3f}")
    finally:
        if gcs is not None:
            gcs.close()
        azurite.stop()
        moto.stop()


if __name__ == "__main__":
    main()
