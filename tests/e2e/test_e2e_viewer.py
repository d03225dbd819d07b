"""End to end: a viewer opening a study through DICOMweb, with the read cache and the prefetcher (docs/viewers.md).

A study is uploaded, Orthanc restarts (a fresh process on the same index: nothing in any cache, as on
another replica), then a viewer's open is replayed as OHIF does it: QIDO, the series list, the series
metadata, then every frame with 6 requests in parallel. The store sits behind the fault proxy with
20 ms per request, which also counts the requests: the open reads each object at most once (on 1.13
the header range reads of the metadata and the whole reads of the frames share one request), a
second open reads nothing, deletes empty the cache, the memory budget holds, and on disk the cache
keeps the objects as stored (encrypted).
"""

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.attachments import write_key
from support.dicom import make_instances
from support.orthanc import DICOMWEB_PLUGIN, DICOMWEB_SETTINGS, PYTHON_PLUGIN
from support.prometheus import scrape
from support.servers import require

pytestmark = pytest.mark.orthanc

STUDY_UID = "1.2.826.0.1.3680043.8.498.60.1"
SERIES_UID = STUDY_UID + ".1"
LATENCY = 0.02


def viewer_settings(backend, **section):
    require(os.path.exists(DICOMWEB_PLUGIN), "Debian's orthanc-dicomweb is not installed (scripts/setup.sh test)")
    section = {"ReadCache": True, **section}  # the plugin's default (tests/support/backends.py turns it off)
    return {**backend.settings(**section), **DICOMWEB_SETTINGS, "Plugins": [PYTHON_PLUGIN, DICOMWEB_PLUGIN]}


def upload_and_restart(orthanc, backend, count):
    files = make_instances(count, seed="1.2.826.0.1.3680043.8.498.60")
    for data in files:
        orthanc.upload(data)
    orthanc.restart()
    backend.proxy.reset_counts()
    return files


def open_study(orthanc):
    """A viewer's open; returns the frames (bytes) it got."""
    studies = orthanc.get_json(f"/dicom-web/studies?StudyInstanceUID={STUDY_UID}")
    assert len(studies) == 1
    series = orthanc.get_json(f"/dicom-web/studies/{STUDY_UID}/series")
    assert [item["0020000E"]["Value"][0] for item in series] == [SERIES_UID]
    metadata = orthanc.get_json(f"/dicom-web/studies/{STUDY_UID}/series/{SERIES_UID}/metadata")
    instances = [item["00080018"]["Value"][0] for item in metadata]
    base = f"/dicom-web/studies/{STUDY_UID}/series/{SERIES_UID}/instances"
    with ThreadPoolExecutor(6) as pool:
        frames = list(pool.map(lambda uid: frame_of(orthanc.get(f"{base}/{uid}/frames/1")), instances))
    assert len(frames) == len(instances) and all(len(frame) > 1000 for frame in frames)
    return frames


def frame_of(answer: bytes) -> bytes:
    """The frame in a DICOMweb multipart answer (its boundary changes from answer to answer)."""
    body = answer.split(b"\r\n\r\n", 1)[1]
    return body[:body.rindex(b"\r\n--")]


def store_gets(backend) -> Counter:
    return Counter(line for line in backend.proxy.requests if line.startswith(b"GET "))


def cache_metrics(orthanc) -> dict[str, float]:
    return {name.removeprefix("orthanc_objstore_"): value
            for name, value in scrape(orthanc, "/objstore/metrics-prometheus").items() if "_cache_" in name}


