"""How pytest-xdist shares the tests out (``--dist loadgroup``): one at a time, except that the tests of a module
that defines a module-scoped fixture all go to one worker, so that the fixture is set up once.

That matters beyond speed: ``test_e2e_install.py``'s module fixture builds the wheel in the checkout
(setuptools writes ``build/`` there), which two workers must not do at once. xdist's own ``loadgroup``
(``xdist_group`` markers) cannot do it with pytest 9: it tags the node id through an attribute pytest 9 no
longer reads. The controller process collects no test, so it finds those modules by reading their source.
"""

import functools
import re

from xdist.scheduler.loadscope import LoadScopeScheduling

MODULE_FIXTURE = re.compile(r"""@pytest\.fixture\([^)]*scope\s*=\s*["']module["']""")


@functools.cache
def has_module_fixture(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as file:
            return MODULE_FIXTURE.search(file.read()) is not None
    except OSError:
        return False


class ModuleGroupScheduling(LoadScopeScheduling):
    """``--dist load``, but a module with a module-scoped fixture is one unit of work (its path)."""

    def __init__(self, config, log=None, root="."):
        super().__init__(config, log)
        self.root = root

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return path if has_module_fixture(f"{self.root}/{path}") else nodeid
