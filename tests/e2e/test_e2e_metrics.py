"""End to end: the plugin's metrics in Orthanc's /tools/metrics-prometheus (and the plugin's own page) after traffic."""

import pytest
from support.dicom import make_instances
from support.orthanc import HOST_VERSION, HttpError, wait_for
from support.prometheus import scrape

pytestmark = pytest.mark.orthanc

OBJECTS, FILES = "object-storage", "file-system"
ROUTE = "/objstore/metrics-prometheus"
# Orthanc 1.10.1 (< 1.12.2) gets no SetMetricsValue by default (see docs/metrics.md): the tests force it
# there, as a deployment without other plugins may; 1.13 publishes by default.
PUBLISH = {"ORTHANC_OBJSTORE_METRICS": "publish"}


def series(name, **labels):
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


def ops(operation, storage=OBJECTS):
    return series("orthanc_objstore_operations_total", operation=operation, storage=storage)


def volume(operation, storage=OBJECTS):
    return series("orthanc_objstore_bytes_total", operation=operation, storage=storage)


def errors(operation, kind, storage=OBJECTS):
    return series("orthanc_objstore_errors_total", operation=operation, storage=storage, kind=kind)


def published(orthanc, expected: dict[str, float], timeout=30) -> dict[str, float]:
    """Waits until Orthanc's page shows ``expected`` (the publisher runs every few seconds); returns the page."""
    page = {}

    def matches():
        nonlocal page
        page = scrape(orthanc)
        return all(page.get(name) == value for name, value in expected.items())

    wait_for(matches, timeout=timeout, interval=0.5)
    assert {name: page.get(name) for name in expected} == expected
    return page


def attachment_sizes(orthanc, instance) -> list[int]:
    kinds = orthanc.get_json(f"/instances/{instance}/attachments?full")
    return [orthanc.get_json(f"/instances/{instance}/attachments/{kind}/info")["CompressedSize"]
            for kind in kinds.values()]


def whole_read(orthanc) -> str:
    """The operation a whole read is: v1 reads whole files; v3 asks for ranges, the whole file included."""
    return "read" if orthanc.storage_api == "v1" else "read_range"


def test_metrics_after_uploads_reads_a_delete_and_a_store_failure(s3_backend, orthanc_factory, orthanc_version):
    env = PUBLISH if orthanc_version == HOST_VERSION else None
    orthanc = orthanc_factory(s3_backend.settings(), env=env)
    files = make_instances(3, seed="1.2.826.0.1.3680043.8.498.41")
    instances = [orthanc.upload(data)["ID"] for data in files[:2]]
    sizes = {instance: attachment_sizes(orthanc, instance) for instance in instances}
    written = [size for instance in instances for size in sizes[instance]]
    read = whole_read(orthanc)
    assert orthanc.get(f"/instances/{instances[0]}/file") == files[0]
    assert orthanc.get(f"/instances/{instances[1]}/file") == files[1]
    orthanc.delete(f"/instances/{instances[1]}")

    s3_backend.proxy.mode = "down"  # the store fails: one read, one upload
    with pytest.raises(HttpError):
        orthanc.get(f"/instances/{instances[0]}/file")
    with pytest.raises(HttpError):
        orthanc.upload(files[2])
    page = scrape(orthanc, ROUTE)
    assert page["orthanc_objstore_orphans_pending"] >= 1  # the failed upload's object, removed once the store is back
    s3_backend.proxy.mode = "pass"
    assert wait_for(lambda: scrape(orthanc, ROUTE)["orthanc_objstore_orphans_pending"] == 0, timeout=30)

    page = published(orthanc, {
        ops("write"): len(written) + 1, volume("write"): sum(written),
        errors("write", "unavailable"): 1,
        ops(read): 3, volume(read): len(files[0]) + len(files[1]),
        errors(read, "unavailable"): 1, errors(read, "not_found"): 0,
        errors("write", "not_found"): 0, errors("delete", "other"): 0,
        "orthanc_objstore_orphans_pending": 0, "orthanc_objstore_deletions_pending": 0,
    })
    reaper_deletes = page[ops("delete")] - len(sizes[instances[1]])
    assert reaper_deletes >= 1  # the orphan's removal: failed attempts while down, then one that worked
    assert page[errors("delete", "unavailable")] == reaper_deletes - 1
    # with the store down, each request is sent twice (MaxRetries 1): one retry per failed operation
    failed = sum(value for name, value in page.items() if name.startswith("orthanc_objstore_errors_total"))
    assert page[series("orthanc_objstore_retries_total", storage=OBJECTS)] == failed
    assert page[volume("read_range" if read == "read" else "read")] == 0
    assert not any(FILES in name for name in page)  # no file-system side without hybrid mode
    # the plugin's own page says the same, with # TYPE lines
    own = orthanc.get(ROUTE).decode()
    assert "# TYPE orthanc_objstore_operations_total counter" in own
    assert scrape(orthanc, ROUTE)[ops("write")] == len(written) + 1


