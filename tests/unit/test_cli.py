"""The ``orthanc-objstore`` command's own behaviour (its subcommands have their own test files)."""

import os

import orthanc_objstore
from orthanc_objstore.offline import cli


def test_plugin_path_is_the_plugin_file_at_the_top_of_the_package():
    path = cli.plugin_path()
    assert path == os.path.join(os.path.dirname(os.path.abspath(orthanc_objstore.__file__)), "plugin.py")
    with open(path) as file:
        assert "orthanc_glue.install" in file.read()


def test_help_is_plain_text(capsys):
    try:
        cli.main(["--help"])
    except SystemExit as exit:
        assert exit.code == 0
    text = capsys.readouterr().out
    assert "Tools for administrators of orthanc-objstore" in text
    assert "``" not in text  # no reStructuredText from a docstring
