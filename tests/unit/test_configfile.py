"""configfile: Orthanc's configuration read as Orthanc reads it (comments, folders, ${VAR}, JsonCpp's rules)."""

import pytest
from support.configuration_cases import CASES, ENVIRONMENT, write

from orthanc_objstore.config import files as configfile
from orthanc_objstore.errors import ConfigError

BASE = '"HttpPort": 8042'


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_case_reads_as_orthanc_reads_it(case, tmp_path):
    files, name = CASES[case]
    path = write(tmp_path / "configuration", files, BASE)
    if name is None:
        with pytest.raises(ConfigError):
            configfile.read(path, ENVIRONMENT)
    else:
        configuration = configfile.read(path, ENVIRONMENT)
        assert configuration["Name"] == name and configuration["HttpPort"] == 8042


def test_lenient_numbers_keep_their_type(tmp_path):
    path = write(tmp_path, {"a.json": '{"X": [01, 1., +1, -0, 1e3, 2.5]}'}, BASE)
    assert configfile.read(path, {})["X"] == [1, 1.0, 1.0, 0, 1000.0, 2.5]
    assert [type(value) for value in configfile.read(path, {})["X"]] == [int, float, float, int, float, float]


@pytest.mark.parametrize("files,expected", [
    ({"a.json": '{"A": 1}', "b.json": '{"A": 2}'},
     'The configuration section "A" is defined in 2 different configuration files (a.json and b.json in '),
    ({"a.json": '{\n"A": 1,\n"B" /* c */ : 2}'}, "The configuration file does not follow the JSON syntax: "),
    ({"a.json": '{\n\n"A": 1 /* open'}, "(line 3: a /* comment is not closed)"),
    ({"a.json": '{\n"A": [1,\n/* c */]}'}, "(line 3: a comment just before ']' after a ',')"),
    ({"a.json": '{\n"A":\n\n tru }'}, "(line 4: Expecting value)"),
    ({"a.json": '[1]'}, "(the top level is not a JSON object)"),
    ({"a.json": '{"A": "${:-x}"}'}, "'${:-x}' names no environment variable"),
])
def test_refusals_say_what_orthanc_says_and_where(tmp_path, files, expected):
    with pytest.raises(ConfigError) as caught:
        configfile.read(write(tmp_path / "c", files, BASE), {})
    assert expected in str(caught.value)


def test_a_missing_path_and_an_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="^Inexistent path to configuration: "):
        configfile.read(str(tmp_path / "absent.json"))
    (tmp_path / "d").mkdir()
    assert configfile.read(str(tmp_path / "d")) == {}  # an empty folder: Orthanc's defaults
    (tmp_path / "d" / "broken.json").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="broken.json: cannot read the configuration"):
        configfile.read(str(tmp_path / "d"))


def test_the_environment_is_the_one_passed_in(tmp_path):
    path = write(tmp_path, {"a.json": '{"Name": "${WHO:-nobody}"}'}, BASE)
    assert configfile.read(path, {"WHO": "me"})["Name"] == "me"
    assert configfile.read(path, {})["Name"] == "nobody"
