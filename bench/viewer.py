"""Benchmark: a viewer opening a study Orthanc has never read, own storage vs naive plugin vs this plugin, in one run.

The open is what OHIF asks through DICOMweb: QIDO for the study, its series list, the series
metadata, then every frame with 6 requests in parallel (as a browser does). Workloads: 150 and 500
CT-like instances of about 131 KB (256x256 16-bit random pixels, so nothing compresses), and one
20 MB multi-frame instance (40 frames). Set-ups, each with the default configuration:

  own storage    Orthanc's file storage on the local disk, no added latency
  naive plugin   bench/naive_plugin.py (boto3, one request per read) on moto, 20 ms per store request
  this plugin    orthanc-objstore on moto, 20 ms per store request (ReadCache and Prefetch at their defaults)

The latency is added by the tests' fault proxy in front of moto. The study is uploaded once per
set-up; each round then restarts Orthanc (a fresh process on the same index: nothing cached
anywhere, as when a second Orthanc shares the index) and times one open. Set-ups alternate within
a round and their order is reversed every other round; medians of the rounds are reported, with the
ratios of the issue (this plugin / own storage, naive plugin / this plugin). Needs the chroot of
scripts/newest-orthanc.sh for 1.13. Run by hand (only the ratios of one run mean something):

    .venv/bin/python bench/viewer.py [--versions 1.10.1,1.13] [--rounds 5] [--workloads 150,500,multiframe]
"""

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import pydicom  # noqa: E402
from support.dicom import large_instance  # noqa: E402
from support.orthanc import DICOMWEB_PLUGIN, DICOMWEB_SETTINGS, NEWEST_VERSION, PYTHON_PLUGIN, Orthanc  # noqa: E402
from support.servers import FaultProxy, MotoServer  # noqa: E402

LATENCY = 0.02
SEED = "1.2.826.0.1.3680043.8.498.61"
SETUPS = ("own storage", "naive plugin", "this plugin")


def ct_like(count: int, tag: str) -> list[bytes]:
    """``count`` instances of one series, about 131 KB each."""
    from pydicom.data import get_testdata_file

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    files = []
    for number in range(count):
        dataset = base.copy()
        dataset.StudyInstanceUID = f"{SEED}.{tag}"
        dataset.SeriesInstanceUID = f"{SEED}.{tag}.1"
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = f"{SEED}.{tag}.1.{number + 1}"
        dataset.InstanceNumber = number + 1
        dataset.Rows = dataset.Columns = 256
        dataset.PixelData = os.urandom(256 * 256 * 2)
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append(buffer.getvalue())
    return files


def workload(name: str) -> list[bytes]:
    if name == "multiframe":
        return [large_instance(20 * 2**20, "9")]
    return ct_like(int(name), name)


def frame_of(answer: bytes) -> bytes:
    body = answer.split(b"\r\n\r\n", 1)[1]
    return body[:body.rindex(b"\r\n--")]


def open_study(orthanc, study_uid: str) -> int:
    """One viewer open; returns the frames received."""
    assert len(orthanc.get_json(f"/dicom-web/studies?StudyInstanceUID={study_uid}")) == 1
    series = [item["0020000E"]["Value"][0] for item in orthanc.get_json(f"/dicom-web/studies/{study_uid}/series")]
    frames = []
    for series_uid in series:
        metadata = orthanc.get_json(f"/dicom-web/studies/{study_uid}/series/{series_uid}/metadata")
        base = f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances"
        for item in metadata:
            count = int(item.get("00280008", {}).get("Value", [1])[0])
            frames += [f"{base}/{item['00080018']['Value'][0]}/frames/{n + 1}" for n in range(count)]
    with ThreadPoolExecutor(6) as pool:
        sizes = list(pool.map(lambda uri: len(frame_of(orthanc.get(uri))), frames))
    assert sizes and min(sizes) > 1000, "a frame is missing"
    return len(sizes)


def naive_script(orthanc) -> str:
    with open(os.path.join(HERE, "naive_plugin.py"), "rb") as file:
        return orthanc.write_file("naive_plugin.py", file.read())


