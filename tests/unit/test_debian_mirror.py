"""scripts/debian-mirror.sh (the chroot's mirror, from the host's apt sources) on sample apt folders."""

import os
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "debian-mirror.sh")

DEBIAN12_DEFAULT = """\
Types: deb
# a comment inside a stanza
URIs: http://debian.mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://debian.mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

DEB822_MIXED = """\
Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security

Types: deb deb-src
Enabled: no
URIs: http://off.example/debian
Suites: bookworm

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://one.example/debian
  http://two.example/debian
Suites:
 bookworm-updates
 bookworm
"""


def mirror(tmp_path, files: dict[str, str], codename="bookworm"):
    """(exit status, stdout, stderr) of the script on an apt folder holding ``files`` (relative name → text)."""
    apt = tmp_path / "apt"
    for name, text in files.items():
        (apt / name).parent.mkdir(parents=True, exist_ok=True)
        (apt / name).write_text(text)
    apt.mkdir(exist_ok=True)
    result = subprocess.run(["bash", SCRIPT, str(apt)], capture_output=True, text=True,
                            env={**os.environ, "CODENAME": codename})
    return result.returncode, result.stdout.strip(), result.stderr


@pytest.mark.parametrize("files, expected", [
    pytest.param({"sources.list.d/debian.sources": DEBIAN12_DEFAULT}, "http://debian.mirror.example/debian",
                 id="deb822, Debian 12's default"),
    pytest.param({"sources.list": "deb http://mirror.example/debian bookworm main\n"
                                  "deb http://mirror.example/debian-security bookworm-security main\n"},
                 "http://mirror.example/debian", id="one-line"),
    pytest.param({"sources.list": "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                                  "http://mirror.example/debian bookworm main\n"},
                 "http://mirror.example/debian", id="one-line with [signed-by=...]"),
    pytest.param({"sources.list": "deb [ arch=amd64 signed-by=/k.gpg ] https://mirror.example/debian/ bookworm main\n"},
                 "https://mirror.example/debian/", id="one-line with spaced [options]"),
    pytest.param({"sources.list": "# deb http://old.example/debian bookworm main\n"
                                  "deb-src http://src.example/debian bookworm main\n"
                                  "deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n"
                                  "   deb   http://mirror.example/debian   bookworm main # the mirror\n"},
                 "http://mirror.example/debian", id="comments, deb-src and cdrom skipped"),
    pytest.param({"sources.list.d/a-nodesource.list":
                  "deb [signed-by=/usr/share/keyrings/nodesource.gpg] https://third.example/node_20.x nodistro main\n",
                  "sources.list.d/debian.sources": DEBIAN12_DEFAULT},
                 "http://debian.mirror.example/debian", id="a third-party repository listed first"),
    pytest.param({"sources.list.d/debian.sources": DEB822_MIXED},
                 "http://one.example/debian", id="deb822: security, disabled, deb-src skipped; folded fields"),
    pytest.param({"sources.list": "deb http://mirror.example/debian-security trixie-security main\n"
                                  "deb http://mirror.example/debian trixie main\n"},
                 "http://mirror.example/debian", id="another release: the first non-security entry"),
])
def test_the_mirror_is_found_in_every_form(tmp_path, files, expected):
    status, out, err = mirror(tmp_path, files)
    assert (status, out) == (0, expected), err


def test_no_mirror_is_an_error_saying_what_to_set(tmp_path):
    status, out, err = mirror(tmp_path, {"sources.list": "deb-src http://src.example/debian bookworm main\n",
                                         "sources.list.d/empty.sources": "# nothing\n"})
    assert status == 1 and out == ""
    assert "no Debian mirror found" in err and "MIRROR=" in err
