"""The xdist scheduling of scripts/test.sh finds the e2e modules whose module-scoped fixture must be set up once."""

import os

import pytest
from support.xdist_groups import has_module_fixture

E2E = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e")


@pytest.mark.parametrize("module, grouped", [("test_e2e_install.py", True), ("test_e2e_scale_out.py", True),
                                             ("test_e2e_tiering.py", True), ("test_e2e_storage.py", False)])
def test_modules_with_a_module_fixture_are_found(module, grouped):
    assert has_module_fixture(os.path.join(E2E, module)) is grouped


def test_every_module_fixture_form_is_seen(tmp_path):
    for text, found in (('@pytest.fixture(scope="module")', True), ("@pytest.fixture(autouse=True, scope='module')", True),
                        ('@pytest.fixture(scope="session")', False), ("@pytest.fixture", False)):
        path = tmp_path / f"test_{len(text)}_{found}.py"
        path.write_text(f"import pytest\n\n{text}\ndef thing():\n    return 1\n")
        assert has_module_fixture(str(path)) is found, text
