"""Benchmark: POST /move-storage of N instances file system -> S3 (moto), next to a plain boto3 copy.

Usage: .venv/bin/python bench/move.py [--instances 400] [--threads 8] [--rounds 5] [--cache warm|cold]
                                      [--orthanc 1.10.1|1.13]

Starts moto and Debian's Orthanc (hybrid mode WriteToFileSystem, talking to moto directly) on free
ports. Each round uploads N synthetic instances (untimed), then, in an order that changes every round
(copy first, then move first: ABBA, bench/compare.py):
  - copy: the same attachment files, from the StorageDirectory to another bucket, with boto3 and a
    thread pool of --threads (the baseline: no verification, no delete);
  - move: a synchronous POST /move-storage of every study (read, MD5 check, write, check, delete).
The copy reads the files through hard links made before either runs, so that it still finds them after
the move deleted them, and both read the same inodes in the same page-cache state: with ``--cache
warm`` (the default) every file is read once before the first of the two, so both find them cached
(as just after an upload); with ``--cache cold`` the files are written to disk and evicted from the
page cache (posix_fadvise DONTNEED) before each of the two. A warm-up round with fewer instances comes
first. Prints the medians of instances per second for both and their ratio (target >= 0.7).

With ``--orthanc 1.13`` (the forky chroot of scripts/newest-orthanc.sh) two Orthancs run side by side
and take turns, round after round: the plugin reaching Orthanc's REST API over loopback HTTP
(``Python.AllowThreads`` off, the default) and in process (``AllowThreads`` on); the cost of the
loopback path is printed as a ratio of their move rates.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import compare  # noqa: E402
from support.backends import S3Backend  # noqa: E402
from support.dicom import make_instances  # noqa: E402
from support.orthanc import HOST_VERSION, NEWEST_VERSION, Orthanc  # noqa: E402
from support.servers import MotoServer  # noqa: E402

WARM_UP_INSTANCES = 40
UPLOAD_CLIENTS = 4


def storage_files(root):
    return sorted(os.path.join(folder, name) for folder, subfolders, names in os.walk(root)
                  for name in names if not name.startswith(".") and "objstore-jobs" not in folder)


def plain_copy(client, bucket, paths, threads):
    def copy(path):
        with open(path, "rb") as file:
            client.put_object(Bucket=bucket, Key=os.path.basename(path), Body=file.read())

    compare.pooled(copy, paths, threads)


def read_all(paths):
    """Reads every file once: afterwards all are in the page cache."""
    for path in paths:
        with open(path, "rb") as file:
            while file.read(1 << 20):
                pass


def evict(paths):
    """Writes every file to disk and drops it from the page cache (this file's pages only)."""
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def empty_bucket(client, bucket):
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for item in page.get("Contents", [])]
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]],
                                                     "Quiet": True})


