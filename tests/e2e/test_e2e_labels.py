"""End to end: every Orthanc the tests start is the version its label names (support.orthanc.PROMISED)."""

import pytest
from support import orthanc as support_orthanc

pytestmark = pytest.mark.orthanc


def test_the_running_orthanc_is_the_labelled_version(s3_backend, orthanc_factory, orthanc_version, monkeypatch):
    orthanc = orthanc_factory(s3_backend.settings())  # start() has checked the versions once already
    core, plugin = support_orthanc.PROMISED[orthanc_version]
    version = orthanc.get_json("/system")["Version"]
    assert version == core or version.startswith(core + ".")
    found = orthanc.get_json("/plugins/python")["Version"]
    assert found == plugin or found.startswith(plugin + ".")

    monkeypatch.setitem(support_orthanc.PROMISED, orthanc_version, ("1.99", plugin))
    expected = f"reports version '{version}'.*labelled it {orthanc_version} .*Orthanc 1.99.x"
    with pytest.raises(AssertionError, match=expected):
        orthanc.check_versions()
    monkeypatch.setitem(support_orthanc.PROMISED, orthanc_version, (core, "99"))
    with pytest.raises(AssertionError, match=r"Python plugin version .*Python plugin 99.x"):
        orthanc.check_versions()
