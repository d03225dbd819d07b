"""Migrate throughput: ``orthanc-objstore migrate`` vs a plain parallel boto3 copy of the same files, in one run.

An Orthanc folder is built by hand (tests/support/orthanc_files.py: StorageDirectory files plus a SQLite
index); the naive copy reads each file and calls put_object under the plugin's name, with the same
number of threads and connections; migrate does everything it promises on top (index read, MD5
check, existence check for resuming, size check after writing). Each copy goes to a fresh bucket, so
that every file is copied. After a warm-up round (which also brings every file into the page cache, for
all three alike), the three run in an order that changes every round (bench/compare.py); medians are
reported as a ratio naive seconds / migrate seconds (goal >= 0.8). ``--files N`` instances make 2N + 1
files: each instance's DICOM file of about ``--size`` bytes and its small header file (about 400 bytes),
and one attachment of the patient. Run by hand:

    .venv/bin/python bench/migrate.py [--files 400] [--size 131072] [--workers 16] [--rounds 6]
"""

import argparse
import base64
import contextlib
import io
import os
import shutil
import sys
import tempfile

import botocore.config

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import compare  # noqa: E402
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
    names = dict(zip(sorted(orthanc.files), orthanc.names(), strict=True))  # names() is sorted by uuid too

    def copy(uuid_):
        with open(orthanc.path(uuid_), "rb") as file:
            client.put_object(Bucket=bucket, Key=names[uuid_], Body=file.read())

    return compare.pooled(copy, orthanc.files, workers)[0]


def migrate(config, workers) -> float:
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        elapsed, status = compare.timed(cli.main, ["migrate", "--config", config, "--workers", str(workers)])
    assert status == 0 and " copied" in out.getvalue(), out.getvalue()
    return elapsed


def empty(backend) -> None:
    """Deletes the bucket's objects (moto keeps them in memory)."""
    keys = backend.keys()
    for start in range(0, len(keys), 1000):
        backend.client.delete_objects(Bucket=backend.bucket, Delete={
            "Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=400, help="instances: a DICOM file and a small header file each")
    parser.add_argument("--size", type=int, default=131072, help="bytes per DICOM file")
    parser.add_argument("--workers", type=int, default=16)
    compare.add_rounds_option(parser, default=6, what=" (6: every order of the three set-ups once)")
    arguments = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="objstore-bench-migrate-")
    moto = MotoServer()
    try:
        orthanc = OrthancFolder(workdir, instances=arguments.files, dicom_size=arguments.size)
        total = sum(len(stored) for _, stored in orthanc.files.values())
        key_path = os.path.join(workdir, "master.key")
        with open(key_path, "wb") as file:
            file.write(base64.b64encode(os.urandom(32)))

        def measure(name, round_number):
            backend = S3Backend(moto)  # a fresh bucket each time: every file is copied
            try:
                if name == "naive":
                    return naive_copy(moto, orthanc, backend.bucket, arguments.workers)
                options = {"Endpoint": moto.url}
                if name == "migrate A1":
                    options["StorageEncryption"] = {"MasterKey": [1, key_path]}
                return migrate(orthanc.config(backend, **options), arguments.workers)
            finally:
                empty(backend)
                backend.close()

        times = compare.run_rounds(["naive", "migrate", "migrate A1"], measure, arguments.rounds)
        median = compare.medians(times)
        print(f"{len(orthanc.files)} files ({arguments.files} instances), {total / 2**20:.1f} MiB, "
              f"{arguments.workers} workers, moto on 127.0.0.1; {compare.describe(arguments.rounds)}")
        rows = []
        for name, values in times.items():
            per_round = compare.round_ratios(times["naive"], values)
            rows.append([name, median[name], len(orthanc.files) / median[name], total / median[name] / 2**20,
                         median["naive"] / median[name], compare.spread(per_round)])
        print(compare.table(["", "seconds", "files/s", "MiB/s", "ratio naive/this", "rounds' ratios"], rows))
    finally:
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
