"""Benchmark: this plugin vs a naive boto3 plugin vs Orthanc's own file storage, in one run.

Same moto server, same workload (upload N distinct instances over REST, read each back with the
storage cache off, delete them), at 1 and 8 concurrent clients. Prints throughputs and the ratios
this-plugin / naive-plugin, plus the plugin's start-up time (import + configuration) from its log.
Run by hand (numbers depend on the machine; only the ratios of one run mean something):

    .venv/bin/python bench/run.py [--instances 400] [--rounds 2]
"""

import argparse
import concurrent.futures
import copy
import io
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import pydicom  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from support.orthanc import Orthanc  # noqa: E402
from support.servers import MotoServer  # noqa: E402


def make_instances(count):
    """``count`` distinct DICOM files (CT_small with new UIDs), about 39 KB each."""
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    study, series = generate_uid(), generate_uid()
    files = []
    for _ in range(count):
        dataset = copy.deepcopy(base)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append(buffer.getvalue())
    return files


def timed(function, items, clients):
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(function, items))
    return time.perf_counter() - started, results


def workload(orthanc, files, clients):
    """Seconds for: upload all, read all (/file), delete all."""
    upload_time, ids = timed(lambda data: orthanc.upload(data)["ID"], files, clients)
    read_time, sizes = timed(lambda i: len(orthanc.get(f"/instances/{i}/file")), ids, clients)
    assert sizes == [len(data) for data in files], "a read returned the wrong size"
    delete_time, _ = timed(lambda i: orthanc.delete(f"/instances/{i}"), ids, clients)
    return {"upload": upload_time, "read": read_time, "delete": delete_time}


def setups(moto, workdir):
    client = moto.client()
    for bucket in ("bench-plugin", "bench-naive"):
        client.create_bucket(Bucket=bucket)
    site_packages = os.path.dirname(os.path.dirname(os.path.abspath(pydicom.__file__)))
    naive_dir = os.path.join(workdir, "naive")
    os.makedirs(naive_dir, exist_ok=True)
    shutil.copy(os.path.join(HERE, "naive_plugin.py"), naive_dir)
    common = {"MaximumStorageCacheSize": 0}
    return {
        "this plugin": {**common, "AwsS3Storage": {
            "BucketName": "bench-plugin", "Region": "us-east-1", "Endpoint": moto.url, "VirtualAddressing": False,
            "AccessKey": "bench", "SecretKey": "bench"}},
        "naive plugin": {**common, "PythonScript": os.path.join(naive_dir, "naive_plugin.py"),
                         "NaiveS3": {"Bucket": "bench-naive", "Endpoint": moto.url, "SitePackages": site_packages}},
        "file storage": {**common, "Plugins": []},
    }


def start_up_seconds(log):
    found = re.findall(r"started in ([0-9.]+) s", log)
    return float(found[-1]) if found else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2, help="repetitions, interleaved; medians are reported")
    parser.add_argument("--clients", default="1,8")
    arguments = parser.parse_args()
    files = make_instances(arguments.instances)
    workdir = tempfile.mkdtemp(prefix="objstore-bench-")
    moto = MotoServer()
    results = {}  # (setup, clients) -> list of {"upload": s, ...}
    start_ups = []
    try:
        configurations = setups(moto, workdir)
        for round_number in range(arguments.rounds):
            for clients in map(int, arguments.clients.split(",")):
                for name, settings in configurations.items():
                    orthanc = Orthanc(os.path.join(workdir, f"{name.replace(' ', '-')}-{clients}-{round_number}"),
                                      settings).start()
                    try:
                        if name == "this plugin":
                            start_ups.append(start_up_seconds(orthanc.log()))
                        results.setdefault((name, clients), []).append(workload(orthanc, files, clients))
                    finally:
                        orthanc.stop()
    finally:
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{arguments.instances} instances of {len(files[0])} bytes, {arguments.rounds} round(s), medians; "
          "throughput in instances/s")
    print(f"{'setup':14} {'clients':>7} {'upload':>8} {'read':>8} {'delete':>8} {'all':>8}")
    throughput = {}
    for (name, clients), runs in results.items():
        row = {phase: statistics.median(arguments.instances / run[phase] for run in runs)
               for phase in ("upload", "read", "delete")}
        row["all"] = statistics.median(3 * arguments.instances / sum(run.values()) for run in runs)
        throughput[(name, clients)] = row
        print(f"{name:14} {clients:7} " + " ".join(f"{row[p]:8.1f}" for p in ("upload", "read", "delete", "all")))
    print("\nratios (this plugin / naive plugin; target >= 0.95) and (this plugin / file storage):")
    for clients in map(int, arguments.clients.split(",")):
        ours, naive, files_row = (throughput[(n, clients)] for n in ("this plugin", "naive plugin", "file storage"))
        print(f"  {clients} client(s): vs naive " + ", ".join(f"{p} {ours[p] / naive[p]:.2f}" for p in ours)
              + " | vs file storage " + ", ".join(f"{p} {ours[p] / files_row[p]:.2f}" for p in ours))
    valid = [s for s in start_ups if s is not None]
    if valid:
        print(f"\nplugin start-up (import + configuration + bucket check): median {statistics.median(valid):.3f} s, "
              f"max {max(valid):.3f} s (target < 1.5 s)")


if __name__ == "__main__":
    main()
