"""The file Orthanc's "PythonScript" points to: finds this package's environment, then loads the glue.

Orthanc's Python plugin imports this file as a top-level module with its own folder first on
sys.path. That folder is removed (its modules must only be imported as ``orthanc_objstore.*``) and
the folder holding the package (the venv's site-packages) is added with ``site.addsitedir``, so
every dependency installed next to the package is found without PYTHONPATH.
"""

import os
import re
import site
import sys
import time

_started = time.monotonic()

_package_dir = os.path.dirname(os.path.abspath(__file__))
_site_packages = os.path.dirname(_package_dir)
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _package_dir]

_built_for = re.search(r"python(\d+)\.(\d+)", _site_packages)
if _built_for and tuple(map(int, _built_for.groups())) != sys.version_info[:2]:
    raise RuntimeError(
        f"orthanc-objstore is installed for Python {_built_for.group(1)}.{_built_for.group(2)} "
        f"({_site_packages}), but Orthanc embeds Python {sys.version_info[0]}.{sys.version_info[1]}: "
        "create the venv with the same Python as Orthanc's plugin (see README)")
site.addsitedir(_site_packages)

from orthanc_objstore import orthanc_glue  # noqa: E402

orthanc_glue.install(started=_started)
