"""Benchmark: what /instances/{id}/tags costs on Orthanc 1.13 with range reads (StorageArea3) vs whole
reads (the v1 API, forced with ORTHANC_OBJSTORE_STORAGE_API=v1), in one run.

Same moto server, same 400 instances (CT_small with new UIDs, about 39 KB each, header about 6 KB),
storage cache off and Orthanc restarted before each measurement so every read reaches the store.
Bytes are counted by a TCP proxy between Orthanc and moto (HTTP headers included).

  range reads   v3, instances written through v3: /tags reads the header range of the DICOM file
  whole reads   v1 on the same instances: no header attachment exists, /tags reads whole files
  v1 from start informational: instances written through v1 keep a separate header attachment
                (one more object and one more write per instance), which /tags reads

Needs the chroot of scripts/newest-orthanc.sh. Run by hand (only the ratios of one run mean something):

    .venv/bin/python bench/range_reads.py [--instances 400] [--clients 4]
"""

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from run import make_instances  # noqa: E402
from support.backends import S3Backend  # noqa: E402
from support.orthanc import NEWEST_VERSION, Orthanc  # noqa: E402
from support.servers import MotoServer  # noqa: E402

FORCE_V1 = {"ORTHANC_OBJSTORE_STORAGE_API": "v1"}


def measure_tags(orthanc, backend, ids, clients):
    """(seconds, bytes fetched from the store, store requests) for one /tags per instance, cold."""
    orthanc.restart()
    backend.proxy.reset_counts()
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(lambda i: orthanc.get_json(f"/instances/{i}/tags?simplify"), ids))
    seconds = time.perf_counter() - started
    assert all(answer.get("SOPInstanceUID") for answer in answers), "a /tags answer has no SOPInstanceUID"
    return seconds, backend.proxy.bytes_from_server, len(backend.proxy.requests)


def upload(orthanc, files, clients):
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda data: orthanc.upload(data)["ID"], files))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
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

        results = {"range reads": measure_tags(ranged, ranged_backend, ranged_ids, arguments.clients)}
        ranged.env = FORCE_V1
        results["whole reads"] = measure_tags(ranged, ranged_backend, ranged_ids, arguments.clients)
        assert ranged.storage_api == "v1"
        objects["whole reads"] = objects["range reads"]
        results["v1 from start"] = measure_tags(v1, v1_backend, v1_ids, arguments.clients)
    finally:
        for server in servers:
            server.stop()
            server.cleanup()
        for backend in backends:
            backend.close()
        moto.stop()

    print(f"Orthanc 1.13, {arguments.instances} x GET /instances/{{id}}/tags, {arguments.clients} clients, "
          f"cold (restarted, MaximumStorageCacheSize 0); DICOM {len(files[0])} bytes each")
    print(f"{'':14} {'seconds':>8} {'/tags per s':>11} {'bytes from store':>17} {'per /tags':>10} "
          f"{'requests':>9} {'objects stored':>15}")
    for name, (seconds, fetched, requests) in results.items():
        print(f"{name:14} {seconds:8.2f} {arguments.instances / seconds:11.1f} {fetched:17d} "
              f"{fetched // arguments.instances:10d} {requests:9d} {objects[name]:15d}")
    ranged_result, whole_result = results["range reads"], results["whole reads"]
    print(f"\nwhole reads / range reads: bytes x{whole_result[1] / ranged_result[1]:.2f}, "
          f"time x{whole_result[0] / ranged_result[0]:.2f}")


if __name__ == "__main__":
    main()
