"""Shared fixtures: local servers (started once per session), backends, Orthanc processes, DICOM samples."""

import os
import shutil

import pytest

from support.backends import AzureBackend, GcsBackend, S3Backend
from support.orthanc import Orthanc
from support.servers import AzuriteServer, MotoServer, require


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def s3_backend(moto_server):
    backend = S3Backend(moto_server)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    server = AzuriteServer(str(tmp_path_factory.mktemp("azurite")))
    yield server
    server.stop()


@pytest.fixture
def azure_backend(azurite_server):
    backend = AzureBackend(azurite_server)
    yield backend
    backend.close()


@pytest.fixture
def gcs_backend():
    backend = GcsBackend()
    yield backend
    backend.close()


BACKENDS = ["s3", "azure", "gcs"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every object-storage backend in turn (the end-to-end tests are written once for all)."""
    return request.getfixturevalue(f"{request.param}_backend")


def _backend_environment(request) -> dict:
    """What the backends this test uses need in Orthanc's environment (e.g. STORAGE_EMULATOR_HOST)."""
    environment = {}
    for name in request.fixturenames:
        if name == "backend" or name.endswith("_backend"):
            environment.update(getattr(request.getfixturevalue(name), "environment", dict)())
    return environment


@pytest.fixture
def orthanc_factory(tmp_path, request):
    """Creates Orthanc processes in this test's folder; stops every one of them afterwards."""
    started = []

    def make(settings, name="orthanc", dicom=False, start=True, env=None):
        environment = {**_backend_environment(request), **(env or {})}
        server = Orthanc(tmp_path / name, settings, dicom=dicom, env=environment)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def dicom_files():
    """Real DICOM files shipped with pydicom: (path, bytes) pairs, several patients and modalities."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        require(False, "pydicom is not installed")
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "rtdose.dcm"]
    files = []
    for name in names:
        path = get_testdata_file(name, download=False)
        if path and os.path.exists(path):
            with open(path, "rb") as file:
                files.append((path, file.read()))
    require(len(files) >= 3, "pydicom's test files are missing")
    return files
