"""The orthancteam/orthanc image's start-up conversion (environment -> /tmp/orthanc.json), re-implemented.

Docker cannot run on the build machines, so the tests feed the variables of docker/ through these
rules instead of through the image. They follow the image's documented behaviour, as recorded in the
project's reference notes on the image (docker-image.md §1, from orthanc-builder 26.8.1's
``generateConfiguration.py`` / ``configurator.py``):

* §1.1 sources, later ones overwriting earlier ones: JSON files (``/etc/orthanc/*.json`` then
  ``/run/secrets/*.json``), then the environment in one pass (``ORTHANC__*``, ``ORTHANC_JSON``,
  ``*_SECRET``, ``*_PLUGIN_ENABLED``), then the files of ``/run/secrets/``, then defaults for keys still
  missing (the image's, then those of each enabled plugin). Objects merge recursively; scalars and
  arrays are replaced.
* §1.2 names: drop ``ORTHANC__``, split on ``__`` (one JSON level each), split each piece on ``_`` and
  keep each word's first character with the rest lower-cased; a few whole names are aliases; an empty
  word makes the image's script crash (IndexError).
* §1.3 values: ``json.loads``, falling back to the raw string (so ``2024`` is a number, ``true`` a
  boolean, ``{...}`` an object).
* §1.4 secrets: a file ``/run/secrets/ORTHANC__X__Y`` (trailing newlines stripped) is a value for
  ``ORTHANC__X__Y``; ``NAME_SECRET=file`` reads ``/run/secrets/file`` into ``NAME``.
* §1.5 / §3 plugins: enabled by their section, their ``<X>_PLUGIN_ENABLED`` variable (any value but
  the exact string ``false``), ``PythonScript`` for Python, or by default; ``=false`` disables in all
  cases. Only the plugins a deployment of this project touches are listed.
"""

import json
import re

# The orthancteam/orthanc release whose start-up script these rules re-implement. docker/Dockerfile must start
# from this release (tests/unit/test_docs.py checks it): moving it means reading that release's script again.
IMAGE_VERSION = "26.8.1"

# §1.2, env-var-non-standards.json (the entries that concern the options this plugin reads or the index).
ALIASES = {
    "ORTHANC__HTTPS_CA_CERTIFICATES": ["HttpsCACertificates"],
    "ORTHANC__CASE_SENSITIVE_PN": ["CaseSensitivePN"],
    "ORTHANC__STORE_MD5_FOR_ATTACHMENTS": ["StoreMD5ForAttachments"],
    "ORTHANC__POSTGRESQL": ["PostgreSQL"],
}
PREFIXES = {"ORTHANC__POSTGRESQL__": "PostgreSQL", "ORTHANC__MYSQL__": "MySQL", "ORTHANC__OHIF__": "OHIF"}

# §1.7, orthanc-defaults.json
IMAGE_DEFAULTS = {"StorageDirectory": "/var/lib/orthanc/db", "RemoteAccessAllowed": True,
                  "AuthenticationEnabled": True, "HttpsCACertificates": "/etc/ssl/certs/ca-certificates.crt",
                  "Plugins": ["/run/orthanc/plugins", "/usr/share/orthanc/plugins"]}

_PLACEHOLDER = "MUST BE DEFINED BY YOU"
# §1.5, §3, §4: plugins-def.json, for the plugins that matter here.
PLUGINS = {
    "AwsS3Storage": {"switch": "AWS_S3_STORAGE_PLUGIN_ENABLED",
                     "defaults": {"BucketName": _PLACEHOLDER, "Region": _PLACEHOLDER}},
    "AzureBlobStorage": {"switch": "AZURE_BLOB_STORAGE_PLUGIN_ENABLED",
                         "defaults": {"ConnectionString": _PLACEHOLDER, "ContainerName": _PLACEHOLDER}},
    "GoogleCloudStorage": {"switch": "GOOGLE_CLOUD_STORAGE_PLUGIN_ENABLED",
                           "defaults": {"ServiceAccountFile": _PLACEHOLDER, "BucketName": _PLACEHOLDER}},
    "PostgreSQL": {"switch": "POSTGRESQL_PLUGIN_ENABLED",
                   "defaults": {"EnableIndex": True, "EnableStorage": False, "Port": 5432,
                                "Host": "HOST MUST BE DEFINED", "Database": "postgres", "Username": "postgres",
                                "Password": "postgres", "EnableSsl": False, "Lock": False}},
    "Python": {"switch": "PYTHON_PLUGIN_ENABLED", "root_setting": "PythonScript"},
    "Gdcm": {"switch": "GDCM_PLUGIN_ENABLED", "by_default": True},
    "OrthancExplorer2": {"switch": "ORTHANC_EXPLORER_2_ENABLED", "by_default": True,
                         "defaults": {"Enable": True, "IsDefaultOrthancUI": False}},
}


