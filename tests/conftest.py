"""Shared fixtures: local servers (started once per session), backends, Orthanc processes, DICOM samples."""

import os

import pytest
from support.backends import AzureBackend, GcsBackend, S3Backend
from support.orthanc import NEWEST_VERSION, VERSIONS, Orthanc
from support.servers import AzuriteServer, MotoServer, require
from support.watchdog import take_unreported

TIERS = {"unit": "unit tests: no server, no Orthanc (seconds)",
         "providers": "against the emulators (moto, Azurite, fake-gcs-server) and external tools, no Orthanc",
         "e2e": "end to end through a real Orthanc (1.10.1 and 1.13)"}


# What each tier may not use: tests/unit no server at all (an emulator or an Orthanc), tests/providers no Orthanc.
ORTHANC_FIXTURES = {"orthanc_factory", "orthanc_version"}
SERVER_FIXTURES = {"moto_server", "azurite_server", "s3_backend", "azure_backend", "gcs_backend", "backend",
                   *ORTHANC_FIXTURES}
FORBIDDEN = {"unit": SERVER_FIXTURES, "providers": ORTHANC_FIXTURES}


def pytest_collection_modifyitems(config, items):
    """Each test carries the marker of its folder's tier: tests/unit, tests/providers, tests/e2e.

    A test that uses a fixture its tier may not use (FORBIDDEN) is a usage error: ``pytest -m unit``
    selects exactly the tests that need no server, ``-m providers`` those that need no Orthanc."""
    misplaced = []
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
        used = FORBIDDEN.get(tier, set()) & set(getattr(item, "fixturenames", ()))
        if used:
            misplaced.append(f"{item.nodeid} (in tests/{tier}) uses {', '.join(sorted(used))}")
    if misplaced:
        raise pytest.UsageError("tests in the wrong tier (tests/unit: no server; tests/providers: no Orthanc); "
                                "move them to tests/providers or tests/e2e:\n  " + "\n  ".join(misplaced))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadgroup`` (scripts/test.sh), the tests of a module with a module-scoped fixture go to one
    worker, the others one at a time (support/xdist_groups.py)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from support.xdist_groups import ModuleGroupScheduling
    return ModuleGroupScheduling(config, log, root=str(config.rootpath))


def pytest_configure(config):
    for tier, meaning in TIERS.items():
        config.addinivalue_line("markers", f"{tier}: {meaning}")
    config.addinivalue_line("markers", "orthanc_versions(*versions): run only on these Orthanc versions "
                            "(default: all of support.orthanc.VERSIONS)")
    config.addinivalue_line("markers", "xfail_on_newest(reason): a known failure on Orthanc 1.13 (strict: "
                            "the suite says so when it starts passing)")


def pytest_generate_tests(metafunc):
    """Every test using an Orthanc (``orthanc_factory``) runs once per Orthanc version: 1.10.1 and 1.13.

    A test narrows that with ``@pytest.mark.orthanc_versions(...)``, or parametrizes ``orthanc_version``
    itself together with its other parameters (to run fewer combinations on one version)."""
    own = [m for m in metafunc.definition.iter_markers("parametrize") if "orthanc_version" in str(m.args[0])]
    if "orthanc_version" in metafunc.fixturenames and not own:
        marker = metafunc.definition.get_closest_marker("orthanc_versions")
        versions = [version for version in marker.args if version in VERSIONS] if marker else VERSIONS
        known = metafunc.definition.get_closest_marker("xfail_on_newest")
        if known:
            versions = [pytest.param(version, marks=pytest.mark.xfail(strict=True, reason=known.args[0]))
                        if version == NEWEST_VERSION else version for version in versions]
        metafunc.parametrize("orthanc_version", versions, scope="function")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test during which an Orthanc froze FAILS, whatever it asserted, with the watchdog's stack dump."""
    outcome = yield
    report = outcome.get_result()
    freezes = take_unreported()
    if not freezes:
        return
    text = "\n\n".join(freeze.report() for freeze in freezes)
    if report.longrepr is not None and report.failed:
        own = str(report.longrepr).splitlines()
        text += "\n\n----- the test's own failure (end) -----\n" + "\n".join(own[-25:])
    report.outcome = "failed"
    report.longrepr = text
    if hasattr(report, "wasxfail"):  # a freeze is never the known failure an xfail expects
        del report.wasxfail
    report.sections.append(("Orthanc watchdog", "\n".join(freeze.verdict() for freeze in freezes)))


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
            environment.update(request.getfixturevalue(name).environment())
    return environment


@pytest.fixture
def orthanc_factory(tmp_path, orthanc_version, request):
    """Creates Orthanc processes of this test's version in this test's folder; stops every one afterwards."""
    started = []

    def make(settings, name="orthanc", dicom=False, start=True, env=None):
        environment = {**_backend_environment(request), **(env or {})}
        server = Orthanc(tmp_path / name, settings, dicom=dicom, version=orthanc_version, env=environment)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()
        server.cleanup()


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
