"""Benchmark: this plugin vs a naive plugin on the same SDK vs Orthanc's own file storage, in one run.

For each provider (S3 on moto, Azure on Azurite, GCS on fake-gcs-server): same server, same workload
(upload N distinct instances over REST, read each back with the storage cache off, delete them), at 1
and 8 concurrent clients. Every measurement starts a fresh Orthanc and runs a short untimed workload on it
first (its first requests, the plugin's first connections); a whole warm-up round comes before the
measured rounds, whose order of the three set-ups changes every round (bench/compare.py). Prints the
medians' throughputs and the ratios this-plugin / naive-plugin and this-plugin / file storage (with
the range of the rounds' own ratios), plus the plugin's start-up time (import + configuration) from its log.
Run by hand (numbers depend on the machine; only the ratios of one run mean something):

    .venv/bin/python bench/run.py [--instances 400] [--rounds 6] [--clients 1,8] [--providers s3,azure,gcs]
"""

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import compare  # noqa: E402
import pydicom  # noqa: E402
from support.dicom import make_instances  # noqa: E402
from support.orthanc import Orthanc  # noqa: E402
from support.servers import AzuriteServer, FakeGcsServer, MotoServer  # noqa: E402

WARM_UP_INSTANCES = 20  # the untimed workload on each fresh Orthanc before the measured one
PHASES = ("upload", "read", "delete")


def workload(orthanc, files, clients):
    """Seconds for: upload all, read all (/file), delete all."""
    upload_time, ids = compare.pooled(lambda data: orthanc.upload(data)["ID"], files, clients)
    read_time, sizes = compare.pooled(lambda i: len(orthanc.get(f"/instances/{i}/file")), ids, clients)
    assert sizes == [len(data) for data in files], "a read returned the wrong size"
    delete_time, _ = compare.pooled(lambda i: orthanc.delete(f"/instances/{i}"), ids, clients)
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
    """{clients: {set-up: [workload seconds per measured round]}} and the plugin's start-up times, on one server."""
    results, start_ups = {}, []
    server, configurations = setups(provider, os.path.join(workdir, provider))
    try:
        for clients in map(int, arguments.clients.split(",")):
            def measure(name, round_number, clients=clients):
                settings, environment = configurations[name]
                folder = os.path.join(workdir, provider, f"{name.replace(' ', '-')}-{clients}-{round_number}")
                orthanc = Orthanc(folder, settings, env=environment).start()
                try:
                    if name == "this plugin" and round_number >= 0:
                        start_ups.append(start_up_seconds(orthanc.log()))
                    workload(orthanc, files[:WARM_UP_INSTANCES], clients)
                    return workload(orthanc, files, clients) if round_number >= 0 else None
                finally:
                    orthanc.stop()
                    shutil.rmtree(folder, ignore_errors=True)

            results[clients] = compare.run_rounds(list(configurations), measure, arguments.rounds)
    finally:
        server.stop()
    return results, start_ups


def throughputs(runs, instances):
    """Instances per second of each phase, and of the three together ("all"), for each round."""
    return [{**{phase: instances / run[phase] for phase in PHASES}, "all": 3 * instances / sum(run.values())}
            for run in runs]


def report(provider, results, start_ups, arguments, size):
    print(f"\n[{provider}] {arguments.instances} instances of {size} bytes; {compare.describe(arguments.rounds)}; "
          "throughput in instances/s")
    rows, ratios = [], []
    for clients, by_setup in results.items():
        rates = {name: throughputs(runs, arguments.instances) for name, runs in by_setup.items()}
        median = compare.medians(rates)
        for name in by_setup:
            rows.append([name, clients, *(median[name][cell] for cell in (*PHASES, "all"))])
        for baseline in ("naive plugin", "file storage"):
            cells = []
            for cell in (*PHASES, "all"):
                per_round = compare.round_ratios(rates["this plugin"], rates[baseline], cell)
                cells.append(f"{median['this plugin'][cell] / median[baseline][cell]:.2f} "
                             f"({compare.spread(per_round)})")
            ratios.append([f"this plugin / {baseline}", clients, *cells])
    print(compare.table(["set-up", "clients", *PHASES, "all"], rows))
    print(f"[{provider}] ratios of the medians (this plugin / naive plugin: target >= 0.95), with the range "
          "of the rounds' own ratios:")
    print(compare.table(["ratio", "clients", *PHASES, "all"], ratios))
    valid = [s for s in start_ups if s is not None]
    if valid:
        print(f"[{provider}] plugin start-up (import + configuration + bucket check): median "
              f"{statistics.median(valid):.3f} s, max {max(valid):.3f} s (target < 1.5 s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=400)
    compare.add_rounds_option(parser, default=6, what=" (6: every order of the three set-ups once)")
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
