"""Benchmark: DELETE /studies/{id} of a large study on Orthanc's own storage, the naive plugin and this plugin
(deferred deletions, the default), at 0 and 20 ms added to each object-store request; and the drain's
throughput (objects/s) against a raw parallel SDK delete loop (boto3 ``delete_object``, same threads).

S3 on moto behind the latency proxy of tests/support (``FaultProxy`` in ``slow`` mode: each request waits
``delay`` before it is forwarded). Each round starts each set-up afresh (a new Orthanc 1.10.1, the study
uploaded with 8 clients), in an order that alternates between rounds; medians of the rounds. Only the
ratios of one run mean something. Run by hand:

    .venv/bin/python bench/delete.py [--instances 300] [--rounds 5] [--latencies 0,20]
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
sys.path.insert(0, HERE)

from run import _naive_plugin  # noqa: E402
from support.dicom import make_instances  # noqa: E402
from support.orthanc import Orthanc  # noqa: E402
from support.servers import FaultProxy, MotoServer  # noqa: E402

import pydicom  # noqa: E402

SETUPS = ("file storage", "naive plugin", "this plugin")
THREADS = 4  # the drainer's default DelayedDeletionThreads, and the raw loop's threads


def configurations(proxy_url, workdir):
    site_packages = os.path.dirname(os.path.dirname(os.path.abspath(pydicom.__file__)))
    common = {"MaximumStorageCacheSize": 0}
    return {
        "file storage": {**common, "Plugins": []},
        "naive plugin": {**common, "PythonScript": _naive_plugin(workdir),
                         "NaiveS3": {"Bucket": "bench-naive", "Endpoint": proxy_url, "SitePackages": site_packages}},
        "this plugin": {**common, "AwsS3Storage": {
            "BucketName": "bench-plugin", "Region": "us-east-1", "Endpoint": proxy_url, "VirtualAddressing": False,
            "AccessKey": "bench", "SecretKey": "bench"}},
    }


def one_run(name, settings, files, folder):
    """(seconds of the DELETE, seconds until the bucket has it all deleted or None, objects deleted)."""
    orthanc = Orthanc(folder, settings).start()
    # The naive plugin's DELETE holds Orthanc's index for the whole study (seconds at 20 ms), which the tests'
    # watchdog would report as a freeze: here that wait is what is measured.
    orthanc._stop_watching()
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda data: orthanc.upload(data)["ID"], files))
        study = orthanc.get_json(f"/instances/{ids[0]}/study")["ID"]
        queued = None
        started = time.perf_counter()
        orthanc.delete(f"/studies/{study}", drained=False)
        answered = time.perf_counter() - started
        drained = None
        if name == "this plugin":
            while True:
                status = orthanc.deletions()
                queued = max(queued or 0, status["Deleted"] + status["Pending"])
                if status["Pending"] == 0:
                    drained = time.perf_counter() - started
                    break
                time.sleep(0.005)
        assert orthanc.get_json("/studies") == [], "the study is still there"
        return answered, drained, queued
    finally:
        orthanc.stop()
        shutil.rmtree(folder, ignore_errors=True)


def raw_delete_loop(moto, proxy_url, count):
    """Seconds for ``count`` boto3 delete_object calls through the proxy, THREADS at a time."""
    import boto3
    direct = moto.client()
    through = boto3.client("s3", endpoint_url=proxy_url, region_name="us-east-1", aws_access_key_id="bench",
                           aws_secret_access_key="bench", config=boto3.session.Config(
                               s3={"addressing_style": "path"}, max_pool_connections=THREADS))
    keys = [f"raw/{uuid.uuid4()}.dcm" for _ in range(count)]
    for key in keys:
        direct.put_object(Bucket="bench-plugin", Key=key, Body=b"x")
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda key: through.delete_object(Bucket="bench-plugin", Key=key), keys))
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latencies", default="0,20", help="milliseconds added per store request")
    arguments = parser.parse_args()
    files = make_instances(arguments.instances, seed="1.2.826.0.1.3680043.8.498.99")
    moto = MotoServer()
    client = moto.client()
    for bucket in ("bench-plugin", "bench-naive"):
        client.create_bucket(Bucket=bucket)
    proxy = FaultProxy(moto.port)
    workdir = tempfile.mkdtemp(prefix="bench-delete-")
    results: dict = {}
    try:
        for latency in map(int, arguments.latencies.split(",")):
            proxy.mode, proxy.delay = ("slow", latency / 1000) if latency else ("pass", 0.0)
            settings = configurations(proxy.url, workdir)
            for round_number in range(arguments.rounds):
                order = SETUPS if round_number % 2 == 0 else tuple(reversed(SETUPS))
                for name in order:
                    folder = os.path.join(workdir, f"{name.replace(' ', '-')}-{latency}-{round_number}")
                    results.setdefault((latency, name), []).append(one_run(name, settings[name], files, folder))
            objects = results[(latency, "this plugin")][0][2]
            results[(latency, "raw")] = [raw_delete_loop(moto, proxy.url, objects) for _ in range(arguments.rounds)]
    finally:
        proxy.close()
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, arguments)


def report(results, arguments):
    print(f"DELETE /studies/{{id}} of {arguments.instances} instances, Orthanc 1.10.1, S3 (moto), "
          f"medians of {arguments.rounds} rounds (alternating order)")
    print(f"{'latency':>8} {'file storage':>13} {'naive plugin':>13} {'this plugin':>12} "
          f"{'this/file':>10} {'naive/this':>11} {'drained in':>11} {'drain obj/s':>12} {'raw obj/s':>10} "
          f"{'drain/raw':>10}")
    for latency in map(int, arguments.latencies.split(",")):
        own, naive, ours = (statistics.median(run[0] for run in results[(latency, name)]) for name in SETUPS)
        runs = results[(latency, "this plugin")]
        drained = statistics.median(run[1] for run in runs)
        objects = runs[0][2]
        raw = statistics.median(results[(latency, "raw")])
        print(f"{latency:>6}ms {own:12.3f}s {naive:12.3f}s {ours:11.3f}s {ours / own:10.2f} {naive / ours:11.1f} "
              f"{drained:10.3f}s {objects / drained:12.0f} {objects / raw:10.0f} {raw / drained:10.1f}")
    print(f"objects per study in the bucket: {objects} (this plugin); the drain is timed from the DELETE to an "
          "empty queue; the raw loop is boto3 delete_object with "
          f"{THREADS} threads through the same proxy")


if __name__ == "__main__":
    main()
