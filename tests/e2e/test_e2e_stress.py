"""End to end, under load: Orthanc must never freeze, lose an acknowledged write or leave an orphan (issue 13).

(1) a move job of half the patients while the other half are deleted, with uploads and reads going on;
(2) uploads, reads and deletes from 6 clients, and adoptions of objects already in the bucket, while the store
drops every connection for seconds at a time.
Every request must get an answer: the watchdog of support/watchdog.py fails the test with a stack dump
when Orthanc stops answering, and aborts the requests in flight. Nothing here is a latency bound (speed is
bench/'s business): a request, a job or the load itself fails the test only when it hangs (HANG_SECONDS
without an answer, several times the worst case the storage section's timeouts allow, see
``support.stress.request_bound``; a job: no step done for as long). Outages are counted in requests
turned away by the proxy, not in wall-clock time. Run with ``pytest -s`` to see the figures; they are
also in the test's report (user properties).
"""

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from support.dicom import make_instances
from support.orthanc import HOST_VERSION, NEWEST_VERSION, VERSIONS, wait_for
from support.stress import (
    Recorder,
    Unanswered,
    difference,
    indexed_attachments,
    object_names,
    request_bound,
    storage_files,
)

pytestmark = pytest.mark.orthanc

TIMEOUTS = {"ConnectTimeout": 2, "RequestTimeout": 5, "MaxRetries": 2}
HANG_SECONDS = 300.0  # no answer for this long: hung, not slow (the worst case above is 34 s per store call)
# 1.10.1 on its defaults; 1.13 with the Python plugin's default settings and with "AllowThreads": true
COMBINATIONS = [pytest.param(version, allow_threads, id=f"{version}-{'AllowThreads' if allow_threads else 'default'}")
                for version, allow_threads in ((HOST_VERSION, False), (NEWEST_VERSION, False), (NEWEST_VERSION, True))
                if version in VERSIONS]


def settings_for(backend, allow_threads, **options) -> dict:
    settings = backend.settings(**TIMEOUTS, **{"ReadCache": True, **options})  # the plugin's defaults
    if allow_threads:
        settings["Python"] = {"AllowThreads": True}
    return settings


def run_all(tasks, deadline: float) -> list:
    """Runs the callables in threads of their own; fails if one is still running at ``deadline``; the results."""
    pool = ThreadPoolExecutor(len(tasks))
    futures = [pool.submit(task) for task in tasks]
    _, running = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    pool.shutdown(wait=not running)  # never wait for a thread that overran its deadline
    assert not running, f"{len(running)} of the test's threads still running at the test's deadline"
    return [future.result() for future in futures]


def hang_bound(worst_case: float) -> float:
    """How long a request may go unanswered before it counts as hung: HANG_SECONDS, which must stay well
    above the worst case the storage section's timeouts allow (a slow machine is not a hang)."""
    assert HANG_SECONDS >= 4 * worst_case, (HANG_SECONDS, worst_case)
    return HANG_SECONDS


def report(record_property, name: str, figures: dict):
    print(f"\n{name}: " + "; ".join(f"{key} {value}" for key, value in figures.items()))
    for key, value in figures.items():
        record_property(key, value)


# ---------------------------------------------------------------- (1) a move job while patients are deleted

PATIENTS, PER_PATIENT = 24, 10
NEW_PATIENTS, NEW_PER_PATIENT = 4, 10


