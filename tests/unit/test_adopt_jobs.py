"""Adopt jobs (jobs.adopt_jobs), the indexer (jobs.indexer) and its options: an in-memory store, a fake Orthanc."""

import collections

import pytest
from support.adoption_fakes import UUID, ListingMemoryStore, PostingOrthanc
from support.dicom import make_instances
from support.fake_orthanc import call

from orthanc_objstore.areas.adoption import AdoptingArea, AdoptionRegistry, Lake
from orthanc_objstore.areas.contract import ObjectArea
from orthanc_objstore.areas.naming import Naming
from orthanc_objstore.config import sections
from orthanc_objstore.errors import ConfigError
from orthanc_objstore.jobs import adopt_jobs
from orthanc_objstore.jobs.adopt import Adopter
from orthanc_objstore.jobs.adopt_jobs import AdoptJob, AdoptManager
from orthanc_objstore.jobs.indexer import ORIGIN, Indexer
from orthanc_objstore.jobs.journal import FileJobStore
from orthanc_objstore.metrics.metered import ADOPT_OBJECTS_TOTAL, StorageMetrics
from orthanc_objstore.orthanc_side.adopt import AdoptRoutes
from orthanc_objstore.orthanc_side.routes import job_status
from orthanc_objstore.port.index import OrthancCallError

U = UUID


class World:
    def __init__(self, tmp_path, workers=1):
        self.store = ListingMemoryStore()
        self.area = AdoptingArea(ObjectArea(self.store, Naming()), Lake(self.store))
        self.api = PostingOrthanc(self.area, writes_first=True, removes_on_delete=True)
        self.outcomes = collections.Counter()
        self.adopter = Adopter(self.api, self.area, AdoptionRegistry(self.store, self.store), self.store,
                               workers=workers, on_outcome=lambda outcome: self.outcomes.update([outcome]))
        self.folder = str(tmp_path / "adopt")
        self.manager = self.new_manager()

    def new_manager(self, **options):
        return AdoptManager(self.adopter, FileJobStore(self.folder), **options)

    def lake(self, count, prefix="lake/", seed="1.2.826.0.1.3680043.8.498.201"):
        files = make_instances(count, seed=seed)
        for number, data in enumerate(files):
            self.store.put(f"{prefix}{number:03d}.dcm", data)
        return files

    def posted_keys(self):
        by_body = {self.store.get(key): key for key in self.store.keys() if key.startswith("lake/")}
        return [by_body[body] for _, body in self.api.posts if body in by_body]


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_an_async_job_has_the_synchronous_counts_and_the_fields_of_orthancs_jobs(world):
    world.lake(3)
    world.store.put("lake/notes.txt", b"not DICOM")
    job = world.manager.submit("lake/", False)
    assert job_status(job)["State"] == "Pending" and job.progress() == 0
    assert world.manager.run_next() is job
    status = job_status(job)
    assert (status["Type"], status["State"], status["Progress"], status["ErrorCode"]) == ("ObjstoreAdopt", "Success",
                                                                                        100, 0)
    content = status["Content"]
    assert (content["Adopted"], content["AlreadyStored"], content["Abandoned"], content["FailedCount"]) == (3, 0, 0, 1)
    assert [item["Key"] for item in content["Failed"]] == ["lake/notes.txt"] and content["Failed"][0]["Error"]
    assert (content["Objects"], content["ProcessedObjects"], content["Prefix"]) == (4, 4, "lake/")
    assert len(world.api.instances) == 3
    assert world.outcomes == {"adopted": 3, "failed": 1}
    # the same prefix again: everything already stored, nothing posted
    posts = len(world.api.posts)
    again = world.manager.submit("lake/", False)
    world.manager.run_next()
    assert (again.content()["AlreadyStored"], again.content()["Adopted"]) == (3, 0)
    assert len(world.api.posts) == posts + 1  # only the junk is posted again (and refused)


def test_failures_are_counted_but_only_the_first_ones_listed(world, monkeypatch):
    monkeypatch.setattr(adopt_jobs, "MAX_REPORTED_FAILURES", 2)
    for number in range(5):
        world.store.put(f"lake/junk{number}.txt", b"junk")
    job = world.manager.submit("lake/", False)
    world.manager.run_next()
    assert job.state == "Success"
    assert job.content()["FailedCount"] == 5 and len(job.content()["Failed"]) == 2


def test_a_stopped_job_resumes_above_its_watermark_and_adopts_each_object_once(world):
    files = world.lake(8)
    job = world.manager.submit("lake/", True)
    stopped = world.manager

    def stop_after_three(outcome):
        world.outcomes.update([outcome])
        if sum(world.outcomes.values()) == 3:
            stopped.stop()  # Orthanc stopping: the job stops after the object in flight

    world.adopter.on_outcome = stop_after_three
    stopped.run_next()
    assert job.state == "Pending" and job.watermark == "lake/002.dcm"
    assert job.content()["Adopted"] == 3 and job.progress() == 37

    resumed = world.new_manager()  # a restart: the job comes back from its document
    resumed.load()
    again = resumed.get(job.id)
    assert again is not job and again.state == "Pending" and again.watermark == "lake/002.dcm"
    assert resumed.run_next() is again
    assert again.state == "Success"
    content = again.content()
    assert (content["Adopted"], content["AlreadyStored"], content["FailedCount"]) == (8, 0, 0)
    assert sorted(world.posted_keys()) == [f"lake/{n:03d}.dcm" for n in range(8)]  # each posted once
    assert sorted(world.api.instances) == sorted(files)