def test_hybrid_fallbacks_and_move_jobs(s3_backend, orthanc_factory, orthanc_version):
    env = PUBLISH if orthanc_version == HOST_VERSION else None
    orthanc = orthanc_factory(s3_backend.settings(HybridMode="WriteToFileSystem"), env=env)
    files = make_instances(2, seed="1.2.826.0.1.3680043.8.498.42")
    instances = [orthanc.upload(data)["ID"] for data in files]
    sizes = [size for instance in instances for size in attachment_sizes(orthanc, instance)]
    patient = orthanc.get_json(f"/instances/{instances[0]}/patient")["ID"]
    orthanc.stop()
    orthanc.config[s3_backend.section]["HybridMode"] = "WriteToObjectStorage"
    orthanc.start()
    read = whole_read(orthanc)
    assert orthanc.get(f"/instances/{instances[0]}/file") == files[0]  # object storage first, then the file system
    page = published(orthanc, {volume(read, FILES): len(files[0]), ops(read, FILES): 1})
    # the fallback follows one "not found" of the primary, on v1 and v3 alike: the hybrid router always asks
    # the primary first (v3's location hint does not choose the side, see areas/hybrid.py)
    fallbacks = page["orthanc_objstore_hybrid_fallbacks_total"]
    assert (fallbacks, page[errors(read, "not_found")]) == (1, 1), page

    content = orthanc.post_json("/move-storage", {"Resources": [patient], "TargetStorage": OBJECTS})
    assert content["MovedFiles"] == len(sizes)
    again = orthanc.post_json("/move-storage", {"Resources": [patient], "TargetStorage": OBJECTS})
    assert again["SkippedFiles"] == len(sizes)

    def moves(outcome):
        return series("orthanc_objstore_move_files_total", outcome=outcome)

    def moved_bytes(outcome):
        return series("orthanc_objstore_move_bytes_total", outcome=outcome)

    published(orthanc, {
        moves("moved"): len(sizes), moved_bytes("moved"): sum(sizes),
        moves("skipped"): len(sizes), moved_bytes("skipped"): sum(sizes),
        moves("failed"): 0, moves("missing"): 0,
        ops("write"): len(sizes), volume("write"): sum(sizes),
        # the move reads each file whole; on v3 the first read above was counted as a range read
        volume("read", FILES): (len(files[0]) if read == "read" else 0) + sum(sizes),
        ops("delete", FILES): len(sizes),
        "orthanc_objstore_hybrid_fallbacks_total": fallbacks,
    })
    assert orthanc.get(f"/instances/{instances[1]}/file") == files[1]  # now from object storage: no fallback
    published(orthanc, {volume(read): len(files[1])})
    if read == "read":
        assert scrape(orthanc)["orthanc_objstore_hybrid_fallbacks_total"] == 1


@pytest.mark.orthanc_versions(HOST_VERSION)
def test_orthanc_before_1_12_2_gets_the_metrics_only_on_the_plugin_page(s3_backend, orthanc_factory):
    orthanc = orthanc_factory(s3_backend.settings())
    instance = orthanc.upload(make_instances(1, seed="1.2.826.0.1.3680043.8.498.43")[0])["ID"]
    written = attachment_sizes(orthanc, instance)
    assert scrape(orthanc, ROUTE)[volume("write")] == sum(written)
    assert "metrics only in /objstore/metrics-prometheus" in orthanc.log()
    assert "orthanc_count_instances" in orthanc.get("/tools/metrics-prometheus").decode()
    assert scrape(orthanc) == {}  # nothing published through SetMetricsValue