class MoveRound:
    """One Orthanc and what a round does on it: upload, then the copy and the move, in a given order."""

    def __init__(self, backend, args, version, allow_threads, workdir):
        settings = backend.settings(HybridMode="WriteToFileSystem", Endpoint=backend.moto.url)
        if allow_threads is not None:
            settings["Python"] = {"AllowThreads": allow_threads}
        self.backend, self.args = backend, args
        self.orthanc = Orthanc(workdir, settings, version=version).start()
        self.root = self.orthanc.host_path(self.orthanc.config["StorageDirectory"])
        self.links = os.path.join(self.orthanc.workdir, "copy-source")
        self.baseline_bucket = f"{backend.bucket}-baseline-{time.monotonic_ns()}"
        backend.client.create_bucket(Bucket=self.baseline_bucket)
        self.planned = "?"

    def __call__(self, round_number):
        """{"copy": seconds, "move": seconds, "files": count} of one round (round_number < 0: a warm-up)."""
        count = min(WARM_UP_INSTANCES, self.args.instances) if round_number < 0 else self.args.instances
        compare.pooled(self.orthanc.upload, make_instances(count, studies=4, series_per_study=2), UPLOAD_CLIENTS)
        paths = storage_files(self.root)
        os.makedirs(self.links)
        links = []
        for path in paths:  # the same inodes: the copy still finds them after the move deleted the originals
            links.append(os.path.join(self.links, os.path.basename(path)))
            os.link(path, links[-1])
        if self.args.cache == "warm":
            read_all(links)
        seconds = {}
        try:
            for side in compare.balanced_order(("copy", "move"), round_number):
                if self.args.cache == "cold":
                    evict(links)
                seconds[side] = self.copy(links) if side == "copy" else self.move(len(paths))
        finally:
            shutil.rmtree(self.links, ignore_errors=True)
            for study in self.orthanc.get_json("/studies"):
                self.orthanc.delete(f"/studies/{study}")
            empty_bucket(self.backend.client, self.baseline_bucket)
        return {**seconds, "files": len(paths)}

    def copy(self, links):
        return compare.timed(plain_copy, self.backend.client, self.baseline_bucket, links, self.args.threads)[0]

    def move(self, files):
        seconds, content = compare.timed(self.orthanc.post_json, "/move-storage", {
            "Resources": self.orthanc.get_json("/studies"), "TargetStorage": "object-storage"})
        assert content["MovedFiles"] == files and content["FailedFiles"] == 0, content
        assert storage_files(self.root) == [], "files left on the file system after the move"
        planned = [line for line in self.orthanc.log().splitlines() if "planned in" in line]
        self.planned = planned[-1].split("orthanc-objstore: ")[-1] if planned else "?"
        return seconds

    def stop(self):
        self.orthanc.stop()
        self.orthanc.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8, help="threads of the plain copy (the plugin uses 8)")
    compare.add_rounds_option(parser)
    parser.add_argument("--cache", choices=("warm", "cold"), default="warm",
                        help="the files in the page cache before both sides (warm), or evicted before each (cold)")
    parser.add_argument("--orthanc", choices=(HOST_VERSION, NEWEST_VERSION), default=HOST_VERSION)
    args = parser.parse_args()

    moto = MotoServer()
    backend = S3Backend(moto)
    workdir = tempfile.mkdtemp(prefix="bench-move-")
    servers = {}
    try:
        modes = {"loopback HTTP": None, **({"in process": True} if args.orthanc == NEWEST_VERSION else {})}
        for name, allow_threads in modes.items():
            servers[name] = MoveRound(backend, args, args.orthanc, allow_threads,
                                      os.path.join(workdir, name.replace(" ", "-")))
        results = compare.run_rounds(list(servers), lambda name, number: servers[name](number), args.rounds)
        median = compare.medians(results)
        print(f"Orthanc {args.orthanc}, {args.instances} instances ({median[next(iter(median))]['files']:.0f} files), "
              f"page cache {args.cache}; {compare.describe(args.rounds)}")
        rows = []
        for name, rounds in results.items():
            per_round = [r["copy"] / r["move"] for r in rounds]
            rows.append([f"REST API {name}", median[name]["copy"], args.instances / median[name]["copy"],
                         median[name]["move"], args.instances / median[name]["move"],
                         median[name]["copy"] / median[name]["move"], compare.spread(per_round)])
        print(compare.table([f"Orthanc {args.orthanc}", f"copy s ({args.threads} thr.)", "copy inst/s", "move s",
                             "move inst/s", "move/copy rate", "rounds' ratios"], rows))
        print("  target: move/copy rate >= 0.7")
        for name, server in servers.items():
            print(f"  plugin ({name}), last move: {server.planned}")
        if len(results) == 2:
            per_round = compare.round_ratios(results["in process"], results["loopback HTTP"], "move")
            print(f"move rate, loopback HTTP / in process: "
                  f"{median['in process']['move'] / median['loopback HTTP']['move']:.2f} "
                  f"(rounds' ratios {compare.spread(per_round)})")
    finally:
        for server in servers.values():
            server.stop()
        backend.close()
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