@pytest.mark.parametrize(("orthanc_version", "allow_threads"), COMBINATIONS)
def test_move_while_deleting_uploading_and_reading(s3_backend, orthanc_factory, allow_threads, record_property):
    orthanc = orthanc_factory(settings_for(s3_backend, allow_threads, HybridMode="WriteToFileSystem"))
    # the store is healthy here: a request needs one store call; reported against its worst case, never timed
    calls = Recorder(orthanc, hang_bound(request_bound(TIMEOUTS, storage_operations=1)))
    started = time.monotonic()

    first = make_instances(PATIENTS * PER_PATIENT, studies=PATIENTS, seed="1.2.826.0.1.3680043.8.498.81")
    later = make_instances(NEW_PATIENTS * NEW_PER_PATIENT, studies=NEW_PATIENTS, seed="1.2.826.0.1.3680043.8.498.82")
    stored: dict[str, bytes] = {}
    patient_of: dict[str, str] = {}
    lock = threading.Lock()

    def upload(data: bytes):
        status, body = calls.call("upload", "POST", "/instances", data)
        assert status == 200, f"upload answered {status}: {body[:200]!r}"
        answer = json.loads(body)
        with lock:
            stored[answer["ID"]] = data
            patient_of[answer["ID"]] = answer["ParentPatient"]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(upload, first, timeout=300))
    patients = sorted(set(patient_of.values()))
    assert len(patients) == PATIENTS and len(stored) == PATIENTS * PER_PATIENT
    to_move, to_delete = patients[0::2], patients[1::2]
    moving = sorted(instance for instance, patient in patient_of.items() if patient in to_move)
    setup_seconds = time.monotonic() - started

    done = threading.Event()
    reads = {"identical": 0, "different": 0, "errors": []}
    deleted: list[str] = []
    job = {}

    def move():
        status, body = calls.call("move", "POST", "/move-storage",
                                  {"Resources": to_move, "TargetStorage": "object-storage", "Asynchronous": True})
        assert status == 200, f"/move-storage answered {status}: {body[:300]!r}"
        job_id = json.loads(body)["ID"]
        done_steps, last_step = -1, time.monotonic()
        while time.monotonic() < last_step + HANG_SECONDS:  # the job may be slow, not stuck
            status, body = calls.call("job", "GET", f"/jobs/{job_id}")
            job.update(json.loads(body) if status == 200 else {"State": f"HTTP {status}"})
            if job.get("State") in ("Success", "Failure"):
                return
            content = job.get("Content", {})
            steps = sum(content.get(f"{kind}Files", 0) for kind in ("Moved", "Skipped", "Failed", "Missing"))
            if steps != done_steps:
                done_steps, last_step = steps, time.monotonic()
            time.sleep(0.5)

    def delete_patients():
        def delete(patient):
            status, body = calls.call("delete", "DELETE", f"/patients/{patient}")
            assert status == 200, f"DELETE /patients/{patient} answered {status}: {body[:200]!r}"
            with lock:
                deleted.append(patient)
        with ThreadPoolExecutor(3) as pool:  # three at a time
            list(pool.map(delete, to_delete, timeout=300))

    def upload_later(part):
        for data in later[part::2]:
            upload(data)

    def read(seed):
        rng = random.Random(seed)
        while not done.is_set():
            with lock:
                candidates = moving + sorted(set(stored) - set(moving) - set(i for i, p in patient_of.items()
                                                                              if p in to_delete))
            instance = rng.choice(candidates)
            status, body = calls.call("read", "GET", f"/instances/{instance}/file")
            with lock:
                if status != 200:
                    reads["errors"].append(f"{instance}: HTTP {status} {body[:120]!r}")
                elif body == stored[instance]:
                    reads["identical"] += 1
                else:
                    reads["different"] += 1

    def load_then_stop():
        try:
            run_all([move, delete_patients, lambda: upload_later(0), lambda: upload_later(1)],
                    deadline=time.monotonic() + 3 * HANG_SECONDS)
        finally:
            done.set()

    load_started = time.monotonic()
    try:
        run_all([load_then_stop, lambda: read(1), lambda: read(2)], deadline=time.monotonic() + 3 * HANG_SECONDS + 20)
    except Unanswered:
        pass  # listed in calls.unanswered, asserted first below
    load_seconds = time.monotonic() - load_started
    assert calls.unanswered == [], f"requests without an answer within {calls.bound:.0f} s: {calls.unanswered[:5]}"
    assert orthanc.watchdog.freeze is None, orthanc.watchdog.status()
    assert job.get("State") == "Success", f"the move job (stuck for {HANG_SECONDS:.0f} s?): {job}"
    assert sorted(deleted) == to_delete
    assert reads["different"] == 0 and reads["errors"] == [], reads

    # nothing acknowledged is lost, nothing deleted came back, every file is where the index says, no orphan
    kept = {instance: data for instance, data in stored.items() if patient_of[instance] not in to_delete}
    attachments = indexed_attachments(orthanc)
    assert set(attachments) == set(kept)
    assert all(orthanc.get(f"/instances/{instance}/file") == data for instance, data in kept.items())
    assert sorted(set(to_delete) & set(orthanc.get_json("/patients"))) == []
    in_bucket = object_names(a for instance in moving for a in attachments[instance])
    on_disk = {uuid for instance in kept if instance not in moving for uuid, _ in attachments[instance]}
    wait_for(lambda: set(s3_backend.keys()) == in_bucket and storage_files(orthanc) == on_disk, timeout=60)
    problems = [difference("bucket", set(s3_backend.keys()), in_bucket),
                difference("file system", storage_files(orthanc), on_disk)]
    report(record_property, "stress move+delete", {
        "setup_s": round(setup_seconds, 1), "load_s": round(load_seconds, 1), "summary": calls.summary(),
        "moved_files": job.get("Content", {}).get("MovedFiles"), "deleted_patients": len(deleted),
        "reads_identical": reads["identical"], "lost": len(set(kept) - set(attachments)),
        "problems": [problem for problem in problems if problem] or 0})
    assert [problem for problem in problems if problem] == []


