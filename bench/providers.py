"""Store-level benchmark: each provider's store vs a naive loop on the same SDK, same server, same run.

No Orthanc here (bench/run.py measures through Orthanc): this isolates what the store modules add on
top of their SDK (checks, retries, translation). For each provider (S3 on moto, Azure on Azurite, GCS on
fake-gcs-server), N objects are written, read whole and deleted, one client then 8 concurrent ones,
for small (DICOM-sized) and large objects. After a warm-up round, the two run in an order that changes
every round (ABBA, bench/compare.py); medians are reported as ratios store / naive, with the range of
the rounds' own ratios. Run by hand:

    .venv/bin/python bench/providers.py [--objects 300] [--rounds 5] [--providers s3,azure,gcs]
"""

import argparse
import os
import shutil
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import compare  # noqa: E402
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
        seconds, outcome = compare.pooled(action, keys, clients)
        result[phase] = len(keys) / seconds
        if phase == "get":
            assert all(len(item) == len(data) for item in outcome), "a read returned the wrong size"
    return result


SIZES = {"39 KB": 39_276, "20 MiB": 20 * 1024 * 1024}
PHASES = ("put", "get", "delete")


def run(provider, backend, arguments):
    targets = {"store": backend.store(), "naive": Naive(backend)}
    rows = []
    for label, size in SIZES.items():
        data = os.urandom(size)
        count = arguments.objects if size < 1024 * 1024 else max(4, arguments.objects // 50)
        for clients in (1, 8):
            def measure(name, round_number, data=data, count=count, clients=clients):
                keys = [f"bench/{uuid.uuid4()}" for _ in range(count)]
                return phases(targets[name], keys, data, clients)

            runs = compare.run_rounds(list(targets), measure, arguments.rounds)
            median = compare.medians(runs)
            cells = []
            for phase in PHASES:
                per_round = compare.round_ratios(runs["store"], runs["naive"], phase)
                cells.append(f"{median['store'][phase]:.1f}/{median['naive'][phase]:.1f} = "
                             f"{median['store'][phase] / median['naive'][phase]:.2f} ({compare.spread(per_round)})")
            rows.append([label, clients, *cells])
    print(f"\n[{provider}] objects/s, store/naive = ratio (target >= 0.95), the rounds' own ratios in "
          f"brackets; {compare.describe(arguments.rounds)}")
    print(compare.table(["size", "clients", *PHASES], rows))


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
    compare.add_rounds_option(parser)
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
