"""Benchmark: POST /move-storage of N instances file system -> S3 (moto), next to a plain boto3 copy.

Usage: .venv/bin/python bench/move.py [--instances 400] [--threads 8] [--orthanc 1.10.1|1.13]

Starts moto and Debian's Orthanc (hybrid mode WriteToFileSystem) on free ports, uploads N synthetic
instances, then in the same run:
  1. copies the same attachment files from the StorageDirectory to another bucket with boto3 and a
     thread pool of --threads (the baseline: no verification, no delete);
  2. moves them with a synchronous POST /move-storage (read, MD5 check, write, check, delete).
Prints instances per second for both and their ratio (target >= 0.7).

With ``--orthanc 1.13`` (the forky chroot of scripts/newest-orthanc.sh) the move runs twice, on two fresh
Orthancs: the plugin reaching Orthanc's REST API over loopback HTTP (``Python.AllowThreads`` off, the
default) and in process (``AllowThreads`` on), and prints the cost of the loopback path as a ratio.
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
from support.orthanc import HOST_VERSION, NEWEST_VERSION, Orthanc  # noqa: E402
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


def move_once(backend, args, version, allow_threads=None):
    """Uploads, copies with boto3, moves; returns (copy seconds, move seconds, planning line, files)."""
    settings = backend.settings(HybridMode="WriteToFileSystem")
    if allow_threads is not None:
        settings["Python"] = {"AllowThreads": allow_threads}
    orthanc = Orthanc(tempfile.mkdtemp(prefix="bench-move-"), settings, version=version).start()
    try:
        for data in make_instances(args.instances, studies=4, series_per_study=2):
            orthanc.upload(data)
        root = orthanc.host_path(orthanc.config["StorageDirectory"])
        paths = storage_files(root)
        baseline_bucket = f"{backend.bucket}-baseline-{time.monotonic_ns()}"
        backend.client.create_bucket(Bucket=baseline_bucket)
        started = time.perf_counter()
        plain_copy(backend.client, baseline_bucket, paths, args.threads)
        copy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        content = orthanc.post_json("/move-storage", {"Resources": orthanc.get_json("/studies"),
                                                      "TargetStorage": "object-storage"})
        move_seconds = time.perf_counter() - started
        assert content["MovedFiles"] == len(paths) and content["FailedFiles"] == 0, content
        assert storage_files(root) == []
        planned = [line for line in orthanc.log().splitlines() if "planned in" in line]
        return copy_seconds, move_seconds, planned[-1].split("orthanc-objstore: ")[-1] if planned else "?", paths
    finally:
        orthanc.stop()
        orthanc.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8, help="threads of the plain copy (the plugin uses 8)")
    parser.add_argument("--orthanc", choices=(HOST_VERSION, NEWEST_VERSION), default=HOST_VERSION)
    args = parser.parse_args()

    moto = MotoServer()
    backend = S3Backend(moto)
    try:
        modes = [("loopback HTTP", None)] + ([("in process", True)] if args.orthanc == NEWEST_VERSION else [])
        rates = {}
        for name, allow_threads in modes:
            copy_seconds, move_seconds, planned, paths = move_once(backend, args, args.orthanc, allow_threads)
            copy_rate, move_rate = args.instances / copy_seconds, args.instances / move_seconds
            rates[name] = move_rate
            print(f"Orthanc {args.orthanc}, Orthanc's REST API {name}: {len(paths)} files for {args.instances} instances")
            print(f"  plain boto3 copy ({args.threads} threads): {copy_seconds:6.2f} s  {copy_rate:7.1f} instances/s")
            print(f"  POST /move-storage:            {move_seconds:6.2f} s  {move_rate:7.1f} instances/s")
            print(f"  ratio move / plain copy: {move_rate / copy_rate:.2f} (target >= 0.7)")
            print(f"  plugin: {planned}")
        if len(rates) == 2:
            print(f"move rate, loopback HTTP / in process: {rates['loopback HTTP'] / rates['in process']:.2f}")
    finally:
        backend.close()
        moto.stop()


if __name__ == "__main__":
    main()
