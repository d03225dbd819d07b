"""Benchmark: throughput with client-side encryption / without, same run, 0.5 MB objects (target >= 0.9).

Two levels, each comparing plain and encrypted (A1 and A2) on the same moto S3 server, in interleaved
rounds (after a warm-up round, in an order that changes every round: all six orders over six rounds,
bench/compare.py) so that all see the same machine load; medians of the rounds are reported:

- store level: ``put`` + ``get`` of distinct 0.5 MB objects through ``S3Store`` and
  ``EncryptedStore(S3Store)``, with 1 and 8 threads;
- through Orthanc: upload of distinct 0.5 MB DICOM instances over REST, then ``/file`` reads (the
  storage cache off), with 4 clients, one Orthanc per setup.

Run by hand (numbers depend on the machine; only the ratios of one run mean something):

    .venv/bin/python bench/encryption.py [--objects 200] [--rounds 6] [--skip-orthanc]
"""

import argparse
import base64
import copy
import io
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import compare  # noqa: E402
from support.orthanc import Orthanc  # noqa: E402
from support.servers import MotoServer  # noqa: E402

from orthanc_objstore.config.sections import MasterKey, S3Config  # noqa: E402
from orthanc_objstore.crypto.keys import Keyring  # noqa: E402
from orthanc_objstore.storage.encrypted import EncryptedStore  # noqa: E402
from orthanc_objstore.storage.providers.s3 import S3Store  # noqa: E402

OBJECT_SIZE = 512 * 1024
SETUPS = ("plain", "A1", "A2")


def timed(function, items, clients):
    return compare.pooled(function, items, clients)[0]


def store_round(store, objects, clients, tag):
    keys = [f"bench/{tag}/{index}.dcm" for index in range(len(objects))]
    items = list(zip(keys, objects, strict=True))
    put = timed(lambda item: store.put(*item), items, clients)

    def read(item):
        assert store.get(item[0]) == item[1]

    get = timed(read, items, clients)
    timed(lambda item: store.delete(item[0]), items, clients)
    return put + get


def make_dicom(count):
    """``count`` distinct DICOM files of about 0.5 MB (CT_small with 512x512 random pixels and new UIDs)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    base.Rows = base.Columns = 512
    study, series = generate_uid(), generate_uid()
    files = []
    for _ in range(count):
        dataset = copy.deepcopy(base)
        dataset.PixelData = os.urandom(512 * 512 * 2)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        files.append(buffer.getvalue())
    return files


def orthanc_round(orthanc, files, clients):
    ids = []
    upload = timed(lambda data: ids.append(orthanc.upload(data)["ID"]), files, clients)

    def read(instance):
        assert len(orthanc.get(f"/instances/{instance}/file")) > OBJECT_SIZE

    get = timed(read, ids, clients)
    timed(lambda instance: orthanc.delete(f"/instances/{instance}"), ids, clients)
    return upload + get


def report(title, seconds, count, rounds):
    """``seconds``: {clients: {set-up: [seconds per round]}}."""
    print(f"\n{title}: {count} objects of ~{OBJECT_SIZE // 1024} KB, put+get, objects/s; "
          f"{compare.describe(rounds)}; ratio = encrypted / plain (target >= 0.9), the rounds' own in brackets")
    rows = []
    for clients, by_setup in seconds.items():
        rate = {name: statistics.median(2 * count / s for s in values) for name, values in by_setup.items()}
        cells = []
        for name in SETUPS[1:]:
            per_round = compare.round_ratios(by_setup["plain"], by_setup[name])
            cells += [rate[name], f"{rate[name] / rate['plain']:.2f} ({compare.spread(per_round)})"]
        rows.append([clients, rate["plain"], *cells])
    print(compare.table(["clients", "plain", *(f"{name}{what}" for name in SETUPS[1:] for what in ("", " ratio"))],
                        rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=200)
    compare.add_rounds_option(parser, default=6, what=" (6: every order of the three set-ups once)")
    parser.add_argument("--skip-orthanc", action="store_true")
    arguments = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="objstore-bench-enc-")
    key_path = os.path.join(workdir, "bench.key")
    key = os.urandom(32)
    with open(key_path, "wb") as file:
        file.write(base64.b64encode(key))
    moto = MotoServer()
    try:
        moto.client().create_bucket(Bucket="bench-encryption")
        s3 = S3Store(S3Config(bucket_name="bench-encryption", region="us-east-1", endpoint=moto.url,
                              access_key="bench", secret_key="bench", virtual_addressing=False))
        master = MasterKey(1, key_path, key)
        stores = {"plain": s3, **{name: EncryptedStore(s3, Keyring(master.id, master.key), name)
                                  for name in SETUPS[1:]}}
        objects = [os.urandom(OBJECT_SIZE) for _ in range(arguments.objects)]
        seconds = {}
        for clients in (1, 8):
            def measure(name, round_number, clients=clients):
                items = objects if round_number >= 0 else objects[:20]
                return store_round(stores[name], items, clients, f"{name}-{clients}-{round_number}")

            seconds[clients] = compare.run_rounds(SETUPS, measure, arguments.rounds)
        report("store level (S3Store on moto)", seconds, arguments.objects, arguments.rounds)

        if arguments.skip_orthanc:
            return
        files = make_dicom(arguments.objects)
        section = {"BucketName": "bench-encryption", "Region": "us-east-1", "Endpoint": moto.url,
                   "VirtualAddressing": False, "AccessKey": "bench", "SecretKey": "bench"}
        servers = {}
        try:
            for name in SETUPS:
                settings = {"MaximumStorageCacheSize": 0, "AwsS3Storage": dict(section)}
                if name != "plain":
                    settings["AwsS3Storage"]["StorageEncryption"] = {"MasterKey": [1, key_path], "Format": name}
                servers[name] = Orthanc(os.path.join(workdir, f"orthanc-{name}"), settings).start()
            seconds = {4: compare.run_rounds(
                SETUPS, lambda name, number: orthanc_round(servers[name], files if number >= 0 else files[:10], 4),
                arguments.rounds)}
        finally:
            for server in servers.values():
                server.stop()
        report("through Orthanc (REST upload + /file read, 4 clients)", seconds, arguments.objects, arguments.rounds)
    finally:
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
