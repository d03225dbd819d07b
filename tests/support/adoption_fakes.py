"""Doubles for the adoption's unit tests: stores that list, and a fake Orthanc whose POST /instances stores the
body through the adopting area as Orthanc's create callback would."""

import itertools

from orthanc_objstore.errors import StoreUnavailable
from orthanc_objstore.port.index import OrthancCallError
from orthanc_objstore.storage.providers.memory import MemoryStore

from .fake_orthanc import FakeOrthancApi
from .faulty_store import FaultyStore

UUID = "0a1b2c3d-0000-4000-8000-{:012d}"  # the n-th attachment the fake Orthanc makes: UUID.format(n)


class _Listing:
    """``list_sizes`` over the store's own keys; ``down`` makes listings fail; ``listings`` counts them."""

    listings = 0
    down = False

    def list_sizes(self, prefix=""):
        if self.down:
            raise StoreUnavailable("the store is down (test)")
        self.listings += 1
        return [(key, self.head(key)) for key in self.keys() if key.startswith(prefix)]


class ListingMemoryStore(_Listing, MemoryStore):
    pass


class ListingFaultyStore(_Listing, FaultyStore):
    pass


class PostingOrthanc(FakeOrthancApi):
    """The same bytes posted twice are AlreadyStored. ``writes_first``: as Orthanc 1.10.1, an instance already
    held is written anyway (a create), then discarded (a remove) before the AlreadyStored answer; otherwise, as
    1.13, nothing reaches the storage. ``removes_on_delete``: DELETE /instances/{id} removes its attachment
    through the area, as Orthanc's delete does. Orthanc refuses what is not DICOM."""

    def __init__(self, area, writes_first=False, removes_on_delete=False):
        super().__init__()
        self.area = area
        self.writes_first = writes_first
        self.removes_on_delete = removes_on_delete
        self.instances = {}  # body -> instance id
        self.uuids = (UUID.format(n) for n in itertools.count(1))

    def post_json(self, uri, body):
        assert uri == "/instances"
        self.posts.append((uri, body))
        if body[128:132] != b"DICM":
            raise OrthancCallError(400, "/instances: Bad file format")
        if body in self.instances:
            if self.writes_first:
                uuid = next(self.uuids)
                self.area.remove(uuid, 1, self.area.create(uuid, 1, body))
            return {"ID": self.instances[body], "Status": "AlreadyStored"}
        instance = f"instance-{len(self.instances) + 1}"
        uuid = next(self.uuids)
        self.area.create(uuid, 1, body)
        self.instances[body] = instance
        self.answers[f"/instances/{instance}"] = {"ID": instance, "uuid": uuid}
        self.answers[f"/instances/{instance}/attachments/dicom/info"] = {"Uuid": uuid, "ContentType": 1}
        return {"ID": instance, "Status": "Success"}

    def delete(self, uri):
        super().delete(uri)
        instance = uri.rsplit("/", 1)[1]
        for body, known in list(self.instances.items()):
            if known == instance:
                del self.instances[body]
                info = self.answers.pop(f"/instances/{instance}/attachments/dicom/info", None)
                if self.removes_on_delete and info is not None:
                    self.area.remove(info["Uuid"], 1)
