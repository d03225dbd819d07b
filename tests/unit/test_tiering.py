"""The tiering policy over a fake Orthanc: durations and windows, which studies move, pauses, bounds, restarts."""

import datetime
import threading

import pytest
from support.fake_archive import FakeArchive

from orthanc_objstore.config import sections as config
from orthanc_objstore.config.schedule import Window, parse_duration
from orthanc_objstore.config.sections import TieringConfig
from orthanc_objstore.errors import ConfigError
from orthanc_objstore.jobs import scheduler as jobs
from orthanc_objstore.jobs.tiering import TIERING_PRIORITY, TieringPolicy, last_update_epoch

DAY = 86400


def test_durations():
    assert [parse_duration(text) for text in ("90s", "15m", "12h", "30d", "0s")] == [90, 900, 43200, 2592000, 0]
    for bad in ("", "30", "1.5h", "-1d", "1w", " 1d", "1D", 30, None):
        with pytest.raises(ValueError, match='allowed: a whole number followed by s, m, h or d'):
            parse_duration(bad)


def test_windows():
    at = lambda hour, minute=0: datetime.datetime(2026, 12, 1, hour, minute)  # noqa: E731
    night = Window.parse("01:00-05:00")
    assert [night.contains(at(h, m)) for h, m in ((0, 59), (1, 0), (4, 59), (5, 0), (12, 0))] == [
        False, True, True, False, False]
    wrapping = Window.parse("22:30-06:00")
    assert [wrapping.contains(at(h, m)) for h, m in ((22, 29), (22, 30), (23, 59), (0, 0), (5, 59), (6, 0))] == [
        False, True, True, True, True, False]
    assert str(wrapping) == "22:30-06:00"
    for bad, why in (("1:00-5:00", "allowed"), ("24:00-05:00", "hours go from 00 to 23"),
                     ("01:60-05:00", "minutes"), ("01:00-01:00", "empty window"), ("01:00", "allowed"), (5, "allowed")):
        with pytest.raises(ValueError, match=why):
            Window.parse(bad)


def parse(mode="WriteToFileSystem", **tiering):
    section = {"BucketName": "b", "Region": "r", "HybridMode": mode, "Tiering": tiering}
    return config.parse({"AwsS3Storage": section})[0].common.tiering


def test_configuration():
    assert parse(MoveToObjectStorageAfter="30d") == TieringConfig(30 * DAY, 3600, None, 8, True)
    assert parse(MoveToObjectStorageAfter="0s", CheckEvery="90s", Window="22:00-06:00", MaxConcurrentFiles=2,
                 Enabled=False) == TieringConfig(0, 90, Window(22 * 60, 6 * 60), 2, False)
    with pytest.raises(ConfigError) as failure:
        parse(MoveToObjectStorageAfter="30 days", CheckEvery=60, Window="1-5", MaxConcurrentFiles=0)
    assert sorted(failure.value.problems) == [
        "AwsS3Storage.Tiering.CheckEvery: 60 is not a duration; allowed: a whole number followed by s, m, h or d, "
        'e.g. "90s", "15m", "12h", "30d"',
        "AwsS3Storage.Tiering.MaxConcurrentFiles: 0 (number) is invalid; allowed: an integer from 1 to 64",
        "AwsS3Storage.Tiering.MoveToObjectStorageAfter: '30 days' is not a duration; allowed: a whole number "
        'followed by s, m, h or d, e.g. "90s", "15m", "12h", "30d"',
        "AwsS3Storage.Tiering.Window: '1-5' is not a window; allowed: \"HH:MM-HH:MM\" in local time, e.g. "
        '"01:00-05:00" (may wrap midnight: "22:00-06:00")']
    with pytest.raises(ConfigError, match="Tiering: only works in hybrid mode"):
        parse("Disabled", MoveToObjectStorageAfter="30d")
    with pytest.raises(ConfigError, match="MoveToObjectStorageAfter: missing, and it is required"):
        parse()


def test_last_update_is_utc():
    assert last_update_epoch("19700102T000001") == DAY + 1
    assert last_update_epoch("20261201T112233.123") == datetime.datetime(
        2026, 12, 1, 11, 22, 33, tzinfo=datetime.UTC).timestamp()


@pytest.fixture
def archive(tmp_path):
    world = FakeArchive(tmp_path)
    world.manager.start()
    yield world
    world.manager.stop()


def policy_of(archive, tmp_path, after="30d", window=None, bound=8, now=None, manager=None):
    tiering = TieringConfig(parse_duration(after), 3600, window and Window.parse(window), bound)
    clock = now or (lambda: datetime.datetime(2026, 12, 1, 12, 0))
    return TieringPolicy(archive.api, manager or archive.manager, tiering, str(tmp_path / "tiering.jsonl"),
                         clock=lambda: archive.now, local_now=clock)


def test_old_studies_move_recent_ones_stay_and_moved_ones_are_not_examined_again(archive, tmp_path):
    old = [archive.add_study(40 * DAY) for _ in range(3)]
    recent = archive.add_study(2 * DAY)
    policy = policy_of(archive, tmp_path)
    report = policy.run_pass()
    assert (report.examined, report.recent, report.moved, report.complete) == (4, 1, 3, True)
    assert [(archive.on_file_system(s), archive.on_object_storage(s)) for s in old] == [(0, 2)] * 3
    assert (archive.on_file_system(recent), archive.on_object_storage(recent)) == (2, 0)
    job = archive.manager.get(report.jobs[0])
    assert job.priority == TIERING_PRIORITY and job.groups == {"Studies": old}

    archive.api.calls.clear()
    again = policy.run_pass()
    assert (again.examined, again.already_moved, again.recent, again.moved) == (4, 3, 1, 0)
    assert archive.api.calls == ["/studies?expand&since=0&limit=1000"]  # nothing but the listing

    archive.add_study(0, instances=1, study=old[0])  # a new instance: a new LastUpdate, on the file system
    assert archive.on_file_system(old[0]) == 1
    assert policy.run_pass().recent == 2  # not old any more: it stays
    archive.now += 31 * DAY
    later = policy.run_pass()
    assert later.moved == 2 and archive.on_file_system(old[0]) == 0 and archive.on_object_storage(old[0]) == 3