def test_an_open_reads_each_object_once_and_a_second_open_nothing(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(viewer_settings(s3_backend))
    upload_and_restart(orthanc, s3_backend, 30)
    s3_backend.proxy.mode, s3_backend.proxy.delay = "slow", LATENCY
    try:
        first = open_study(orthanc)
        gets = store_gets(s3_backend)
        assert gets and max(gets.values()) == 1, gets.most_common(3)
        assert len(gets) <= 30 * 2  # at most the DICOM file and its header attachment of each instance
        metrics = cache_metrics(orthanc)
        assert metrics["cache_prefetch_issued_total"] >= 1 and metrics["cache_prefetch_used_total"] >= 1
        s3_backend.proxy.reset_counts()
        assert open_study(orthanc) == first
        assert store_gets(s3_backend) == Counter()
    finally:
        s3_backend.proxy.mode = "pass"
    assert "ReadCache(256 MB in memory)" in orthanc.log()


def test_deleting_the_study_empties_the_cache(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(viewer_settings(s3_backend))
    upload_and_restart(orthanc, s3_backend, 10)
    open_study(orthanc)
    assert cache_metrics(orthanc)['cache_bytes{tier="memory"}'] > 0
    (study,) = orthanc.get_json("/studies")
    orthanc.delete(f"/studies/{study}")
    assert cache_metrics(orthanc)['cache_bytes{tier="memory"}'] == 0
    assert s3_backend.keys() == []


def test_the_memory_budget_holds(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(viewer_settings(s3_backend, ReadCache={"MemorySize": 1}))
    files = upload_and_restart(orthanc, s3_backend, 60)
    assert sum(len(data) for data in files) > 2 * 2**20
    open_study(orthanc)
    metrics = cache_metrics(orthanc)
    assert 0 < metrics['cache_bytes{tier="memory"}'] <= 2**20
    assert metrics["cache_memory_evictions_total"] > 0


def test_turned_off_the_plugin_reads_as_before(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(viewer_settings(s3_backend, ReadCache=False, Prefetch=False))
    upload_and_restart(orthanc, s3_backend, 5)
    open_study(orthanc)
    assert "read cache off" in orthanc.log() and cache_metrics(orthanc) == {}


def test_the_disk_cache_keeps_encrypted_objects_and_survives_a_restart(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(viewer_settings(s3_backend), start=False)
    key_path, _ = write_key(orthanc, "master.key")
    folder = os.path.join(orthanc.orthanc_workdir, "read-cache")
    orthanc.config.update(viewer_settings(s3_backend, StorageEncryption={"MasterKey": [1, key_path], "Format": "A2"},
                                          ReadCache={"Folder": folder, "FolderSize": 64}))
    orthanc.start()
    files = upload_and_restart(orthanc, s3_backend, 10)
    first = open_study(orthanc)
    entries = [os.path.join(d, f) for d, _, names in os.walk(orthanc.host_path(folder)) for f in names]
    assert len(entries) >= 10
    for entry in entries:
        with open(entry, "rb") as file:
            body = file.read()
        assert b"DICM" not in body and files[0][200:264] not in body  # never a plaintext copy
        meta = json.loads(body.split(b"\n", 1)[0])
        assert meta["key"].endswith(".enc")
    orthanc.restart()
    s3_backend.proxy.reset_counts()
    assert open_study(orthanc) == first
    assert store_gets(s3_backend) == Counter()  # served by the disk cache
    assert cache_metrics(orthanc)["cache_disk_hits_total"] >= 10


@pytest.fixture(scope="module")
def postgres():
    from support.postgres import PostgresServer

    server = PostgresServer()
    yield server
    server.stop()


def test_ingested_on_one_orthanc_viewed_on_another_sharing_the_index(s3_backend, postgres, orthanc_factory):
    """Scale-out: two Orthancs on one PostgreSQL index and one bucket; the viewer's Orthanc never read
    the study (nothing in its caches), and its open still reads each object once."""
    from support.postgres import INDEX_PLUGIN

    settings = {**viewer_settings(s3_backend), **postgres.settings(Database=postgres.create_database())}
    settings["Plugins"] = [*settings["Plugins"], INDEX_PLUGIN]
    ingest = orthanc_factory({**settings, "DatabaseServerIdentifier": "ingest"}, name="ingest")
    view = orthanc_factory({**settings, "DatabaseServerIdentifier": "view"}, name="view")
    for data in make_instances(20, seed="1.2.826.0.1.3680043.8.498.60"):
        ingest.upload(data)
    s3_backend.proxy.reset_counts()
    s3_backend.proxy.mode, s3_backend.proxy.delay = "slow", LATENCY
    try:
        open_study(view)
    finally:
        s3_backend.proxy.mode = "pass"
    gets = store_gets(s3_backend)
    assert len(gets) >= 20 and max(gets.values()) == 1, gets.most_common(3)
    assert cache_metrics(view)["cache_prefetch_used_total"] >= 1