def make_orthanc(setup, version, folder, moto, proxy, bucket) -> Orthanc:
    settings = {**DICOMWEB_SETTINGS, "Plugins": [PYTHON_PLUGIN, DICOMWEB_PLUGIN]}
    if setup == "this plugin":
        settings["AwsS3Storage"] = {"BucketName": bucket, "Region": "us-east-1", "Endpoint": proxy.url,
                                    "VirtualAddressing": False, "AccessKey": "bench", "SecretKey": "bench"}
    orthanc = Orthanc(folder, settings, version=version)
    if setup == "own storage":
        orthanc.config["Plugins"] = [DICOMWEB_PLUGIN]
        orthanc.config.pop("PythonScript")
    elif setup == "naive plugin":
        site = ("/usr/lib/python3/dist-packages" if version == NEWEST_VERSION
                else os.path.dirname(os.path.dirname(os.path.abspath(pydicom.__file__))))
        orthanc.config["PythonScript"] = naive_script(orthanc)
        orthanc.config["NaiveS3"] = {"Bucket": bucket, "Endpoint": proxy.url, "SitePackages": site}
    orthanc.config.pop("MaximumStorageCacheSize")  # Orthanc's default (128 MB), as deployed
    return orthanc


def run_version(version, arguments, workdir):
    moto = MotoServer()
    proxy = FaultProxy(moto.port)
    results = {}
    try:
        for name in arguments.workloads.split(","):
            files = workload(name)
            study_uid = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True).StudyInstanceUID
            servers = {}
            for setup in SETUPS:
                bucket = f"viewer-{name}-{setup.split()[0]}".lower()
                moto.client().create_bucket(Bucket=bucket)
                folder = os.path.join(workdir, version, name, setup.replace(" ", "-"))
                servers[setup] = orthanc = make_orthanc(setup, version, folder, moto, proxy, bucket)
                proxy.mode = "pass"
                orthanc.start()
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(orthanc.upload, files))
                orthanc.stop()
            for round_number in range(arguments.rounds):
                order = SETUPS if round_number % 2 == 0 else tuple(reversed(SETUPS))
                for setup in order:
                    orthanc = servers[setup]
                    proxy.mode, proxy.delay = "pass", 0.0
                    orthanc.start()
                    try:
                        proxy.mode, proxy.delay = "slow", LATENCY
                        proxy.reset_counts()
                        started = time.perf_counter()
                        open_study(orthanc, study_uid)
                        seconds = time.perf_counter() - started
                        gets = sum(1 for line in proxy.requests if line.startswith(b"GET "))
                    finally:
                        proxy.mode = "pass"
                        orthanc.stop()
                    results.setdefault((name, setup), []).append((seconds, gets))
            for orthanc in servers.values():
                orthanc.cleanup()
    finally:
        proxy.close()
        moto.stop()
    return results


def report(version, results, arguments):
    print(f"\n[Orthanc {version}] viewer open, {arguments.rounds} rounds, medians (seconds; store GETs per open); "
          f"{LATENCY * 1000:.0f} ms per store request for the plugins")
    print(f"{'workload':12} {'own storage':>14} {'naive plugin':>16} {'this plugin':>16} "
          f"{'this/own':>9} {'naive/this':>10}")
    for name in arguments.workloads.split(","):
        row = {setup: (statistics.median(s for s, _ in results[(name, setup)]),
                       statistics.median(g for _, g in results[(name, setup)])) for setup in SETUPS}
        own, naive, ours = (row[s][0] for s in SETUPS)
        label = "20 MB x1" if name == "multiframe" else f"{name} x131KB"
        print(f"{label:12} {own:9.2f} s     {naive:7.2f} s ({row['naive plugin'][1]:4.0f}) "
              f"{ours:7.2f} s ({row['this plugin'][1]:4.0f}) {ours / own:8.2f}x {naive / ours:9.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", default=f"1.10.1,{NEWEST_VERSION}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workloads", default="150,500,multiframe")
    arguments = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="objstore-viewer-bench-")
    for version in arguments.versions.split(","):
        report(version, run_version(version, arguments, workdir), arguments)


if __name__ == "__main__":
    main()
