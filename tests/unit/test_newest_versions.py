"""scripts/newest-orthanc-versions.sh: the set-up refuses a chroot whose Orthanc, Python plugin or Python moved on."""

import os
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "newest-orthanc-versions.sh")


def check(orthanc, plugin, python):
    """check_newest_versions on a pretend chroot whose dpkg and python3 answer these versions."""
    fake_chroot = f"""chroot() {{
      case "$*" in
        *"dpkg-query"*" orthanc-python") echo '{plugin}' ;;
        *"dpkg-query"*" orthanc") echo '{orthanc}' ;;
        *python3*) echo '{python}' ;;
      esac
    }}"""
    return subprocess.run(["bash", "-c", f'{fake_chroot}\n. "$1"\ncheck_newest_versions /srv/forky', "sh", SCRIPT],
                          capture_output=True, text=True)


def test_the_versions_the_tests_are_written_for_pass():
    result = check("1.13.0+dfsg-1+b1", "7.1+ds-1+b2", "3.14.8")
    assert result.returncode == 0, result.stderr
    assert "Orthanc 1.13.0, orthanc-python 7.1, Python 3.14.8" in result.stdout


@pytest.mark.parametrize("orthanc, plugin, python, found", [
    ("1.14.0+dfsg-1", "7.1+ds-1", "3.14.8", "Orthanc 1.14.0+dfsg-1 (want 1.13.x)"),
    ("1:1.130.0-1", "7.1+ds-1", "3.14.8", "Orthanc 1:1.130.0-1 (want 1.13.x)"),
    ("1.13.1+dfsg-1", "8.0+ds-1", "3.14.8", "orthanc-python 8.0+ds-1 (want 7.x)"),
    ("1.13.1+dfsg-1", "7.2+ds-1", "3.15.0", "Python 3.15.0 (want 3.14)"),
])
def test_a_chroot_that_moved_on_fails_the_set_up_saying_what_to_do(orthanc, plugin, python, found):
    result = check(orthanc, plugin, python)
    assert result.returncode == 1
    assert result.stderr.startswith(f"forky moved on: found {found} in the chroot /srv/forky;")
    assert "ORTHANC_OBJSTORE_FORKY_ROOT=" in result.stderr and "MIRROR=" in result.stderr
    assert "tests/support/orthanc.py" in result.stderr
