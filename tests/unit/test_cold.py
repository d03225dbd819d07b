"""Cold storage classes without a server: warnings, refused reads, RestoreOnRead, POST /objstore/restore, its jobs."""

import hashlib
import json
import uuid as uuidlib

import pytest
from support.fake_orthanc import FakeOrthancApi, call
from support.orthanc import wait_for

from orthanc_objstore import build
from orthanc_objstore.areas.contract import ObjectArea
from orthanc_objstore.areas.naming import LEGACY, Naming
from orthanc_objstore.build import build_hybrid_area
from orthanc_objstore.config import sections as config
from orthanc_objstore.config.sections import EncryptionConfig, MasterKey
from orthanc_objstore.errors import ConfigError, NeedsRestore, NotFound
from orthanc_objstore.jobs import restore as restore_jobs
from orthanc_objstore.jobs import scheduler as jobs
from orthanc_objstore.jobs.journal import FileJobStore
from orthanc_objstore.jobs.steps import FAILED, FAILURE, SUCCESS, move_attachment
from orthanc_objstore.metrics.metered import ERRORS_TOTAL, RESTORE_FILES_TOTAL, MeteredArea, StorageMetrics
from orthanc_objstore.offline import cli
from orthanc_objstore.orthanc_side import routes
from orthanc_objstore.orthanc_side.callbacks import ErrorCodes, StorageCallbacks, StorageFailure
from orthanc_objstore.orthanc_side.cold import ColdReads, RestorePolicy
from orthanc_objstore.orthanc_side.restore import RestoreRoutes
from orthanc_objstore.port.index import Attachment, RestIndex
from orthanc_objstore.storage import protocol
from orthanc_objstore.storage.cached import CachedStore, ReadCache
from orthanc_objstore.storage.encrypted import EncryptedStore
from orthanc_objstore.storage.providers.memory import MemoryStore


class ColdStore(MemoryStore):
    """A memory store with S3-like classes: ``freeze(key)`` puts an object in GLACIER; a restore takes
    ``polls_to_restore`` looks at its state before the object becomes readable (0: at once, as moto)."""

    restore_tiers = ("Standard", "Bulk", "Expedited")

    def __init__(self, polls_to_restore=0):
        super().__init__()
        self.frozen: dict[str, int | None] = {}  # key -> None (not restored) or looks left before readable
        self.polls_to_restore = polls_to_restore
        self.restores: list[tuple[str, int, str]] = []

    def freeze(self, key):
        self.frozen[key] = None

    def get(self, key, *, owner=None):
        data = super().get(key, owner=owner)
        if key in self.frozen:
            raise NeedsRestore(f"cold read of {key!r}: in GLACIER, restore it first", key, "GLACIER",
                               self.frozen[key] is not None)
        return data

    def head(self, key):
        return len(MemoryStore.get(self, key))  # a HEAD answers for cold objects too

    def cold_state(self, key):
        self.head(key)
        if key not in self.frozen:
            return protocol.ColdState("STANDARD")
        left = self.frozen[key]
        if left is None:
            return protocol.ColdState("GLACIER", protocol.NOT_RESTORED)
        if left <= 0:
            del self.frozen[key]
            return protocol.ColdState("GLACIER", protocol.RESTORED, "tomorrow")
        self.frozen[key] = left - 1
        return protocol.ColdState("GLACIER", protocol.IN_PROGRESS)

    def restore(self, key, days, tier):
        state = self.cold_state(key)
        if state.restore == protocol.NOT_RESTORED:
            self.restores.append((key, days, tier))
            self.frozen[key] = self.polls_to_restore
            return self.cold_state(key)
        return state


U1, U2 = str(uuidlib.uuid4()), str(uuidlib.uuid4())


def area_with(store, *uuids, frozen=()):
    area = ObjectArea(store, Naming())
    for uuid in uuids:
        area.create(uuid, 1, f"dicom {uuid}".encode())
        if uuid in frozen:
            store.freeze(Naming().key(uuid, 1))
    return area


# --- configuration -----------------------------------------------------------------------------------------

S3 = {"BucketName": "b", "Region": "eu-west-1"}
AZURE = {"ConnectionString": "AccountName=a;AccountKey=b", "ContainerName": "cont"}


