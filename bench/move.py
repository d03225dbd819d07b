"""Benchmark: POST /move-storage of N instances file system -> S3 (moto), next to a plain boto3 copy.

Usage: .venv/bin/python bench/move.py [--instances 400] [--threads 8]

Starts moto and Debian's Orthanc (hybrid mode WriteToFileSystem) on free ports, uploads N synthetic
instances, then in the same run:
  1. copies the same attachment files from the StorageDirectory to another bucket with boto3 and a
     thread pool of --threads (the baseline: no verification, no delete);
  2. moves them with a synchronous POST /move-storage (read, MD5 check, write, check, delete).
Prints instances per second for both and their ratio (target >= 0.7).
"""

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from support.backends import S3Backend  # noqa: E402
from support.dicom import make_instances  # noqa: E402
from support.orthanc import Orthanc  # noqa: E402
from support.servers import MotoServer  # noqa: E402


def storage_files(root):
    return [os.path.join(folder, name) for folder, subfolders, names in os.walk(root)
            for name in names if not name.startswith(".") and "objstore-jobs" not in folder]


def plain_copy(client, bucket, paths, threads):
    def copy(path):
        with open(path, "rb") as file:
            client.put_object(Bucket=bucket, Key=os.path.basename(path), Body=file.read())

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(copy, paths))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8, help="threads of the plain copy (the plugin uses 8)")
    args = parser.parse_args()

    moto = MotoServer()
    backend = S3Backend(moto)
    workdir = tempfile.mkdtemp(prefix="bench-move-")
    orthanc = Orthanc(workdir, backend.settings(HybridMode="WriteToFileSystem")).start()
    try:
        print(f"uploading {args.instances} instances...", flush=True)
        for data in make_instances(args.instances, studies=4, series_per_study=2):
            orthanc.upload(data)
        paths = storage_files(orthanc.config["StorageDirectory"])
        total_bytes = sum(os.path.getsize(path) for path in paths)

        baseline_bucket = backend.bucket + "-baseline"
        backend.client.create_bucket(Bucket=baseline_bucket)
        started = time.perf_counter()
        plain_copy(backend.client, baseline_bucket, paths, args.threads)
        copy_seconds = time.perf_counter() - started

        started = time.perf_counter()
        content = orthanc.post_json("/move-storage", {"Resources": orthanc.get_json("/studies"),
                                                      "TargetStorage": "object-storage"})
        move_seconds = time.perf_counter() - started
        assert content["MovedFiles"] == len(paths) and content["FailedFiles"] == 0, content
        assert storage_files(orthanc.config["StorageDirectory"]) == []

        copy_rate = args.instances / copy_seconds
        move_rate = args.instances / move_seconds
        print(f"files: {len(paths)} ({total_bytes / 1e6:.1f} MB) for {args.instances} instances")
        print(f"plain boto3 copy ({args.threads} threads): {copy_seconds:6.2f} s  {copy_rate:7.1f} instances/s")
        print(f"POST /move-storage:            {move_seconds:6.2f} s  {move_rate:7.1f} instances/s")
        print(f"ratio move / plain copy: {move_rate / copy_rate:.2f} (target >= 0.7)")
        planned = [line for line in orthanc.log().splitlines() if "planned in" in line]
        print("plugin:", planned[-1].split("orthanc-objstore: ")[-1] if planned else "?")
    finally:
        orthanc.stop()
        backend.close()
        moto.stop()


if __name__ == "__main__":
    main()