def test_an_object_that_fails_while_orthanc_stops_is_tried_again_at_the_next_start(world):
    world.lake(3)
    job = world.manager.submit("lake/", False)
    stopping = world.manager

    def orthanc_stops_during_the_second(uri, body, post=world.api.post_json):
        if len(world.api.posts) == 1:
            stopping.stop()
            raise OrthancCallError(503, "/instances: connection refused")
        return post(uri, body)

    world.api.post_json = orthanc_stops_during_the_second
    stopping.run_next()
    assert job.state == "Pending" and job.watermark == "lake/000.dcm"
    assert job.content()["FailedCount"] == 0 and job.processed == 1
    del world.api.post_json
    resumed = world.new_manager()
    resumed.load()
    resumed.run_next()
    content = resumed.get(job.id).content()
    assert (content["Adopted"], content["FailedCount"], content["ProcessedObjects"]) == (3, 0, 3)


def test_the_watermark_moves_over_keys_done_in_order_only():
    job = AdoptJob("objstore-1", "lake/", False)
    window = collections.deque(["a", "b", "c", "d"])
    job.record("b", None)
    job.record("d", None)
    job.advance(window)
    assert job.watermark is None and job.done_above == {"b", "d"}
    job.record("a", None)
    job.advance(window)
    assert job.watermark == "b" and job.done_above == {"d"} and list(window) == ["c", "d"]
    assert job.is_done("a") and job.is_done("d") and not job.is_done("c")
    reloaded = AdoptJob.from_document(job.document())
    assert (reloaded.watermark, reloaded.done_above, reloaded.processed) == ("b", {"d"}, 3)


def test_with_several_workers_every_object_is_adopted_once(tmp_path):
    world = World(tmp_path, workers=4)
    files = world.lake(12)
    job = world.manager.submit("lake/", False)
    world.manager.run_next()
    assert job.state == "Success" and job.content()["Adopted"] == 12
    assert job.watermark == "lake/011.dcm" and job.done_above == set()
    assert sorted(world.api.instances) == sorted(files)


def test_vanished_objects_are_abandoned_by_the_job(world):
    world.lake(3)
    world.manager.submit("lake/", False)
    world.manager.run_next()
    world.store.delete("lake/001.dcm")
    job = world.manager.submit("lake/", False)
    world.manager.run_next()
    assert (job.content()["Abandoned"], job.content()["AlreadyStored"]) == (1, 2)
    assert len(world.api.instances) == 2
    assert world.outcomes["abandoned"] == 1


def test_cancel_a_pending_job_at_once_and_a_running_one_after_the_object_in_flight(world):
    world.lake(4)
    waiting = world.manager.submit("lake/", False)
    assert world.manager.cancel(waiting.id)
    assert (waiting.state, waiting.error[0]) == ("Failure", 37) and waiting.finished.is_set()
    assert not world.manager.cancel(waiting.id)  # finished already
    assert world.manager.run_next() is None  # nothing left to run

    running = world.manager.submit("lake/", False)
    world.adopter.on_outcome = lambda outcome: world.manager.cancel(running.id)
    world.manager.run_next()
    assert (running.state, running.error[0], running.content()["Adopted"]) == ("Failure", 37, 1)
    reloaded = world.new_manager()
    reloaded.load()
    assert reloaded.get(running.id).state == "Failure"  # persisted as it ended


def test_a_listing_that_fails_fails_the_job_with_the_reason(world):
    world.store.down = True
    job = world.manager.submit("lake/", False)
    world.manager.run_next()
    assert job.state == "Failure" and "could not be listed" in job.error[1] and "down" in job.error[1]


def test_an_adoption_interrupted_before_its_registry_entry_is_already_stored_and_its_owned_object_stays(world):
    data = world.lake(1)[0]
    first = world.adopter.adopt_instance("lake/000.dcm", owned=True)
    world.adopter.registry.forget("lake/000.dcm")  # as if Orthanc was killed before the entry was written
    again = world.adopter.adopt_instance("lake/000.dcm", owned=True)
    assert again.status == "AlreadyStored" and again.instance == first.instance
    assert again.attachment == first.attachment  # the registry records the instance's own attachment
    assert world.store.get("lake/000.dcm") == data  # the discarded attachment did not take the object along
    assert world.adopter.registry.get("lake/000.dcm")["Attachment"] == first.attachment
    world.api.delete(f"/instances/{first.instance}")  # owned: now it goes
    assert "lake/000.dcm" not in world.store.keys()


