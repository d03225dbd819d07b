"""Orthanc and check-config read the same configurations: each case of support/configuration_cases, a
commented file and a Debian-style folder with the plugin, valid and not."""

import json
import os
import pathlib
import subprocess

import pytest
from support.configuration_cases import CASES, ENVIRONMENT, write
from support.orthanc import HOST_VERSION, PYTHON_PLUGIN
from support.servers import require, venv_bin

from orthanc_objstore.config import files as configfile
from orthanc_objstore.errors import ConfigError

pytestmark = pytest.mark.orthanc
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEBIAN_FOLDER = pathlib.Path(ROOT, "tests", "data", "debian-etc-orthanc")
STARTED = ": storage area in "  # in the plugin's start-up line


def check_config(path: str, env=None) -> subprocess.CompletedProcess:
    command = venv_bin("orthanc-objstore")
    require(command is not None, "the orthanc-objstore command is not installed in this venv (pip install .)")
    return subprocess.run([command, "check-config", path], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


@pytest.mark.orthanc_versions(HOST_VERSION)  # the cases record what Orthanc 1.10.1 (JsonCpp 1.9.5) does
@pytest.mark.parametrize("case", sorted(CASES))
def test_orthanc_and_the_reader_agree(case, orthanc_factory):
    files, expected_name = CASES[case]
    orthanc = orthanc_factory({"Plugins": []}, start=False, env=ENVIRONMENT)  # Orthanc alone: quick
    base = json.dumps({key: value for key, value in orthanc.config.items() if key != "Name"})[1:-1]
    path = write(pathlib.Path(orthanc.workdir, "cases"), files, base)
    try:
        read_name = configfile.read(path, {**os.environ, **ENVIRONMENT})["Name"]
    except ConfigError:
        read_name = None
    if expected_name is None:
        assert orthanc.start(expect_failure=True, configuration=path) != 0
    else:
        orthanc.start(configuration=path)
        assert orthanc.get_json("/system")["Name"] == expected_name
    assert read_name == expected_name


def commented(configuration: dict) -> str:
    """``configuration`` written as administrators write it: comments of both kinds, trailing commas."""
    lines = ["{", "  /**", "   * Written by the test, with comments (a URL: http://example.com/x).", "   **/"]
    for key, value in configuration.items():
        lines.append(f"  {json.dumps(key)} : {json.dumps(value, indent=2)}, // {key} // not a URL: http://x")
    lines += ["  /* the end */", "}"]
    return "\n".join(lines)


@pytest.mark.parametrize("invalid", [False, True], ids=["valid", "invalid"])
def test_a_commented_file(s3_backend, orthanc_factory, invalid):
    settings = s3_backend.settings(**({"HybridMode": "WriteToDisk"} if invalid else {}))
    orthanc = orthanc_factory(settings, start=False)
    configuration = orthanc.write_configuration({"orthanc.json": commented(orthanc.config)})
    checked = check_config(orthanc.host_path(configuration))
    if invalid:
        assert checked.returncode == 1 and checked.stdout == ""
        problem = checked.stderr.splitlines()[0].removeprefix("error: ")
        assert problem.startswith("AwsS3Storage.HybridMode: 'WriteToDisk' (string) is invalid")
        assert orthanc.start(expect_failure=True, configuration=configuration) != 0
        assert f"orthanc-objstore: invalid configuration: {problem}" in orthanc.log()
    else:
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.startswith("ok: AwsS3Storage")
        orthanc.start(configuration=configuration)
        assert STARTED in orthanc.log()


def debian_folder(orthanc, settings: dict) -> dict[str, str]:
    """tests/data/debian-etc-orthanc edited as an administrator would for this machine, with the storage
    section of ``settings`` in objstore.json."""
    files = {path.name: path.read_text() for path in sorted(DEBIAN_FOLDER.glob("*.json"))}
    edits = {'"HttpPort" : 8042': f'"HttpPort" : {orthanc.http_port}',
             '"DicomServerEnabled" : true': '"DicomServerEnabled" : false',
             '"/var/lib/orthanc/db-v6"': json.dumps(orthanc.config["StorageDirectory"]),
             '"/usr/share/orthanc/plugins/"': json.dumps(PYTHON_PLUGIN),
             '"MaximumStorageCacheSize" : 128': '"MaximumStorageCacheSize" : 0'}
    if "HttpBindAddresses" in orthanc.config:
        edits['"RemoteAccessAllowed" : false'] = '"RemoteAccessAllowed" : false, "HttpBindAddresses" : ["127.0.0.1"]'
    for old, new in edits.items():
        assert old in files["orthanc.json"], old
        files["orthanc.json"] = files["orthanc.json"].replace(old, new)
    files["python.json"] = files["python.json"].replace('"/etc/orthanc/sample.py"', json.dumps(orthanc.config["PythonScript"]))
    files["objstore.json"] = commented(settings)
    return files


@pytest.mark.parametrize("twice", [False, True], ids=["merged", "key-in-two-files"])
def test_a_debian_style_folder(s3_backend, orthanc_factory, dicom_files, twice):
    settings = s3_backend.settings()
    orthanc = orthanc_factory(settings, start=False)
    files = debian_folder(orthanc, settings)
    if twice:
        files["zz-local.json"] = '{\n  // a local override, as one might try\n  "DicomAet" : "PACS"\n}\n'
    configuration = orthanc.write_configuration(files)
    checked = check_config(orthanc.host_path(configuration))
    if twice:
        assert checked.returncode == 2
        assert 'The configuration section "DicomAet" is defined in 2 different configuration files' in checked.stderr
        assert orthanc.start(expect_failure=True, configuration=configuration) != 0
        assert 'The configuration section "DicomAet" is defined in 2 different configuration files' in orthanc.log()
    else:
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.startswith("ok: AwsS3Storage")
        orthanc.start(configuration=configuration)
        assert STARTED in orthanc.log()
        orthanc.upload(dicom_files[0][1])
        assert s3_backend.keys(), "the instance was not stored in the bucket"
