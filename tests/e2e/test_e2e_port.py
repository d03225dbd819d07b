"""End to end: how the plugin reaches Orthanc's REST API (loopback HTTP or in process), with authentication on."""

import base64
import json

import pytest
from support.dicom import make_instances
from support.orthanc import HOST_VERSION, NEWEST_VERSION

pytestmark = pytest.mark.orthanc


def start_line(orthanc) -> str:
    return [line for line in orthanc.log().splitlines() if ": storage area in " in line][-1]


@pytest.mark.parametrize("orthanc_version, allow_threads, expected", [
    (HOST_VERSION, True, "over LoopbackSettings(http://127.0.0.1:"),  # 4.0 does not read the Python section
    (NEWEST_VERSION, None, "over LoopbackSettings(http://127.0.0.1:"),
    (NEWEST_VERSION, True, "in process (Python.AllowThreads is on)"),
])
def test_the_start_up_line_says_how_orthanc_is_reached(s3_backend, orthanc_factory, orthanc_version, allow_threads,
                                                       expected):
    settings = {s3_backend.section: s3_backend.settings(HybridMode="WriteToFileSystem")[s3_backend.section]}
    if allow_threads is not None:
        settings["Python"] = {"AllowThreads": allow_threads}
    orthanc = orthanc_factory(settings)
    assert f"Orthanc's REST API {expected}" in start_line(orthanc)


def test_moves_work_with_authentication_on(s3_backend, orthanc_factory):
    """The loopback calls carry the first registered user's credentials; the password is never logged."""
    password = "pw-7f3a9c"
    settings = s3_backend.settings(HybridMode="WriteToFileSystem")
    settings.update({"AuthenticationEnabled": True, "RegisteredUsers": {"admin": password, "other": "x"}})
    orthanc = orthanc_factory(settings)
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}
    data = make_instances(1, seed="1.2.826.0.1.3680043.8.498.71")[0]
    instance = json.loads(orthanc.request("POST", "/instances", data, headers=auth)[1])["ID"]
    status, body = orthanc.request("POST", "/move-storage", {"Resources": [instance], "TargetStorage": "object-storage"},
                                   headers=auth)
    assert status == 200 and json.loads(body)["MovedFiles"] >= 1
    where = json.loads(orthanc.request("GET", f"/instances/{instance}/storage-location", headers=auth)[1])
    assert {a["Storage"] for a in where["Attachments"]} == {"object-storage"}
    assert orthanc.request("GET", f"/instances/{instance}/file", headers=auth)[1] == data
    assert password not in orthanc.log() and base64.b64encode(password.encode()).decode() not in orthanc.log()
