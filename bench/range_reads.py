"""Benchmark: what /instances/{id}/tags costs on Orthanc 1.13 with range reads (StorageArea3) vs whole
reads (the v1 API, forced with ORTHANC_OBJSTORE_STORAGE_API=v1), in one run.

Same moto server, same 400 instances (CT_small with new UIDs, about 39 KB each, header about 6 KB),
storage cache off and Orthanc restarted before each measurement so every read reaches the store.
Bytes are counted by a TCP proxy between Orthanc and moto (HTTP headers included; all three go through
it). After a warm-up round, the three measurements run in an order that changes every round (all six
orders over six rounds, bench/compare.py); medians are reported.

  range reads   v3, instances written through v3: /tags reads the header range of the DICOM file
  whole reads   v1 on the same instances: no header attachment exists, /tags reads whole files
  v1 from start informational: instances written through v1 keep a separate header attachment
                (one more object and one more write per instance), which /tags reads

Needs the chroot of scripts/newest-orthanc.sh. Run by hand (only the ratios of one run mean something):

    .venv/bin/python bench/range_reads.py [--instances 400] [--clients 4] [--rounds 6]
"""

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import compare  # noqa: E402
from support.backends import S3Backend  # noqa: E402
from support.dicom import make_instances  # noqa: E402
from support.orthanc import NEWEST_VERSION, Orthanc  # noqa: E402
from support.servers import MotoServer  # noqa: E402

FORCE_V1 = {"ORTHANC_OBJSTORE_STORAGE_API": "v1"}


def measure_tags(orthanc, backend, ids, clients, environment, api):
    """{seconds, bytes fetched from the store, store requests} for one /tags per instance, cold: Orthanc
    restarted with ``environment`` first, and checked to use the storage API ``api``."""
    orthanc.env = environment
    orthanc.restart()
    assert orthanc.storage_api == api, f"Orthanc registered {orthanc.storage_api}, not {api}"
    backend.proxy.reset_counts()
    seconds, answers = compare.pooled(lambda i: orthanc.get_json(f"/instances/{i}/tags?simplify"), ids, clients)
    assert all(answer.get("SOPInstanceUID") for answer in answers), "a /tags answer has no SOPInstanceUID"
    return {"seconds": seconds, "bytes": backend.proxy.bytes_from_server, "requests": len(backend.proxy.requests)}


def upload(orthanc, files, clients):
    return compare.pooled(lambda data: orthanc.upload(data)["ID"], files, clients)[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    compare.add_rounds_option(parser, default=6, what=" (6: every order of the three set-ups once)")
    arguments = parser.parse_args()
    files = make_instances(arguments.instances)
    moto = MotoServer()
    workdir = tempfile.mkdtemp(prefix="bench-range-")
    servers, backends = [], []
    try:
        ranged_backend, v1_backend = S3Backend(moto), S3Backend(moto)
        backends += [ranged_backend, v1_backend]
        ranged = Orthanc(os.path.join(workdir, "v3"), ranged_backend.settings(), version=NEWEST_VERSION)
        v1 = Orthanc(os.path.join(workdir, "v1"), v1_backend.settings(), version=NEWEST_VERSION, env=FORCE_V1)
        servers += [ranged, v1]
        ranged.start()
        v1.start()
        assert ranged.storage_api == "v3" and v1.storage_api == "v1", "unexpected storage API"
        ranged_ids = upload(ranged, files, arguments.clients)
        v1_ids = upload(v1, files, arguments.clients)
        objects = {"range reads": len(ranged_backend.keys()), "v1 from start": len(v1_backend.keys())}
        objects["whole reads"] = objects["range reads"]
        kinds = {"range reads": (ranged, ranged_backend, ranged_ids, {}, "v3"),
                 "whole reads": (ranged, ranged_backend, ranged_ids, FORCE_V1, "v1"),
                 "v1 from start": (v1, v1_backend, v1_ids, FORCE_V1, "v1")}

        def measure(kind, round_number):
            orthanc, backend, ids, environment, api = kinds[kind]
            return measure_tags(orthanc, backend, ids, arguments.clients, environment, api)

        results = compare.run_rounds(list(kinds), measure, arguments.rounds)
    finally:
        for server in servers:
            server.stop()
            server.cleanup()
        for backend in backends:
            backend.close()
        moto.stop()

    median = compare.medians(results)
    print(f"Orthanc 1.13, {arguments.instances} x GET /instances/{{id}}/tags, {arguments.clients} clients, "
          f"cold (restarted, MaximumStorageCacheSize 0); DICOM {len(files[0])} bytes each; "
          f"{compare.describe(arguments.rounds)}")
    rows = [[name, row["seconds"], f"{arguments.instances / row['seconds']:.1f}", f"{row['bytes']:.0f}",
             f"{row['bytes'] / arguments.instances:.0f}", f"{row['requests']:.0f}", objects[name]]
            for name, row in median.items()]
    print(compare.table(["", "seconds", "/tags per s", "bytes from store", "per /tags", "requests",
                         "objects stored"], rows))
    ranged_result, whole_result = median["range reads"], median["whole reads"]
    per_round = compare.round_ratios(results["whole reads"], results["range reads"], "seconds")
    print(f"\nwhole reads / range reads: bytes x{whole_result['bytes'] / ranged_result['bytes']:.2f}, "
          f"time x{whole_result['seconds'] / ranged_result['seconds']:.2f} "
          f"(rounds' ratios {compare.spread(per_round)})")


if __name__ == "__main__":
    main()