def test_adoption_counts_are_metrics():
    metrics = StorageMetrics(adopt_outcomes=("adopted", "already_stored", "abandoned", "failed"))
    metrics.adopt_step("adopted")
    metrics.adopt_step("adopted")
    metrics.adopt_step("failed")
    text = metrics.metrics.prometheus_text()
    assert f'{ADOPT_OBJECTS_TOTAL}{{outcome="adopted"}} 2' in text
    assert f'{ADOPT_OBJECTS_TOTAL}{{outcome="abandoned"}} 0' in text


def test_the_route_answers_a_job_at_once(world):
    world.lake(2)
    routes = dict(AdoptRoutes(world.api, world.adopter, world.manager).routes())
    answer = call(routes["/objstore/adopt"], "/objstore/adopt", body=b'{"Prefix": "lake/", "Asynchronous": true}')
    assert answer.status == 200
    job_id = answer.json()["ID"]
    assert answer.json()["Path"] == f"/jobs/{job_id}" and world.manager.get(job_id).state == "Pending"
    assert world.api.posts == []  # nothing adopted before the job runs
    without = dict(AdoptRoutes(world.api, world.adopter).routes())
    refused = call(without["/objstore/adopt"], "/objstore/adopt", body=b'{"Prefix": "", "Asynchronous": true}')
    assert refused.status == 400


# -- the indexer


def indexer_settings(**options):
    section = {"BucketName": "b", "Region": "r", "Indexer": {"Prefixes": ["lake/", "other/"], **options}}
    config, _ = sections.parse({"AwsS3Storage": section})
    return config.common.indexer


def test_an_indexer_round_submits_a_job_per_prefix_unless_one_is_unfinished(world):
    world.lake(2)
    world.lake(1, prefix="other/", seed="1.2.826.0.1.3680043.8.498.202")
    indexer = Indexer(world.manager, indexer_settings(Interval="1s"))
    first = indexer.run_round()
    assert len(first) == 2
    assert indexer.run_round() == []  # both still pending
    world.manager.run_next()
    second = indexer.run_round()
    assert len(second) == 1 and world.manager.get(second[0]).prefix == "lake/"
    world.manager.run_next()
    jobs = [world.manager.get(job_id) for job_id in first]
    assert [job.content()["Origin"] for job in jobs] == [ORIGIN, ORIGIN]
    assert [job.content()["Adopted"] for job in jobs] == [2, 1]
    assert len(world.api.instances) == 3


def test_the_indexer_options():
    settings = indexer_settings()
    assert (settings.prefixes, settings.interval, settings.take_ownership, settings.enabled) == (
        ("lake/", "other/"), 300, False, True)
    assert indexer_settings(Interval="90s", TakeOwnership=True, Enabled=False).interval == 90
    config, _ = sections.parse({"AwsS3Storage": {"BucketName": "b", "Region": "r"}})
    assert config.common.indexer is None  # off by default
    assert {spec.name for spec in sections.options(sections.INDEXER_SECTION)} == {
        "Prefixes", "Interval", "TakeOwnership", "Enabled"}


@pytest.mark.parametrize(("indexer", "message"), [
    ({"Prefixes": "lake/"}, "AwsS3Storage.Indexer.Prefixes: 'lake/' (string) is invalid; allowed: a non-empty array"),
    ({"Prefixes": []}, "AwsS3Storage.Indexer.Prefixes: [] (array) is invalid"),
    ({"Prefixes": ["a/", "a/"]}, "AwsS3Storage.Indexer.Prefixes: ['a/', 'a/'] (array) is invalid"),
    ({"Prefixes": [3]}, "AwsS3Storage.Indexer.Prefixes: [3] (array) is invalid"),
    ({"Interval": "5m"}, "AwsS3Storage.Indexer.Prefixes: missing, and it is required"),
    ({"Prefixes": ["a/"], "Interval": "5 minutes"},
     "AwsS3Storage.Indexer.Interval: '5 minutes' is not a duration; allowed: a whole number followed by s, m, h"),
    ({"Prefixes": ["a/"], "Interval": "0s"}, "AwsS3Storage.Indexer.Interval: '0s' is too short; allowed: at least"),
    ({"Prefixes": ["a/"], "TakeOwnership": "yes"}, "AwsS3Storage.Indexer.TakeOwnership: 'yes' (string) is invalid"),
    ({"Prefixes": ["a/"], "Enabled": 1}, "AwsS3Storage.Indexer.Enabled: 1 (number) is invalid; allowed: true or"),
    ("lake/", "AwsS3Storage.Indexer: must be a JSON object, got string"),
])
def test_bad_indexer_options_name_the_field_the_value_and_what_is_allowed(indexer, message):
    with pytest.raises(ConfigError) as refused:
        sections.parse({"AwsS3Storage": {"BucketName": "b", "Region": "r", "Indexer": indexer}})
    assert any(problem.startswith(message) for problem in refused.value.problems), refused.value.problems


def test_an_unknown_indexer_option_is_warned_about_with_the_closest_name():
    _, warnings = sections.parse({"AwsS3Storage": {"BucketName": "b", "Region": "r",
                                                   "Indexer": {"Prefixes": ["a/"], "Intervall": "1m"}}})
    assert any('unknown option "Intervall"' in warning and '"Interval"' in warning for warning in warnings)
