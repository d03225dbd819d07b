"""End to end: asynchronous adoptions as jobs under /jobs (counts, cancel, resume after a restart) and the indexer.

Through a real Orthanc (1.10.1 and 1.13) on every provider. The store is slowed by the fault proxy so that a job
is still running when it is cancelled or when Orthanc restarts; the assertions are on outcomes, never on times.
"""

import pytest
from support.dicom import make_instances
from support.orthanc import PYTHON_PLUGIN, HttpError
from support.postgres import INDEX_PLUGIN, PostgresServer
from support.waiting import wait_for

pytestmark = pytest.mark.orthanc

SLOW_SECONDS = 0.25  # per store request: a job of LAKE objects takes several seconds


def write_lake(backend, count, seed, prefix="lake/") -> dict[str, bytes]:
    files = {f"{prefix}{number:03d}.dcm": data for number, data in enumerate(make_instances(count, seed=seed))}
    for key, data in files.items():
        backend.write(key, data)
    return files


def job(orthanc, job_id) -> dict:
    return orthanc.get_json(f"/jobs/{job_id}")


def wait_job(orthanc, job_id, timeout=180) -> dict:
    final = wait_for(lambda: (lambda status: status if status["State"] in ("Success", "Failure") else None)(
        job(orthanc, job_id)), timeout=timeout)
    assert final, f"job {job_id} did not finish: {job(orthanc, job_id)}"
    return final


def processed(orthanc, job_id) -> int:
    return job(orthanc, job_id)["Content"]["ProcessedObjects"]


def test_an_asynchronous_adoption_is_a_job_with_the_synchronous_counts(backend, orthanc_factory):
    files = write_lake(backend, 3, "1.2.826.0.1.3680043.8.498.301")
    backend.write("lake/notes.txt", b"not a DICOM file at all")
    orthanc = orthanc_factory(backend.settings())

    answer = orthanc.post_json("/objstore/adopt", {"Prefix": "lake/", "Asynchronous": True})
    assert answer["Path"] == f"/jobs/{answer['ID']}"
    assert answer["ID"] in orthanc.get_json("/jobs")
    final = wait_job(orthanc, answer["ID"])
    assert (final["Type"], final["State"], final["Progress"], final["ErrorCode"]) == ("ObjstoreAdopt", "Success",
                                                                                      100, 0), final
    content = final["Content"]
    assert (content["Adopted"], content["AlreadyStored"], content["Abandoned"], content["FailedCount"]) == (3, 0, 0, 1)
    assert [item["Key"] for item in content["Failed"]] == ["lake/notes.txt"] and content["Failed"][0]["Error"]
    expanded = {status["ID"]: status for status in orthanc.get_json("/jobs?expand")}
    assert expanded[answer["ID"]]["Content"]["Adopted"] == 3
    instances = orthanc.get_json("/instances")
    assert sorted(orthanc.get(f"/instances/{instance}/file") for instance in instances) == sorted(files.values())

    metrics = orthanc.get("/objstore/metrics-prometheus").decode()
    assert 'orthanc_objstore_adopt_objects_total{outcome="adopted"} 3' in metrics
    assert 'orthanc_objstore_adopt_objects_total{outcome="failed"} 1' in metrics


