"""Running the ``orthanc-objstore`` command as an administrator does, in end-to-end tests."""

import json
import os
import subprocess

from .servers import require, venv_bin


def tool(*arguments, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command with ``arguments``; ``env`` is added to this process's environment (a backend's)."""
    command = venv_bin("orthanc-objstore")
    require(command is not None, "the orthanc-objstore command is not installed in this venv (pip install .)")
    return subprocess.run([command, *arguments], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def tool_config(orthanc, settings) -> str:
    """The configuration an administrator would give the tool: Orthanc's own, plus the storage section."""
    path = os.path.join(orthanc.workdir, "migrate.json")
    with open(path, "w") as file:
        json.dump({**orthanc.config, **settings}, file)
    return path
