"""Benchmark: this plugin vs a naive plugin on the same SDK vs Orthanc's own file storage, in one run.

For each provider (S3 on moto, Azure on Azurite, GCS on fake-gcs-server): same server, same workload (upload N distinct instances over REST, read each back with the
storage cache off, delete them), at 1 and 8 concurrent clients. Prints throughputs and the ratios
this-plugin / naive-plugin, plus the plugin's start-up time (import + configuration) from its log.
Run by hand (numbers depend on the machine; only the ratios of one run mean something):

    .venv/bin/python bench/run.py [--instances 400] [--rounds 2] [--providers s3,azure,gcs]
"""

import argparse
import concurrent.futures
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
from support.dicom import make_instances  # noqa: E402
from support.orthanc import Orthanc  # noqa: E402
from support.servers import AzuriteServer, FakeGcsServer, MotoServer  # noqa: E402


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


def _naive_plugin(workdir):
    naive_dir = os.path.join(workdir, "naive")
    os.makedirs(naive_dir, exist_ok=True)
    shutil.copy(os.path.join(HERE, "naive_plugin.py"), naive_dir)
    return os.path.join(naive_dir, "naive_plugin.py")


def _s3(workdir):
    """(server, this plugin's section, the naive plugin's section, Orthanc's extra environment)."""
    moto = MotoServer()
    client = moto.client()
    for bucket in ("bench-plugin", "bench-naive"):
        client.create_bucket(Bucket=bucket)
    return moto, {"AwsS3Storage": {
        "BucketName": "bench-plugin", "Region": "us-east-1", "Endpoint": moto.url, "VirtualAddressing": False,
        "AccessKey": "bench", "SecretKey": "bench"}}, {"NaiveS3": {"Bucket": "bench-naive", "Endpoint": moto.url}}, {}


def _azure(workdir):
    location = os.path.join(workdir, "azurite")
    os.makedirs(location)
    azurite = AzuriteServer(location)
    for container in ("bench-plugin", "bench-naive"):
        azurite.client().create_container(container)
    connection_string = azurite.connection_string()
    return azurite, {"AzureBlobStorage": {"ConnectionString": connection_string, "ContainerName": "bench-plugin"}}, \
        {"NaiveAzure": {"ConnectionString": connection_string, "Container": "bench-naive"}}, {}


def _gcs(workdir):
    server = FakeGcsServer()
    for bucket in ("bench-plugin", "bench-naive"):
        server.client().create_bucket(bucket)
    return server, {"GoogleCloudStorage": {"BucketName": "bench-plugin"}}, \
        {"NaiveGcs": {"Bucket": "bench-naive", "Endpoint": server.url}}, {"STORAGE_EMULATOR_HOST": server.url}


PROVIDERS = {"s3": _s3, "azure": _azure, "gcs": _gcs}


def setups(provider, workdir):
    """The server, and the three Orthanc set-ups compared on it: {name: (settings, environment)}."""
    server, plugin_section, naive_section, environment = PROVIDERS[provider](workdir)
    site_packages = os.path.dirname(os.path.dirname(os.path.abspath(pydicom.__file__)))
    for section in naive_section.values():
        section["SitePackages"] = site_packages
    common = {"MaximumStorageCacheSize": 0}
    return server, {
        "this plugin": ({**common, **plugin_section}, environment),
        "naive plugin": ({**common, "PythonScript": _naive_plugin(workdir), **naive_section}, environment),
        "file storage": ({**common, "Plugins": []}, {}),
    }


def start_up_seconds(log):
    found = re.findall(r"started in ([0-9.]+) s", log)
    return float(found[-1]) if found else None


def run_provider(provider, files, arguments, workdir):
    """{(setup, clients): [workload seconds per round]} and the plugin's start-up times, on one server."""
    results, start_ups = {}, []
    server, configurations = setups(provider, os.path.join(workdir, provider))
    try:
        for round_number in range(arguments.rounds):
            for clients in map(int, arguments.clients.split(",")):
                for name, (settings, environment) in configurations.items():
                    folder = os.path.join(workdir, provider, f"{name.replace(' ', '-')}-{clients}-{round_number}")
                    orthanc = Orthanc(folder, settings, env=environment).start()
                    try:
                        if name == "this plugin":
                            start_ups.append(start_up_seconds(orthanc.log()))
                        results.setdefault((name, clients), []).append(workload(orthanc, files, clients))
                    finally:
                        orthanc.stop()
    finally:
        server.stop()
    return results, start_ups


def report(provider, results, start_ups, arguments, size):
    print(f"\n[{provider}] {arguments.instances} instances of {size} bytes, {arguments.rounds} round(s), "
          "medians; throughput in instances/s")
    print(f"{'setup':14} {'clients':>7} {'upload':>8} {'read':>8} {'delete':>8} {'all':>8}")
    throughput = {}
    for (name, clients), runs in results.items():
        row = {phase: statistics.median(arguments.instances / run[phase] for run in runs)
               for phase in ("upload", "read", "delete")}
        row["all"] = statistics.median(3 * arguments.instances / sum(run.values()) for run in runs)
        throughput[(name, clients)] = row
        print(f"{name:14} {clients:7} " + " ".join(f"{row[p]:8.1f}" for p in ("upload", "read", "delete", "all")))
    print(f"[{provider}] ratios (this plugin / naive plugin; target >= 0.95) and (this plugin / file storage):")
    for clients in map(int, arguments.clients.split(",")):
        ours, naive, files_row = (throughput[(n, clients)] for n in ("this plugin", "naive plugin", "file storage"))
        print(f"  {clients} client(s): vs naive " + ", ".join(f"{p} {ours[p] / naive[p]:.2f}" for p in ours)
              + " | vs file storage " + ", ".join(f"{p} {ours[p] / files_row[p]:.2f}" for p in ours))
    valid = [s for s in start_ups if s is not None]
    if valid:
        print(f"[{provider}] plugin start-up (import + configuration + bucket check): median "
              f"{statistics.median(valid):.3f} s, max {max(valid):.3f} s (target < 1.5 s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2, help="repetitions, interleaved; medians are reported")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--providers", default="s3,azure,gcs", help=f"among {','.join(PROVIDERS)}")
    arguments = parser.parse_args()
    files = make_instances(arguments.instances)  # CT_small with distinct UIDs, about 39 KB each
    workdir = tempfile.mkdtemp(prefix="objstore-bench-")
    try:
        for provider in arguments.providers.split(","):
            results, start_ups = run_provider(provider, files, arguments, workdir)
            report(provider, results, start_ups, arguments, len(files[0]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