def test_an_adopt_job_is_cancelled_and_another_resumes_after_a_restart(backend, orthanc_factory):
    count = 40
    files = write_lake(backend, count, "1.2.826.0.1.3680043.8.498.302")
    orthanc = orthanc_factory(backend.settings())
    backend.proxy.mode, backend.proxy.delay = "slow", SLOW_SECONDS

    cancelled = orthanc.post_json("/objstore/adopt", {"Prefix": "lake/", "Asynchronous": True})["ID"]
    assert wait_for(lambda: processed(orthanc, cancelled) >= 2, timeout=120)
    assert orthanc.post_json(f"/jobs/{cancelled}/cancel", {}) == {}
    first = wait_job(orthanc, cancelled)
    assert (first["State"], first["ErrorCode"]) == ("Failure", 37), first
    adopted_first = first["Content"]["Adopted"]
    assert 2 <= adopted_first < count
    assert len(orthanc.get_json("/instances")) == adopted_first

    resumed = orthanc.post_json("/objstore/adopt", {"Prefix": "lake/", "Asynchronous": True})["ID"]
    assert wait_for(lambda: processed(orthanc, resumed) >= adopted_first + 4, timeout=120)
    orthanc.restart()  # the job stops with Orthanc, mid-way, and goes on at the next start
    assert "adopt job " + resumed + " (prefix 'lake/') resumes after" in orthanc.log()
    final = wait_job(orthanc, resumed)
    backend.proxy.mode = "pass"
    assert final["State"] == "Success", final
    content = final["Content"]
    # every object handled once (none taken again from the start), every instance there once
    assert content["ProcessedObjects"] == count and content["FailedCount"] == 0, content
    assert content["Adopted"] + content["AlreadyStored"] == count, content
    assert adopted_first <= content["AlreadyStored"] <= adopted_first + 4, content
    instances = orthanc.get_json("/instances")
    assert len(instances) == count
    assert sorted(orthanc.get(f"/instances/{instance}/file") for instance in instances) == sorted(files.values())


def test_the_indexer_adopts_new_objects_and_abandons_vanished_ones(backend, orthanc_factory):
    files = write_lake(backend, 3, "1.2.826.0.1.3680043.8.498.303")
    settings = backend.settings()
    settings[backend.section]["Indexer"] = {"Prefixes": ["lake/"], "Interval": "1s"}
    orthanc = orthanc_factory(settings)

    def held():
        try:
            return sorted(orthanc.get(f"/instances/{instance}/file") for instance in orthanc.get_json("/instances"))
        except HttpError:  # the vanished object's instance before a round abandons it, or abandoned meanwhile
            return None

    def instances_hold(expected):
        return wait_for(lambda: held() == sorted(expected), timeout=120, interval=0.5)

    assert instances_hold(files.values()), orthanc.log_tail()
    new = make_instances(1, seed="1.2.826.0.1.3680043.8.498.304")[0]
    backend.write("lake/new.dcm", new)
    backend.delete("lake/001.dcm")
    expected = [data for key, data in files.items() if key != "lake/001.dcm"] + [new]
    assert instances_hold(expected), orthanc.log_tail()
    rounds = [status for status in orthanc.get_json("/jobs?expand") if status["Type"] == "ObjstoreAdopt"]
    assert rounds and all(status["Content"]["Origin"] == "Indexer" for status in rounds)
    assert sum(status["Content"]["Abandoned"] for status in rounds) == 1
    assert sum(status["Content"]["Adopted"] for status in rounds) == 4


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    yield server
    server.stop()


def test_two_replicas_only_the_designated_one_runs_the_indexer(s3_backend, postgres, orthanc_factory):
    """One PostgreSQL index, one bucket: the indexer enabled on replica-a only; both serve what it adopted."""
    files = write_lake(s3_backend, 3, "1.2.826.0.1.3680043.8.498.305")
    settings = {**postgres.settings(Database=postgres.create_database()), "Plugins": [PYTHON_PLUGIN, INDEX_PLUGIN]}
    replicas = []
    for name, enabled in (("replica-a", True), ("replica-b", False)):
        options = s3_backend.settings(Indexer={"Prefixes": ["lake/"], "Interval": "1s", "Enabled": enabled})
        replicas.append(orthanc_factory({**settings, **options, "DatabaseServerIdentifier": name}, name=name))
    first, second = replicas
    assert wait_for(lambda: len(second.get_json("/instances")) == len(files), timeout=90), first.log_tail()
    assert "indexer of 'lake/' every 1 s" in first.log() and "indexer of" not in second.log()
    assert [job for job in second.get_json("/jobs") if job.startswith("objstore-")] == []
    rounds = [status for status in first.get_json("/jobs?expand") if status["Type"] == "ObjstoreAdopt"]
    assert rounds and {status["Content"]["Origin"] for status in rounds} == {"Indexer"}
    for replica in replicas:  # on 1.13 the PostgreSQL plugin 5 keeps no custom data: range reads find the reference
        served = sorted(replica.get(f"/instances/{instance}/file") for instance in replica.get_json("/instances"))
        assert served == sorted(files.values())
