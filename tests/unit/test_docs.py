"""The documentation site keeps up with the code: every option is documented with its default, every page is
in the site's nav, and the image re-implementation the Docker tests use is of the image the Dockerfile builds on.
"""

import contextlib
import io
import json
import pathlib
import re
import shlex

import yaml
from support import docker_env

from orthanc_objstore.offline import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION_PAGE = DOCS / "configuration.md"


# --- every option of check-config --list-options, with its default, in the configuration page ----------

def listed_options() -> list[tuple[str, str, str]]:
    """(section title, option, default) for every line ``orthanc-objstore check-config --list-options`` prints."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert cli._list_options() == 0
    listed, title = [], None
    for line in output.getvalue().splitlines():
        if not line.startswith(" "):
            title = line.rstrip(":")
            continue
        name, rest = line.split(None, 1)
        word = rest.split(None, 1)[0]
        if word in ("required", "absent"):
            default = word
        else:  # a JSON value, which may hold spaces
            _, end = json.JSONDecoder().raw_decode(rest)
            default = rest[:end]
        listed.append((title, name, default))
    return listed


def aliases() -> set[str]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        cli._list_options()
    return set(re.findall(r"also spelt (\w+)", output.getvalue()))


# The heading of the configuration page's table of the options every provider section shares.
COMMON_HEADING = "Options of every storage section"


def option_rows(page: pathlib.Path) -> dict[tuple[str, str], list[str]]:
    """(heading, option) → the Default cells of its rows, in the page's tables whose header is
    | Option | Type | Default |; the heading is the page's last ``##`` heading above, without backticks."""
    rows: dict[tuple[str, str], list[str]] = {}
    heading, in_option_table = "", False
    for line in page.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].replace("`", "").strip()
        if not line.startswith("|"):
            in_option_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:3] == ["Option", "Type", "Default"]:
            in_option_table = True
        elif in_option_table and not set(cells[0]) <= set("-: "):
            name = re.fullmatch(r"`(\w+)`", cells[0])
            assert name, f"{page.name}: an option table's first cell names one option in backticks: {line}"
            rows.setdefault((heading, name.group(1)), []).append(cells[2].replace("`", ""))
    return rows


def section_of(title: str) -> str:
    """The heading a section's options are under: its title without the remark in parentheses."""
    return re.sub(r"\s*\(.*\)$", "", title)


def documented_defaults(rows, title: str, name: str) -> list[str]:
    """The Default cells of ``name`` under its section's heading, or under the shared options' heading."""
    return rows.get((section_of(title), name), []) + rows.get((COMMON_HEADING, name), [])


def documents(cell: str, default: str) -> bool:
    """The Default cell says ``default``, maybe followed by a remark: '"" (AWS)', 'absent (the account's default)'."""
    return cell == default or cell.startswith(default + " ")


def test_the_option_list_is_read_whole():
    listed = listed_options()
    titles = {title for title, _, _ in listed}
    assert {"AwsS3Storage", "AzureBlobStorage", "GoogleCloudStorage"} <= titles
    assert ("AwsS3Storage", "ConnectTimeout", "30") in listed
    assert ("AwsS3Storage", "StorageClass", "absent") in listed
    assert "ConnectionTimeout" in aliases()


def test_every_listed_option_is_in_the_configuration_page_with_its_default():
    rows = option_rows(CONFIGURATION_PAGE)
    listed = listed_options()
    missing = [f"{name} (under '## {section_of(title)}' or '## {COMMON_HEADING}')"
               for title, name, _ in listed if not documented_defaults(rows, title, name)]
    assert not missing, f"docs/configuration.md has no row for: {', '.join(missing)}"
    wrong = [f"{section_of(title)}: {name} is {default}, the page says {' / '.join(cells)}"
             for title, name, default in listed
             for cells in [documented_defaults(rows, title, name)]
             if not any(documents(cell, default) for cell in cells)]
    assert not wrong, "docs/configuration.md gives another default:\n" + "\n".join(wrong)


def test_the_configuration_page_documents_no_option_the_plugin_does_not_read():
    known = {name for _, name, _ in listed_options()}
    assert not sorted({name for _, name in option_rows(CONFIGURATION_PAGE)} - known)


def test_every_alias_is_in_the_configuration_page():
    text = CONFIGURATION_PAGE.read_text()
    for alias in aliases():
        assert f"`{alias}`" in text, alias


def test_a_row_with_another_default_is_caught():
    assert documents('""', '""') and documents('"" (AWS)', '""')
    assert documents("absent (the account's default)", "absent")
    assert not documents("10", "1") and not documents("required", "absent")


# --- every page in the nav -------------------------------------------------------------------------------

def nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_of_docs_is_in_the_nav_and_every_nav_entry_is_a_page():
    with open(ROOT / "mkdocs.yml") as file:
        settings = yaml.safe_load(file)
    assert settings["docs_dir"] == "docs"
    in_nav = nav_pages(settings["nav"])
    in_docs = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert not sorted(set(in_docs) - set(in_nav)), "pages missing from mkdocs.yml's nav"
    assert not sorted(set(in_nav) - set(in_docs)), "nav entries without a page in docs/"
    assert len(in_nav) == len(set(in_nav)), "a page is twice in the nav"


def test_the_site_goes_under_build():
    with open(ROOT / "mkdocs.yml") as file:
        settings = yaml.safe_load(file)
    assert settings["site_dir"].startswith("build/")
    assert "build/" in (ROOT / ".gitignore").read_text().split()


# --- docker_env.py re-implements the image the Dockerfile starts from -----------------------------------

def dockerfile_base_image() -> str:
    """The image of docker/Dockerfile's FROM line, with the ARG defaults it refers to resolved."""
    arguments: dict[str, str] = {}
    for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "ARG":
            name, _, default = shlex.split(rest)[0].partition("=")
            arguments[name] = default
        elif keyword.upper() == "FROM":
            image = rest.split()[0]
            return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: arguments[m.group(1) or m.group(2)], image)
    raise AssertionError("docker/Dockerfile has no FROM line")


def test_docker_env_names_the_image_version_the_dockerfile_builds_on():
    repository, _, tag = dockerfile_base_image().partition(":")
    assert repository == "orthancteam/orthanc"
    assert tag == docker_env.IMAGE_VERSION, (
        f"docker/Dockerfile starts from orthancteam/orthanc:{tag}, but tests/support/docker_env.py re-implements "
        f"the start-up script of {docker_env.IMAGE_VERSION}: read that release's script again, update "
        "docker_env.py to match it, then its IMAGE_VERSION")
    assert docker_env.IMAGE_VERSION in (docker_env.__doc__ or ""), "docker_env's docstring names another release"