def test_the_state_survives_a_restart(archive, tmp_path):
    studies = [archive.add_study(40 * DAY) for _ in range(2)]
    policy_of(archive, tmp_path).run_pass()
    restarted = policy_of(archive, tmp_path)
    assert restarted.run_pass().already_moved == 2
    assert all(archive.on_object_storage(study) == 2 for study in studies)


def test_zero_empties_the_file_system_side_of_write_to_object_storage(tmp_path):
    world = FakeArchive(tmp_path, mode="WriteToObjectStorage")
    hybrid, world.area = world.area, world.file_system  # files Orthanc wrote before it used the plugin
    studies = [world.add_study(age) for age in (0, 10, 1000)]
    world.area = hybrid
    studies.append(world.add_study(0))  # written since, to object storage
    assert [world.on_file_system(study) for study in studies] == [2, 2, 2, 0]
    world.manager.start()
    try:
        report = policy_of(world, tmp_path, after="0s").run_pass()
    finally:
        world.manager.stop()
    assert report.moved == 4 and all(world.on_file_system(study) == 0 for study in studies)


def test_outside_the_window_nothing_is_listed_and_a_running_job_pauses(archive, tmp_path):
    inside = [True]
    clock = lambda: datetime.datetime(2026, 12, 1, 2 if inside[0] else 12, 0)  # noqa: E731
    policy = policy_of(archive, tmp_path, window="01:00-05:00", now=clock)
    archive.add_study(40 * DAY, instances=1)
    inside[0] = False
    report = policy.run_pass()
    assert (report.examined, report.complete, archive.api.calls) == (0, False, [])

    archive.manager.stop()  # the job is submitted while the worker is off: it must wait for the window
    inside[0] = True
    job = archive.manager.submit({"Studies": list(archive.api.studies)}, "object-storage", TIERING_PRIORITY)
    policy.state.append({"job": job.id, "studies": [[s, l] for s, l in archive.api.studies.items()]})
    inside[0] = False
    archive.manager.start()
    assert not job.finished.wait(0.5) and job.state == "Pending"
    inside[0] = True
    assert job.finished.wait(jobs.PAUSED_RECHECK_SECONDS + 10) and job.state == "Success"


def test_max_concurrent_files_bounds_a_policy_job(tmp_path):
    world = FakeArchive(tmp_path, workers=4)
    study = world.add_study(40 * DAY, instances=12)
    running, highest, lock = [0], [0], threading.Lock()
    create = world.objects.create

    def counting(uuid, content_type, data):
        with lock:
            running[0] += 1
            highest[0] = max(highest[0], running[0])
        try:
            threading.Event().wait(0.01)
            return create(uuid, content_type, data)
        finally:
            with lock:
                running[0] -= 1

    world.objects.create = counting
    world.manager.start()
    try:
        assert policy_of(world, tmp_path, bound=1).run_pass().moved == 1
    finally:
        world.manager.stop()
    assert highest[0] == 1 and world.on_object_storage(study) == 12


def test_an_administrators_job_goes_first(archive, tmp_path):
    gate = threading.Event()
    create = archive.objects.create
    archive.objects.create = lambda *args: (gate.wait(10), create(*args))[1]
    policy = policy_of(archive, tmp_path, bound=1)
    archive.add_study(40 * DAY, instances=6)
    admin_study = archive.add_study(0, instances=1)
    passing = threading.Thread(target=policy.run_pass)
    passing.start()
    assert _wait(lambda: archive.manager.jobs() and archive.manager.jobs()[0].state == "Running")
    tiering_job = archive.manager.jobs()[0]
    admin = archive.manager.submit({"Studies": [admin_study]}, "object-storage")
    gate.set()
    assert admin.finished.wait(10) and admin.state == "Success"
    passing.join(20)
    assert tiering_job.state == "Success"
    assert admin.completed < tiering_job.completed  # the policy's job gave way, then went on


def _wait(condition, timeout=10):
    event = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        event.wait(0.01)
    return False


def test_a_policy_job_interrupted_by_a_restart_resumes_bounded_and_is_recorded(archive, tmp_path):
    study = archive.add_study(40 * DAY, instances=3)
    archive.manager.stop()  # Orthanc stops before the job ran
    policy = policy_of(archive, tmp_path, bound=1)
    job = archive.manager.submit({"Studies": [study]}, "object-storage", TIERING_PRIORITY)
    policy.state.append({"job": job.id, "studies": [[study, archive.api.studies[study]]]})

    restarted = jobs.JobManager(archive.manager.runner.index, archive.area.side, archive.manager.job_store, workers=4)
    policy = policy_of(archive, tmp_path, bound=1, manager=restarted)
    restarted.start()
    try:
        assert restarted.limits(restarted.get(job.id)).workers == 1  # still the policy's, after the restart
        report = policy.run_pass()
    finally:
        restarted.stop()
    assert restarted.get(job.id).state == "Success" and archive.on_object_storage(study) == 3
    assert (report.moved, report.already_moved, report.submitted) == (1, 1, 0)
