"""orthanc-objstore check-config FILE_OR_FOLDER: real configurations (comments, Debian's folder), exit codes, --list-options."""

import os
import shutil

import pytest
from support.servers import require

from orthanc_objstore.config import sections as config
from orthanc_objstore.offline import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEBIAN_FOLDER = os.path.join(ROOT, "tests", "data", "debian-etc-orthanc")


def check(capsys, *arguments):
    status = cli.main(["check-config", *arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def debian_copy(tmp_path):
    folder = tmp_path / "orthanc"
    shutil.copytree(DEBIAN_FOLDER, folder)
    return folder


def test_the_projects_example_is_valid(capsys):
    status, out, err = check(capsys, os.path.join(ROOT, "orthanc.json.example"))
    assert (status, err) == (0, "")
    assert out == "ok: AwsS3Storage, flat layout, hybrid mode Disabled, encryption off, read cache 256 MB in memory, prefetch on\n"


def test_a_debian_style_folder_is_merged_and_valid(capsys):
    status, out, err = check(capsys, DEBIAN_FOLDER)
    assert (status, err) == (0, "")
    assert out.startswith("ok: AwsS3Storage")


def test_a_section_in_two_files_is_refused_as_orthanc_refuses_it(capsys, tmp_path):
    folder = debian_copy(tmp_path)
    (folder / "zz-local.json").write_text('{\n  // mine\n  "Name" : "PACS"\n}\n')
    status, out, err = check(capsys, str(folder))
    assert status == 2 and out == ""
    assert err.startswith('error: The configuration section "Name" is defined in 2 different configuration files '
                          "(orthanc.json and zz-local.json in ")


def test_the_plugins_problems_are_reported_as_at_start_up(capsys, tmp_path):
    folder = debian_copy(tmp_path)
    text = (folder / "objstore.json").read_text()
    (folder / "objstore.json").write_text(text.replace('"HybridMode" : "Disabled"', '"HybridMode" : "WriteToDisk"')
                                          .replace('"BucketName"', '"BuketName"'))
    status, out, err = check(capsys, str(folder))
    assert status == 1 and out == ""
    assert err.splitlines() == [
        "error: AwsS3Storage.HybridMode: 'WriteToDisk' (string) is invalid; allowed: Disabled, WriteToFileSystem, "
        "WriteToObjectStorage",
        "error: AwsS3Storage.BucketName: missing, and it is required"]


def test_unreadable_json_and_missing_paths(capsys, tmp_path):
    (tmp_path / "broken.json").write_text('{ "Name" /* here */ : "x" }')
    status, _, err = check(capsys, str(tmp_path / "broken.json"))
    assert status == 2 and "does not follow the JSON syntax" in err and "broken.json" in err
    status, _, err = check(capsys, str(tmp_path / "absent"))
    assert status == 2 and "Inexistent path to configuration" in err


def test_debians_own_etc_orthanc(capsys):
    """The host's real /etc/orthanc (Debian's orthanc package): read whole; no storage section, so the plugin is off."""
    require(os.path.isfile("/etc/orthanc/orthanc.json"), "Debian's orthanc package is not installed")
    status, out, err = check(capsys, "/etc/orthanc/")
    assert status == 0 and out == ""
    assert "plugin is disabled" in err


def test_list_options_prints_every_option_with_its_default(capsys):
    assert cli.main(["check-config", "--list-options"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for section in (*config.PROVIDERS, config.ENCRYPTION_SECTION, config.GLOBAL_SECTION):
        for spec in config.options(section):
            assert any(line.split()[:1] == [spec.name] for line in lines), spec.name
    assert any(line.split()[:2] == ["ConnectTimeout", "30"] and "also spelt ConnectionTimeout" in line for line in lines)
    assert any(line.split()[:2] == ["BucketName", "required"] for line in lines)
    assert any(line.split()[:2] == ["StorageStructure", '"flat"'] for line in lines)


def test_check_config_needs_a_path_or_list_options(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["check-config"])
    assert caught.value.code == 2 and "FILE_OR_FOLDER" in capsys.readouterr().err