@pytest.mark.parametrize("section, options, warned", [
    ("AwsS3Storage", {"StorageClass": "GLACIER"}, "StorageClass is GLACIER"),
    ("AwsS3Storage", {"StorageClass": "DEEP_ARCHIVE"}, "StorageClass is DEEP_ARCHIVE"),
    ("AwsS3Storage", {"StorageClass": "GLACIER_IR"}, None),
    ("AwsS3Storage", {"StorageClass": "STANDARD_IA"}, None),
    ("AzureBlobStorage", {"AccessTier": "Archive"}, "AccessTier is Archive"),
    ("AzureBlobStorage", {"AccessTier": "Cold"}, None),
])
def test_cold_classes_are_warned_about(section, options, warned):
    base = S3 if section == "AwsS3Storage" else AZURE
    _, warnings = config.parse({section: {**base, **options}})
    cold = [w for w in warnings if "must be restored" in w]
    if warned is None:
        assert cold == []
    else:
        assert len(cold) == 1 and warned in cold[0] and "POST /objstore/restore" in cold[0]


def test_restore_options_defaults_and_bad_values():
    parsed, _ = config.parse({"AwsS3Storage": dict(S3)})
    assert (parsed.common.restore_on_read, parsed.common.restore_days, parsed.common.restore_tier) == \
        (False, 7, "Standard")
    with pytest.raises(ConfigError) as caught:
        config.parse({"AwsS3Storage": {**S3, "RestoreTier": "High"}})
    assert "RestoreTier" in str(caught.value) and "Standard, Bulk, Expedited" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        config.parse({"AzureBlobStorage": {**AZURE, "RestoreTier": "Bulk"}})
    assert "Standard, High" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        config.parse({"AwsS3Storage": {**S3, "RestoreDays": 0}})
    assert "RestoreDays" in str(caught.value)


def test_check_config_prints_the_warning(tmp_path, capsys):
    path = tmp_path / "orthanc.json"
    path.write_text(json.dumps({"AwsS3Storage": {**S3, "StorageClass": "GLACIER"}}))
    assert cli.main(["check-config", str(path)]) == 0
    assert "warning: AwsS3Storage.StorageClass is GLACIER" in capsys.readouterr().err


# --- the store capability through wrappers and areas ---------------------------------------------------------

