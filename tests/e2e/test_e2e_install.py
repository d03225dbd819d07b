"""README's install path from nothing: a wheel built with ``python -m build``, installed into a fresh venv of
Debian's /usr/bin/python3, ``orthanc-objstore --version``, and the plugin-path it prints loaded by Orthanc 1.10.1.

The suite runs without network (CI's own network namespace), so the fresh venv takes the runtime
dependencies from build/wheelhouse, which scripts/setup.sh fills with pip while the network is there;
the wheel itself is built here, from this checkout, offline (``--no-isolation``).
"""

import email.parser
import glob
import os
import subprocess
import sys
import tomllib
import zipfile

import pytest
from support.orthanc import HOST_VERSION
from support.servers import require

from orthanc_objstore import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHEELHOUSE = os.path.join(ROOT, "build", "wheelhouse")
DEBIAN_PYTHON = "/usr/bin/python3"


def run(*command, **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(outdir), ROOT)
    [built] = glob.glob(os.path.join(outdir, "*.whl"))
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory):
    require(os.path.exists(DEBIAN_PYTHON), "Debian's /usr/bin/python3 is missing")
    require(bool(glob.glob(os.path.join(WHEELHOUSE, "boto3-*.whl"))),
            "build/wheelhouse holds no dependency wheels: run scripts/setup.sh test (it gathers them)")
    venv = str(tmp_path_factory.mktemp("venv") / "orthanc-objstore")
    run(DEBIAN_PYTHON, "-m", "venv", venv)
    run(os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check", "--no-index",
        "--find-links", WHEELHOUSE, wheel)
    return venv


def test_the_wheel_holds_the_package_and_declares_its_dependencies(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.parser.Parser().parsestr(
            archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode())
        entry_points = archive.read(next(name for name in names if name.endswith(".dist-info/entry_points.txt")))
    for module in ("plugin.py", "orthanc_glue.py", "config/sections.py", "config/files.py", "storage/providers/s3.py",
                   "testing/__init__.py"):
        assert f"orthanc_objstore/{module}" in names, module
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        declared = tomllib.load(file)["project"]["dependencies"]
    required = [line for line in metadata.get_all("Requires-Dist") if "extra ==" not in line]
    assert sorted(required) == sorted(declared)
    assert metadata["Version"] == __version__
    assert b"orthanc-objstore = orthanc_objstore.offline.cli:main" in entry_points


def test_version_from_the_fresh_venv(fresh_venv):
    assert run(os.path.join(fresh_venv, "bin", "orthanc-objstore"), "--version").strip() == __version__


@pytest.mark.orthanc
@pytest.mark.orthanc_versions(HOST_VERSION)
def test_the_printed_plugin_path_loads_in_orthanc(fresh_venv, s3_backend, orthanc_factory, dicom_files):
    plugin = run(os.path.join(fresh_venv, "bin", "orthanc-objstore"), "plugin-path").strip()
    assert plugin.startswith(fresh_venv + os.sep) and os.path.isfile(plugin)
    orthanc = orthanc_factory({**s3_backend.settings(), "PythonScript": plugin})
    assert f"orthanc-objstore {__version__}: storage area in " in orthanc.log()
    orthanc.upload(dicom_files[0][1])
    assert s3_backend.keys(), "the instance was not stored in the bucket"