# ---------------------------------------------------------------- (2) store outages during mixed traffic

CLIENTS = 6
PER_CLIENT = 150             # distinct instances each client may upload
LAKE = 40                    # DICOM files already in the bucket, adopted (without ownership) and deleted again
OUTAGES = 7                  # the proxy drops every connection for 1-3 s, every 2-4 s, this many times;
                             # each outage lasts until it has turned away at least one request
CALM_SECONDS = 6.0           # then the store is back, and the clients go on for this long
ORPHAN_WAIT = 75.0           # the orphan reaper retries with backoff up to 60 s


@pytest.mark.parametrize(("orthanc_version", "allow_threads"), COMBINATIONS)
def test_store_outages_during_mixed_traffic(s3_backend, orthanc_factory, allow_threads, record_property):
    orthanc = orthanc_factory(settings_for(s3_backend, allow_threads, HybridMode="Disabled"))
    # an upload or a delete touches up to 2 objects (the DICOM file and its header through the v1 API)
    calls = Recorder(orthanc, hang_bound(request_bound(TIMEOUTS, storage_operations=2)))
    proxy = s3_backend.proxy
    pools = [make_instances(PER_CLIENT, studies=6, seed=f"1.2.826.0.1.3680043.8.498.6{client}")
             for client in range(CLIENTS)]
    lake = {f"lake/{number:03}.dcm": data
            for number, data in enumerate(make_instances(LAKE, studies=2, seed="1.2.826.0.1.3680043.8.498.69"))}
    for key, data in lake.items():
        s3_backend.write(key, data)  # beside the proxy: the outages are Orthanc's, not the test's
    adopted: dict[str, str] = {}          # lake key -> instance, adopted (Success or AlreadyStored) and not deleted
    adoptions = {"adopted": 0, "failed": 0, "unknown": 0, "deleted": 0}
    adopted_deleted: set[str] = set()     # adopted instances whose DELETE answered 200, not adopted again since
    unknown_keys: set[str] = set()        # an adoption answered with an error status: adopted or not
    unknown_adopted: set[str] = set()     # adopted instances whose DELETE answered an error: there or not
    acknowledged: dict[str, bytes] = {}   # uploads answered 200 and not deleted since
    counts = {"acknowledged": 0, "refused": 0}  # uploads answered 200 / with an error status
    deletes_done: set[str] = set()        # instances whose DELETE answered 200
    deletes_unknown: set[str] = set()     # DELETE answered with an error: either way is allowed
    bad_reads: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    faults_over = threading.Event()
    faults = {"count": 0, "down_seconds": 0.0, "turned_away": []}  # turned away: per outage

    def inject_faults():
        rng = random.Random(13)
        try:
            for _ in range(OUTAGES):
                if stop.wait(rng.uniform(2.0, 4.0)):
                    return
                outage, before, started = rng.uniform(1.0, 3.0), proxy.turned_away, time.monotonic()
                proxy.mode = "down"
                faults["count"] += 1
                stop.wait(outage)
                while proxy.turned_away == before and not stop.wait(0.05):
                    pass  # an outage nobody noticed proves nothing: it lasts until one request met it
                proxy.mode = "pass"
                faults["down_seconds"] += time.monotonic() - started
                faults["turned_away"].append(proxy.turned_away - before)
        finally:
            proxy.mode = "pass"
            faults_over.set()

    def client(number):
        rng = random.Random(1000 + number)
        pool = list(pools[number])
        mine: list[str] = []
        while not stop.is_set():
            choice = rng.random()
            if pool and (not mine or choice < 0.5):
                data = pool.pop()
                status, body = calls.call("upload", "POST", "/instances", data)
                if status == 200:
                    instance = json.loads(body)["ID"]
                    mine.append(instance)
                    with lock:
                        acknowledged[instance] = data
                        counts["acknowledged"] += 1
                else:
                    with lock:
                        counts["refused"] += 1  # must not be in the index at the end ("unexpected")
            elif mine and choice < 0.8:
                instance = rng.choice(mine)
                status, body = calls.call("read", "GET", f"/instances/{instance}/file")
                if status == 200 and body != acknowledged[instance]:
                    with lock:
                        bad_reads.append(instance)
            elif mine:
                instance = mine.pop(rng.randrange(len(mine)))
                status, _ = calls.call("delete", "DELETE", f"/instances/{instance}")
                with lock:
                    data = acknowledged.pop(instance)
                    (deletes_done if status == 200 else deletes_unknown).add(instance)
                    if status != 200:
                        acknowledged[instance + "?"] = data  # may or may not be there at the end
            stop.wait(rng.uniform(0.05, 0.2))

    def adopter():
        """Adopts lake objects, reads and deletes the adopted instances: the adoption's loopback POST, its
        create and remove callbacks and the registry meet the outages too."""
        rng = random.Random(77)
        while not stop.is_set():
            choice, free = rng.random(), sorted(set(lake) - set(adopted))
            if free and (not adopted or choice < 0.5):
                key = rng.choice(free)
                status, body = calls.call("adopt", "POST", "/objstore/adopt-instance", {"Key": key})
                answer = json.loads(body) if status == 200 else {}
                with lock:
                    if answer.get("Status") in ("Success", "AlreadyStored"):
                        adopted[key] = answer["InstanceId"]
                        adopted_deleted.discard(answer["InstanceId"])
                        unknown_keys.discard(key)
                        adoptions["adopted"] += 1
                    else:  # a Failure (the store was down) or an error status: most likely nothing adopted, but
                        # an upload whose answer was lost may have made the instance: either is allowed at the end
                        unknown_keys.add(key)
                        adoptions["failed" if status == 200 else "unknown"] += 1
            elif adopted and choice < 0.8:
                key = rng.choice(sorted(adopted))
                status, body = calls.call("read", "GET", f"/instances/{adopted[key]}/file")
                if status == 200 and body != lake[key]:
                    with lock:
                        bad_reads.append(f"adopted {adopted[key]}")
            elif adopted:
                key = rng.choice(sorted(adopted))
                status, _ = calls.call("delete", "DELETE", f"/instances/{adopted[key]}")
                with lock:
                    if status == 200:
                        adopted_deleted.add(adopted.pop(key))
                        adoptions["deleted"] += 1
                    else:
                        unknown_adopted.add(adopted.pop(key))  # deleted or not: either is allowed at the end
            stop.wait(rng.uniform(0.05, 0.2))

    def clients_then_stop():
        try:
            run_all([lambda number=number: client(number) for number in range(CLIENTS)] + [adopter],
                    deadline=time.monotonic() + 4 * HANG_SECONDS)
        finally:
            stop.set()

    def calm_then_stop():
        faults_over.wait(3 * HANG_SECONDS)
        stop.wait(CALM_SECONDS)
        stop.set()

    started = time.monotonic()
    try:
        run_all([clients_then_stop, inject_faults, calm_then_stop], deadline=time.monotonic() + 5 * HANG_SECONDS)
    except Unanswered:
        pass  # listed in calls.unanswered, asserted first below
    finally:
        stop.set()
        proxy.mode = "pass"
    traffic_seconds = time.monotonic() - started
    assert calls.unanswered == [], (f"requests without an answer within {calls.bound:.0f} s "
                                    f"({calls.summary()}): {calls.unanswered[:5]}")
    assert orthanc.watchdog.freeze is None, orthanc.watchdog.status()
    assert bad_reads == [], f"reads answered 200 with other bytes: {bad_reads[:5]}"

    # every acknowledged upload is there and identical; no acknowledged delete came back
    attachments = indexed_attachments(orthanc)
    kept = {instance: data for instance, data in acknowledged.items() if not instance.endswith("?")}
    kept.update({instance: lake[key] for key, instance in adopted.items()})
    lost = sorted(set(kept) - set(attachments))
    resurrected = sorted((deletes_done | adopted_deleted) & set(attachments))
    # an adoption answered with an error may have made its instance: allowed, if it is the lake object
    others = set(attachments) - set(kept) - deletes_unknown - unknown_adopted
    maybe = {instance for instance in others
             if orthanc.get(f"/instances/{instance}/file") in {lake[key] for key in unknown_keys}}
    unexpected = sorted(others - maybe)
    changed = sorted(instance for instance, data in kept.items()
                     if instance in attachments and orthanc.get(f"/instances/{instance}/file") != data)
    # once the orphan reaper has run, the bucket holds exactly the objects of the indexed attachments, and the
    # lake, which no deletion of an instance adopted without ownership touches (the adoption registry aside)
    expected = object_names(a for found in attachments.values() for a in found) | set(lake)

    def bucket() -> set[str]:
        return {key for key in s3_backend.keys() if not key.startswith(".orthanc-objstore-adopted/")}

    cleanup_started = time.monotonic()
    wait_for(lambda: bucket() == expected, timeout=ORPHAN_WAIT, interval=1.0)
    keys = bucket()
    lake_changed = sorted(key for key in lake if key in keys and s3_backend.read(key) != lake[key])
    report(record_property, "stress store outages", {
        "traffic_s": round(traffic_seconds, 1), "cleanup_s": round(time.monotonic() - cleanup_started, 1),
        "summary": calls.summary(), "faults": faults["count"], "down_s": round(faults["down_seconds"], 1),
        "turned_away": faults["turned_away"],
        "acknowledged_uploads": counts["acknowledged"], "refused_uploads": counts["refused"], "deletes": len(deletes_done), "deletes_unknown": len(deletes_unknown),
        "lost": len(lost), "changed": len(changed), "resurrected": len(resurrected), "unexpected": len(unexpected),
        "orphans": len(keys - expected), "missing": len(expected - keys), **adoptions})
    # every outage happened and met traffic (the clients stop only once the outages are over)
    assert faults["count"] == OUTAGES and len(faults["turned_away"]) == OUTAGES, faults
    assert all(count > 0 for count in faults["turned_away"]), faults
    assert (lost, changed, resurrected, unexpected, lake_changed) == ([], [], [], [], [])
    assert adoptions["adopted"] > 0 and adoptions["deleted"] > 0, adoptions  # the adoptions met the load
    assert difference("bucket", keys, expected) == ""
