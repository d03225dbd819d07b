"""Benchmark: adopting a lake of DICOM files vs copying it in, and disaster recovery from the plugin's own bucket.

S3 on moto (behind the tests' FaultProxy, ``--latency`` ms added to each request), Orthanc with this plugin,
in one run:

  adopt          POST /objstore/adopt {"Prefix": "lake/"}: the instances' DICOM attachments are the lake objects
  copy           a script that downloads each lake object with boto3 and POSTs it to /instances (4 threads,
                 the adopter's workers): Orthanc stores a copy of every file
  recovery       a new, empty index over the bucket an Orthanc filled: POST /objstore/adopt {"Prefix": "",
                 "TakeOwnership": true}

For each: the seconds, the instances per second, and the bytes it added to the bucket. Only the ratios of one
run mean something. Run by hand:

    .venv/bin/python bench/adopt.py [--instances 1000] [--latency 0] [--version 1.10.1]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from support.dicom import make_instances  # noqa: E402
from support.orthanc import Orthanc  # noqa: E402
from support.servers import FaultProxy, MotoServer  # noqa: E402

WORKERS = 4


def settings(proxy, bucket) -> dict:
    return {"AwsS3Storage": {"BucketName": bucket, "Region": "us-east-1", "Endpoint": proxy.url,
                             "VirtualAddressing": False, "AccessKey": "bench", "SecretKey": "bench"}}


def bucket_bytes(client, bucket, skip_prefix=None) -> int:
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            if skip_prefix is None or not item["Key"].startswith(skip_prefix):
                total += item["Size"]
    return total


def adopt(orthanc, body: dict) -> dict:
    """POST /objstore/adopt, waiting as long as it takes (a synchronous adoption of 10,000 objects takes minutes)."""
    return json.loads(orthanc.post("/objstore/adopt", json.dumps(body).encode(), timeout=3600))


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(arguments, workdir):
    moto = MotoServer()
    proxy = FaultProxy(moto.port)
    client = moto.client()
    files = make_instances(arguments.instances, studies=max(1, arguments.instances // 100),
                           seed="1.2.826.0.1.3680043.8.498.95")
    lake_bytes = sum(map(len, files))
    results = {}
    try:
        for setup in ("adopt", "copy"):
            bucket = f"bench-adopt-{setup}"
            client.create_bucket(Bucket=bucket)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda item: client.put_object(Bucket=bucket, Key=f"lake/{item[0]}.dcm", Body=item[1]),
                              enumerate(files)))
            orthanc = Orthanc(os.path.join(workdir, setup), settings(proxy, bucket), version=arguments.version)
            orthanc.start()
            proxy.mode, proxy.delay = "slow", arguments.latency / 1000
            try:
                if setup == "adopt":
                    summary = {}
                    seconds = timed(lambda: summary.update(adopt(orthanc, {"Prefix": "lake/"})))
                    assert summary["Adopted"] == len(files), summary
                else:
                    def copy(index):
                        body = client.get_object(Bucket=bucket, Key=f"lake/{index}.dcm")["Body"].read()
                        orthanc.upload(body)

                    seconds = timed(lambda: list(ThreadPoolExecutor(WORKERS).map(copy, range(len(files)))))
                assert len(orthanc.get_json("/instances")) == len(files)
            finally:
                proxy.mode, proxy.delay = "pass", 0.0
                orthanc.stop()
                orthanc.cleanup()
            results[setup] = (seconds, bucket_bytes(client, bucket, skip_prefix="lake/"))

        bucket = "bench-adopt-recovery"
        client.create_bucket(Bucket=bucket)
        lost = Orthanc(os.path.join(workdir, "lost"), settings(proxy, bucket), version=arguments.version)
        lost.start()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lost.upload, files))
        lost.stop()
        lost.cleanup()
        before = bucket_bytes(client, bucket)
        rebuilt = Orthanc(os.path.join(workdir, "rebuilt"), settings(proxy, bucket), version=arguments.version)
        rebuilt.start()
        proxy.mode, proxy.delay = "slow", arguments.latency / 1000
        try:
            summary = {}
            seconds = timed(lambda: summary.update(adopt(rebuilt, {"Prefix": "", "TakeOwnership": True})))
            assert summary["Adopted"] == len(files) and not summary["Failed"], summary
        finally:
            proxy.mode, proxy.delay = "pass", 0.0
            rebuilt.stop()
            rebuilt.cleanup()
        results["recovery"] = (seconds, bucket_bytes(client, bucket) - before)
    finally:
        proxy.close()
        moto.stop()
    return results, lake_bytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.0, help="ms added to each store request")
    parser.add_argument("--version", default="1.10.1")
    arguments = parser.parse_args()
    results, lake_bytes = run(arguments, tempfile.mkdtemp(prefix="objstore-adopt-bench-"))
    print(f"\n[Orthanc {arguments.version}] {arguments.instances} instances, {lake_bytes / 2**20:.1f} MB, "
          f"{arguments.latency:.0f} ms per store request")
    print(f"{'set-up':10} {'seconds':>9} {'instances/s':>12} {'MB added to the bucket':>24}")
    for setup, (seconds, added) in results.items():
        print(f"{setup:10} {seconds:9.2f} {arguments.instances / seconds:12.1f} {added / 2**20:24.2f}")
    adopt, copy = results["adopt"][0], results["copy"][0]
    print(f"copy / adopt time: {copy / adopt:.2f}x")


if __name__ == "__main__":
    main()
