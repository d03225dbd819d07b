"""A fake Orthanc archive for the tiering policy: studies (one series each) with DICOM files in a hybrid area."""

import calendar
import hashlib
import re
import time
import uuid as uuidlib

from orthanc_objstore.jobs import scheduler as jobs
from orthanc_objstore.jobs.journal import FileJobStore
from orthanc_objstore.port.index import RestIndex

from .fake_orthanc import FakeOrthancApi
from .hybrid_world import hybrid_world

_STUDIES = re.compile(r"/studies\?expand&since=([0-9]+)&limit=([0-9]+)")


def orthanc_time(epoch: float) -> str:
    """``LastUpdate`` as Orthanc writes it (UTC)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(epoch))


class ArchiveApi(FakeOrthancApi):
    """Answers ``/studies?expand&since&limit`` from ``studies`` (id → LastUpdate), in insertion order."""

    def __init__(self):
        super().__init__()
        self.studies: dict[str, str] = {}

    def get_json(self, uri):
        match = _STUDIES.fullmatch(uri)
        if match is None:
            return super().get_json(uri)
        self._call(uri)
        since, limit = int(match.group(1)), int(match.group(2))
        return [{"ID": study, "Type": "Study", "LastUpdate": last}
                for study, last in list(self.studies.items())[since:since + limit]]


class FakeArchive:
    """``add_study(age)`` stores a study ``age`` seconds old; files start on ``primary``'s side."""

    def __init__(self, folder, mode="WriteToFileSystem", now=1_800_000_000.0, workers=4, file_system=None):
        self.now = now
        world = hybrid_world(mode, file_system=file_system)
        self.objects, self.file_system, self.area = world.objects, world.file_system, world.area
        self.api = ArchiveApi()
        self.files: dict[str, list[str]] = {}  # study → uuids
        self.manager = jobs.JobManager(RestIndex(self.api), self.area.side, FileJobStore(str(folder / "jobs")),
                                       workers=workers)

    def add_study(self, age: float, instances: int = 2, study: str | None = None) -> str:
        study = study or uuidlib.uuid4().hex[:8]
        series = f"{study}-s"
        known = self.api.answers.get(f"/series/{series}", {"Instances": []})["Instances"]
        names = [f"{study}-i{len(known) + number}" for number in range(instances)]
        self.api.answers[f"/studies/{study}"] = {"Series": [series]}
        self.api.answers[f"/series/{series}"] = {"Instances": known + names}
        for name in names:
            data = f"dicom of {name}".encode() * 20
            uuid = str(uuidlib.uuid4())
            self.area.create(uuid, 1, data)
            self.files.setdefault(study, []).append(uuid)
            self.api.answers.update({
                f"/instances/{name}": {}, f"/instances/{name}/attachments?full": {"dicom": 1},
                f"/instances/{name}/attachments/1/info": {"Uuid": uuid, "CompressedSize": len(data),
                                                          "CompressedMD5": hashlib.md5(data).hexdigest()}})
        self.api.studies[study] = orthanc_time(self.now - age)
        return study

    def on_file_system(self, study: str) -> int:
        return sum(1 for uuid in self.files[study] if self.file_system.locate(uuid, 1))

    def on_object_storage(self, study: str) -> int:
        return sum(1 for uuid in self.files[study] if self.objects.locate(uuid, 1))


def epoch(text: str) -> float:
    return calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%S"))
