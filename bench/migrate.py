"""Migrate throughput: ``orthanc-objstore migrate`` vs a plain parallel boto3 copy of the same files, same moto, same run.

An Orthanc folder is built by hand (tests/support/orthanc_files.py: StorageDirectory files plus a SQLite
index); the naive copy reads each file and calls put_object under the plugin's name, with the same
number of threads and connections; migrate does everything it promises on top (index read, MD5
check, existence check for resuming, size check after writing). Rounds alternate; medians are
reported as a ratio migrate / naive (goal >= 0.8). Run by hand:

    .venv/bin/python bench/migrate.py [--files 400] [--size 131072] [--workers 16] [--rounds 3]
"""

import argparse
import base64
import concurrent.futures
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time

import botocore.config

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from support.backends import S3Backend  # noqa: E402
from support.orthanc_files import OrthancFolder  # noqa: E402
from support.servers import MotoServer  # noqa: E402

from orthanc_objstore.offline import cli  # noqa: E402


def naive_copy(moto, orthanc, bucket, workers) -> float:
    import boto3
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test",
                          config=botocore.config.Config(s3={"addressing_style": "path"},
                                                        max_pool_connections=workers))
    names = dict(zip(sorted(orthanc.files), orthanc.names()))  # names() is sorted by uuid too

    def copy(uuid_):
        with open(orthanc.path(uuid_), "rb") as file:
            client.put_object(Bucket=bucket, Key=names[uuid_], Body=file.read())

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(copy, orthanc.files))
    return time.perf_counter() - started


def migrate(config, workers) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        status = cli.main(["migrate", "--config", config, "--workers", str(workers)])
    elapsed = time.perf_counter() - started
    assert status == 0 and " copied" in out.getvalue(), out.getvalue()
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=400, help="DICOM files (each with a small header file)")
    parser.add_argument("--size", type=int, default=131072, help="bytes per DICOM file")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="objstore-bench-migrate-")
    moto = MotoServer()
    try:
        orthanc = OrthancFolder(workdir, instances=arguments.files, dicom_size=arguments.size)
        total = sum(len(stored) for _, stored in orthanc.files.values())
        key_path = os.path.join(workdir, "master.key")
        with open(key_path, "wb") as file:
            file.write(base64.b64encode(os.urandom(32)))
        times = {"naive": [], "migrate": [], "migrate A1": []}
        for _ in range(arguments.rounds):
            for name in times:
                backend = S3Backend(moto)  # a fresh bucket each time: every file is copied
                try:
                    if name == "naive":
                        times[name].append(naive_copy(moto, orthanc, backend.bucket, arguments.workers))
                        continue
                    options = {"Endpoint": moto.url}
                    if name == "migrate A1":
                        options["StorageEncryption"] = {"MasterKey": [1, key_path]}
                    times[name].append(migrate(orthanc.config(backend, **options), arguments.workers))
                finally:
                    backend.close()
        print(f"{len(orthanc.files)} files, {total / 2**20:.1f} MiB, {arguments.workers} workers, "
              f"median of {arguments.rounds} rounds (moto on 127.0.0.1)")
        naive = statistics.median(times["naive"])
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:11} {median:6.2f} s  {len(orthanc.files) / median:7.1f} files/s  "
                  f"{total / median / 2**20:6.1f} MiB/s  ratio {naive / median:4.2f}")
    finally:
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
