"""Store-level benchmark: each provider's store vs a naive loop on the same SDK, same server, same run.

No Orthanc here (bench/run.py measures through Orthanc): this isolates what the store modules add on
top of their SDK (checks, retries, translation). For each provider (S3 on moto, Azure on Azurite, GCS on
fake-gcs-server), N objects are written, read whole and deleted, one client then 8 concurrent ones,
for small (DICOM-sized) and large objects; rounds are interleaved and medians reported as ratios
store / naive. Run by hand:

    .venv/bin/python bench/providers.py [--objects 300] [--rounds 3] [--providers s3,azure,gcs]
"""

import argparse
import concurrent.futures
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from support.backends import AzureBackend, GcsBackend, S3Backend  # noqa: E402
from support.servers import AzuriteServer, MotoServer  # noqa: E402


class Naive:
    """The simplest direct use of each SDK: put, get, delete and nothing else."""

    def __init__(self, backend):
        self.backend = backend

    def put(self, key, data):
        self.backend.write(key, data)

    def get(self, key):
        return self.backend.read(key)

    def delete(self, key):
        self.backend.delete(key)


def phases(store, keys, data, clients):
    """Objects per second for put, get and delete of ``keys``."""
    result = {}
    for phase, action in (("put", lambda key: store.put(key, data)), ("get", store.get), ("delete", store.delete)):
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            outcome = list(pool.map(action, keys))
        result[phase] = len(keys) / (time.perf_counter() - started)
        if phase == "get":
            assert all(len(item) == len(data) for item in outcome), "a read returned the wrong size"
    return result


def run(provider, backend, arguments):
    sizes = {"39 KB": 39_276, "20 MiB": 20 * 1024 * 1024}
    ours, naive = backend.store(), Naive(backend)
    medians = {}
    for label, size in sizes.items():
        data = os.urandom(size)
        count = arguments.objects if size < 1024 * 1024 else max(4, arguments.objects // 50)
        for clients in (1, 8):
            runs = {"store": [], "naive": []}
            for _ in range(arguments.rounds):
                for name, target in (("store", ours), ("naive", naive)):
                    keys = [f"bench/{uuid.uuid4()}" for _ in range(count)]
                    runs[name].append(phases(target, keys, data, clients))
            medians[(label, clients)] = {
                name: {phase: statistics.median(run[phase] for run in values) for phase in ("put", "get", "delete")}
                for name, values in runs.items()}
    print(f"\n[{provider}] objects/s (median of {arguments.rounds}); ratio = store / naive (target >= 0.95)")
    print(f"{'size':7} {'clients':>7} {'put':>16} {'get':>16} {'delete':>16}")
    for (label, clients), row in medians.items():
        cells = [f"{row['store'][p]:6.1f}/{row['naive'][p]:6.1f}={row['store'][p] / row['naive'][p]:4.2f}"
                 for p in ("put", "get", "delete")]
        print(f"{label:7} {clients:7} " + " ".join(f"{cell:>16}" for cell in cells))


def server_and_backend(provider, workdir):
    """(the emulator to stop, or None, and the test backend) of ``provider``: s3, azure or gcs."""
    if provider == "s3":
        server = MotoServer()
        return server, S3Backend(server)
    if provider == "azure":
        server = AzuriteServer(workdir)
        return server, AzureBackend(server)
    return None, GcsBackend()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--providers", default="s3,azure,gcs")
    arguments = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="objstore-bench-providers-")
    try:
        for provider in arguments.providers.split(","):
            server, backend = server_and_backend(provider, workdir)
            try:
                run(provider, backend, arguments)
            finally:
                backend.close()
                if server is not None:
                    server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