def test_cold_state_passes_through_encryption_and_metering(tmp_path):
    key_file = tmp_path / "k"
    key_file.write_text("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    encryption = EncryptionConfig(MasterKey(1, str(key_file), b"0123456789abcdef0123456789abcdef"))
    cold = ColdStore()
    metrics = StorageMetrics(restore_outcomes=restore_jobs.OUTCOMES)
    area = MeteredArea(ObjectArea(EncryptedStore(cold, build.keyring(encryption), encryption.format), Naming(encrypted=True)), metrics,
                       "object-storage")
    area.create(U1, 1, b"secret dicom")
    cold.freeze(Naming(encrypted=True).key(U1, 1))
    assert area.restore_tiers == ("Standard", "Bulk", "Expedited")
    assert [location.storage for location in area.locate(U1, 1)] == ["object-storage"]  # found, though cold
    assert area.cold_state(U1, 1) == protocol.ColdState("GLACIER", protocol.NOT_RESTORED)
    with pytest.raises(NeedsRestore):
        area.read(U1, 1)
    assert metrics.metrics.value(ERRORS_TOTAL, operation="read", storage="object-storage", kind="needs_restore") == 1
    assert area.restore(U1, 1, 3, "Bulk").readable
    assert cold.restores == [(Naming(encrypted=True).key(U1, 1), 3, "Bulk")]
    assert area.read(U1, 1) == b"secret dicom"
    with pytest.raises(NotFound):
        area.cold_state(U2, 1)


def test_a_store_without_classes_is_always_readable():
    area = area_with(MemoryStore(), U1)
    assert area.restore_tiers == ()
    assert area.cold_state(U1, 1).readable and area.restore(U1, 1, 7, "Standard").readable


# --- the callbacks ---------------------------------------------------------------------------------------------

class Reaper:
    def schedule(self, uuid, content_type):
        pass


@pytest.mark.parametrize("restore_on_read", [False, True])
def test_a_cold_read_is_refused_with_its_code_and_a_message(restore_on_read):
    store = ColdStore(polls_to_restore=5)
    area = area_with(store, U1, frozen={U1})
    steps = []
    cold_reads = ColdReads(area, RestorePolicy(restore_on_read, 2, "Expedited"), steps.append)
    callbacks = StorageCallbacks(area, Reaper(), ErrorCodes(needs_restore=1000002), cold_reads=cold_reads)
    _, read, _ = callbacks.v3()
    code, data = read(U1, 1, 0, 4, b"")
    assert (code, data) == (1000002, b"")
    with pytest.raises(StorageFailure) as caught:
        callbacks.read(U1, 1)
    message = str(caught.value)
    assert U1 in message and "GLACIER" in message and "restore" in message
    if restore_on_read:
        assert store.restores == [(Naming().key(U1, 1), 2, "Expedited")]  # once: the second read sees it running
        assert steps == ["requested"]
    else:
        assert store.restores == [] and steps == [] and "RestoreOnRead" not in message


# --- moves ---------------------------------------------------------------------------------------------------

def test_a_move_of_a_cold_file_fails_saying_so_and_keeps_it():
    store = ColdStore()
    objects = area_with(store, U1, frozen={U1})
    file_system = ObjectArea(MemoryStore(), Naming(structure=LEGACY), storage_name="file-system")
    data = f"dicom {U1}".encode()
    attachment = Attachment("instances/d1", U1, 1, len(data), hashlib.md5(data).hexdigest())
    with pytest.raises(NeedsRestore) as caught:
        move_attachment(attachment, objects, file_system)
    assert "GLACIER" in str(caught.value)
    assert file_system.locate(U1, 1) == [] and objects.locate(U1, 1)


def test_a_move_job_reports_the_cold_file(tmp_path):
    store = ColdStore()
    objects = area_with(store, U1, frozen={U1})
    file_system = ObjectArea(MemoryStore(), Naming(structure=LEGACY), storage_name="file-system")
    world = World(objects)
    manager = jobs.JobManager(RestIndex(world.api), {"file-system": file_system, "object-storage": objects}.get,
                              FileJobStore(str(tmp_path)), workers=1)
    manager.start()
    try:
        job = manager.submit({"Instances": ["d1"]}, "file-system")
        assert job.finished.wait(20)
    finally:
        manager.stop()
    assert job.state == FAILURE and job.counts()["FailedFiles"] == 1 and job.done[0][0] == FAILED
    assert "GLACIER" in job.error[1] and "restore" in job.error[1]


# --- POST /objstore/restore and restore jobs ----------------------------------------------------------------------

class World:
    """Instances d1 (cold) and d2 (readable) of series c0, over a fake port."""

    def __init__(self, area, uuids=(U1, U2)):
        self.area = area
        self.api = FakeOrthancApi({"/series/c0": {"Instances": ["d1", "d2"]}})
        for instance, uuid in zip(("d1", "d2"), uuids, strict=True):
            size = len(f"dicom {uuid}")
            folder = f"/instances/{instance}"
            self.api.answers.update({folder: {}, f"{folder}/attachments?full": {"dicom": 1},
                                     f"{folder}/attachments/1/info": {"Uuid": uuid, "CompressedSize": size}})


ASYNCHRONOUS = b'{"Resources": ["c0"], "Asynchronous": true}'


def restore_world(tmp_path, polls_to_restore=0, store=None):
    store = store or ColdStore(polls_to_restore)
    world = World(area_with(store, U1, U2, frozen={U1}))
    manager = restore_jobs.RestoreManager(RestIndex(world.api), world.area, FileJobStore(str(tmp_path)),
                                          poll_first=0.01, poll_max=0.05)
    restore = RestoreRoutes(world.api, world.area, manager, RestorePolicy()).routes()[0][1]
    listing = dict(routes.MoveStorageRoutes(world.api, world.area, None, "Disabled", lambda: [],
                                            other_jobs=(manager,)).routes())
    return store, world, manager, restore, listing


@pytest.mark.parametrize("body, status, says", [
    (b"{", 400, "not JSON"),
    (b'{"Resources": []}', 400, "non-empty array"),
    (b'{"Resources": ["c0"], "Days": 0}', 400, "from 1 to 36500"),
    (b'{"Resources": ["c0"], "Tier": "High"}', 400, "Standard, Bulk, Expedited"),
    (b'{"Resources": ["c0"], "Asynchronous": "yes"}', 400, "true or false"),
    (b'{"Resources": ["c0"], "Target": 1}', 400, "unknown field(s) Target"),
    (b'{"Resources": ["0000"]}', 404, "unknown resource(s)"),
])
def test_restore_refuses_bad_requests(tmp_path, body, status, says):
    store, _, _, restore, _ = restore_world(tmp_path)
    answer = call(restore, "/objstore/restore", body=body)
    assert answer.status == status and says in json.loads(answer.body)["Message"]
    assert store.restores == []


def test_restore_without_cold_classes_says_so(tmp_path):
    world = World(area_with(MemoryStore(), U1, U2))
    manager = restore_jobs.RestoreManager(RestIndex(world.api), world.area, FileJobStore(str(tmp_path)))
    restore = RestoreRoutes(world.api, world.area, manager, RestorePolicy()).routes()[0][1]
    answer = call(restore, "/objstore/restore", body=b'{"Resources": ["c0"]}')
    assert answer.status == 400 and "no storage class that needs a restore" in json.loads(answer.body)["Message"]


def test_synchronous_restore_counts_and_touches_only_cold_files(tmp_path):
    store, _, _, restore, _ = restore_world(tmp_path, polls_to_restore=3)
    answer = call(restore, "/objstore/restore", body=b'{"Resources": ["c0"], "Days": 2, "Tier": "Bulk"}')
    assert answer.status == 200
    summary = json.loads(answer.body)
    assert (summary["TotalFiles"], summary["AlreadyReadableFiles"], summary["RestoreRequestedFiles"],
            summary["RestoreInProgressFiles"], summary["FailedFiles"]) == (2, 1, 1, 0, 0)
    assert store.restores == [(Naming().key(U1, 1), 2, "Bulk")]
    again = json.loads(call(restore, "/objstore/restore", body=b'{"Resources": ["c0"]}').body)
    assert again["RestoreInProgressFiles"] == 1 and len(store.restores) == 1


def test_asynchronous_restore_is_a_job_that_ends_when_readable(tmp_path):
    store, world, manager, restore, listing = restore_world(tmp_path, polls_to_restore=3)
    manager.start()
    try:
        answer = json.loads(call(restore, "/objstore/restore", body=ASYNCHRONOUS).body)
        job = manager.get(answer["ID"])
        assert answer["Path"] == f"/jobs/{job.id}"
        assert job.finished.wait(20)
        assert job.state == SUCCESS and job.polls >= 3
        assert world.area.read(U1, 1) == f"dicom {U1}".encode()
        listed = json.loads(call(listing["/jobs"], "/jobs", "GET").body)
        assert job.id in listed
        status = json.loads(call(listing[f"/jobs/({routes.JOB_ID_PREFIX}[0-9a-f-]+)"], f"/jobs/{job.id}", "GET",
                                 groups=(job.id,)).body)
        assert status["Type"] == "ObjstoreRestore" and status["State"] == "Success" and status["Progress"] == 100
        assert status["Content"]["ReadableFiles"] == 2 and status["Content"]["Series"] == ["c0"]
    finally:
        manager.stop()


def test_a_restore_job_resumes_after_a_restart_and_can_be_cancelled(tmp_path):
    store, world, manager, restore, listing = restore_world(tmp_path, polls_to_restore=10 ** 6)
    job_id = json.loads(call(restore, "/objstore/restore", body=ASYNCHRONOUS).body)["ID"]
    manager.start()
    assert wait_for(lambda: manager.get(job_id).polls >= 2, timeout=20)
    manager.stop()
    assert len(store.restores) == 1
    again = restore_jobs.RestoreManager(RestIndex(world.api), world.area, FileJobStore(str(tmp_path)),
                                        poll_first=0.01, poll_max=0.05)
    again.start()
    try:
        resumed = again.get(job_id)
        assert resumed is not None and resumed.plan is not None and resumed.outcomes
        assert wait_for(lambda: resumed.polls > manager.get(job_id).polls, timeout=20)
        assert len(store.restores) == 1  # not asked again
        cancel = dict(routes.MoveStorageRoutes(world.api, world.area, None, "Disabled", lambda: [],
                                               other_jobs=(again,)).routes())
        answer = call(cancel[f"/jobs/({routes.JOB_ID_PREFIX}[0-9a-f-]+)/cancel"], f"/jobs/{job_id}/cancel",
                      groups=(job_id,))
        assert answer.status == 200
        assert resumed.finished.wait(20) and resumed.state == FAILURE and resumed.error[0] == 37
    finally:
        again.stop()


def test_a_restore_job_fails_when_a_file_is_missing(tmp_path):
    store, world, manager, restore, _ = restore_world(tmp_path)
    store.delete(Naming().key(U2, 1))
    metrics = StorageMetrics(restore_outcomes=restore_jobs.OUTCOMES)
    manager.on_step = metrics.restore_step
    manager.start()
    try:
        job_id = json.loads(call(restore, "/objstore/restore",
                                 body=b'{"Resources": ["c0"], "Asynchronous": true}').body)["ID"]
        job = manager.get(job_id)
        assert job.finished.wait(20)
    finally:
        manager.stop()
    assert job.state == FAILURE and "1 of 2 file(s) could not be restored" in job.error[1]
    assert job.counts()["MissingFiles"] == 1 and job.counts()["ReadableFiles"] == 1
    assert metrics.metrics.value(RESTORE_FILES_TOTAL, outcome="missing") == 1
    assert metrics.metrics.value(RESTORE_FILES_TOTAL, outcome="requested") == 1  # moto-like: restored at once


def test_storage_location_shows_class_and_restore_state(tmp_path):
    store = ColdStore(polls_to_restore=5)
    objects = area_with(store, U1, U2, frozen={U1})
    file_system = ObjectArea(MemoryStore(), Naming(structure=LEGACY), storage_name="file-system")
    area = build_hybrid_area(objects, file_system, "WriteToObjectStorage")
    world = World(area)
    answer = routes.storage_locations(RestIndex(world.api), area, "Series", "c0")
    by_uuid = {item["Uuid"]: item for item in answer}
    assert (by_uuid[U1]["StorageClass"], by_uuid[U1]["Restore"]) == ("GLACIER", "not-restored")
    assert (by_uuid[U2]["StorageClass"], by_uuid[U2]["Restore"]) == ("STANDARD", "not-needed")
    area.restore(U1, 1, 7, "Standard")
    assert routes.storage_locations(RestIndex(world.api), area, "Instance", "d1")[0]["Restore"] == "in-progress"


# --- providers' restore states that the emulators cannot show (they restore at once) ------------------------------

def test_s3_restore_in_progress_is_read_from_its_header_and_said_on_reads():
    import types

    import botocore.exceptions

    from orthanc_objstore.config.sections import S3Config
    from orthanc_objstore.storage.providers import s3

    assert s3._cold_state({"StorageClass": "GLACIER", "Restore": 'ongoing-request="true"'}).restore == "in-progress"
    restored = s3._cold_state({"StorageClass": "DEEP_ARCHIVE",
                               "Restore": 'ongoing-request="false", expiry-date="Fri, 04 Dec 2026 00:00:00 GMT"'})
    assert (restored.restore, restored.expiry) == ("restored", "Fri, 04 Dec 2026 00:00:00 GMT")
    assert s3._cold_state({}).restore == "not-needed"  # no StorageClass in a HEAD answer: STANDARD

    class Client:
        meta = types.SimpleNamespace(config=types.SimpleNamespace(), events=None)
        restored = []

        def get_object(self, **_):
            raise botocore.exceptions.ClientError({"Error": {"Code": "InvalidObjectState", "StorageClass": "GLACIER"},
                                                   "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")

        def head_object(self, **_):
            return {"StorageClass": "GLACIER", "Restore": 'ongoing-request="true"', "ContentLength": 4}

        def restore_object(self, **request):
            self.restored.append(request)

    client = Client()
    store = s3.S3Store(S3Config(bucket_name="b", region="us-east-1"), client=client)
    with pytest.raises(NeedsRestore) as caught:
        store.get("x.dcm")
    assert caught.value.restoring and "restore is in progress" in str(caught.value)
    assert store.restore("x.dcm", 7, "Standard").restore == "in-progress" and client.restored == []


def test_azure_rehydration_in_progress():
    import types

    from azure.core.exceptions import HttpResponseError

    from orthanc_objstore.storage.providers import azure

    pending = types.SimpleNamespace(blob_tier="Archive", archive_status="rehydrate-pending-to-hot")
    assert azure._cold_state(pending) == protocol.ColdState("Archive", protocol.IN_PROGRESS)
    assert azure._cold_state(types.SimpleNamespace(blob_tier="Archive", archive_status=None)).restore == "not-restored"
    error = HttpResponseError(message="being rehydrated")
    error.error_code = "BlobBeingRehydrated"
    error.status_code = 409
    translated = azure._translate(error, "x.dcm", "read")
    assert isinstance(translated, NeedsRestore) and translated.restoring and "being rehydrated" in str(translated)


def test_a_cold_object_behind_the_read_cache_is_still_cold_and_restored_through_it():
    """The read cache sits in front of every provider: it must not make cold objects look readable."""
    cold = ColdStore()
    cached = CachedStore(cold, ReadCache(1 << 20, 1 << 20, "", 0))
    cold.put("c.dcm", b"cold dicom")
    cold.freeze("c.dcm")
    assert cached.restore_tiers == ("Standard", "Bulk", "Expedited")
    assert cached.cold_state("c.dcm") == protocol.ColdState("GLACIER", protocol.NOT_RESTORED)
    with pytest.raises(NeedsRestore):
        cached.get("c.dcm")
    assert cached.restore("c.dcm", 3, "Bulk").readable and cold.restores == [("c.dcm", 3, "Bulk")]
    assert cached.get("c.dcm") == b"cold dicom"
