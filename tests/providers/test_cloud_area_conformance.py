"""The hybrid area over a real file system plus S3 (moto), in both modes, runs every check of the area
conformance suite (orthanc_objstore.testing.area_conformance). The areas that need no server are
tests/unit/test_area_conformance.py."""

import pytest
from support.conformance_rows import check_id
from support.hybrid_world import file_system_side, hybrid_world, object_side

from orthanc_objstore.storage.providers.filesystem import FileSystemStore
from orthanc_objstore.testing.area_conformance import CHECKS


def _hybrid_filesystem_s3(mode):
    def make(request, tmp_path):
        objects = object_side(request.getfixturevalue("s3_backend").store())
        file_system = file_system_side(FileSystemStore(str(tmp_path / "storage"), fsync=False))
        return hybrid_world(mode, objects=objects, file_system=file_system).area
    return make


AREAS = {"hybrid-WriteToFileSystem-filesystem-s3": _hybrid_filesystem_s3("WriteToFileSystem"),
         "hybrid-WriteToObjectStorage-filesystem-s3": _hybrid_filesystem_s3("WriteToObjectStorage")}


@pytest.fixture(params=sorted(AREAS))
def area(request, tmp_path):
    return AREAS[request.param](request, tmp_path)


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_area_conformance(area, check):
    check(area)