class StartupError(Exception):
    """The image's script would stop here, and Orthanc would not start."""


def json_path(name: str) -> list[str]:
    """§1.2: an environment variable's (or secret file's) name -> the keys it sets."""
    if name in ALIASES:
        return list(ALIASES[name])
    for prefix, section in PREFIXES.items():
        if name.startswith(prefix):
            return [section] + [_camel(piece, name) for piece in name[len(prefix):].split("__")]
    return rule_path(name)


def rule_path(name: str) -> list[str]:
    """§1.2, the general rule alone (no alias, no prefix rewrite)."""
    return [_camel(piece, name) for piece in name[len("ORTHANC__"):].split("__")]


def _camel(piece: str, name: str) -> str:
    words = piece.split("_")
    if any(word == "" for word in words):
        raise StartupError(f"{name}: an empty word crashes the image's script (IndexError)")
    return "".join(word[0] + word[1:].lower() for word in words)


def value(text: str):
    """§1.3"""
    try:
        return json.loads(text)
    except ValueError:
        return text


def merge(target: dict, source: dict, overwrite=True) -> dict:
    for key, item in source.items():
        if isinstance(item, dict) and isinstance(target.get(key), dict):
            merge(target[key], item, overwrite)
        elif overwrite or key not in target:
            target[key] = item
    return target


def _strip_comments(text: str) -> str:
    return re.sub(r'("(?:\\.|[^"\\])*")|//[^\n]*|/\*.*?\*/', lambda match: match.group(1) or "", text, flags=re.S)


def generate(environ: dict[str, str], etc_files: dict[str, str] | None = None,
             secrets: dict[str, str] | None = None) -> tuple[dict, list[str]]:
    """(the configuration Orthanc reads, the enabled plugins) for one container's inputs.

    ``environ``: the container's variables, in order; ``etc_files``: name -> text of the JSON files
    in /etc/orthanc/; ``secrets``: name -> content of the files in /run/secrets/.
    """
    configuration: dict = {}
    secrets = secrets or {}
    for name in sorted(etc_files or {}):
        merge(configuration, json.loads(_strip_comments(etc_files[name])))
    for name in sorted(secrets):
        if name.endswith(".json"):
            merge(configuration, json.loads(_strip_comments(secrets[name])))

    switched: dict[str, str] = {}
    indirect: dict[str, str] = {}
    for name, text in environ.items():
        if name == "ORTHANC_JSON":
            merge(configuration, json.loads(_strip_comments(text)))
        elif name.endswith("_SECRET"):
            indirect[text] = name[:-len("_SECRET")]
        elif name.startswith("ORTHANC__") or name in ALIASES:
            _set(configuration, json_path(name), value(text))
        else:
            switched[name] = text

    for file_name, content in sorted(secrets.items()):
        content = content.rstrip("\n")
        if file_name in indirect:
            _set(configuration, json_path(indirect[file_name]), value(content))
        elif file_name.startswith("ORTHANC__") or file_name in ALIASES:
            _set(configuration, json_path(file_name), value(content))
    missing = sorted(set(indirect) - set(secrets))
    if missing:
        raise StartupError(f"no such file in /run/secrets: {', '.join(missing)}")

    merge(configuration, json.loads(json.dumps(IMAGE_DEFAULTS)), overwrite=False)
    enabled = []
    for plugin, definition in PLUGINS.items():
        switch = switched.get(definition["switch"])
        on = (plugin in configuration or definition.get("root_setting") in configuration
              or definition.get("by_default", False) or (switch is not None and switch != "false"))
        if on and switch != "false":
            enabled.append(plugin)
            if "defaults" in definition:
                merge(configuration, {plugin: dict(definition["defaults"])}, overwrite=False)
    return configuration, enabled


def _set(configuration: dict, path: list[str], item) -> None:
    for key in reversed(path):
        item = {key: item}
    merge(configuration, item)
