"""The configuration's rules between options, and the files options name (key files, service accounts).

Each rule is a small function of ``(section, values)``: ``values`` holds the fields already read from
the section by the option table (``config``), by field name; a rule records problems on the section,
or sets a field the options alone cannot give. Messages name files, never their content.
"""

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..crypto import wrapped
from ..crypto.keys import KEY_SIZE as MASTER_KEY_SIZE
from ..errors import ConfigError
from .options import MAX_UINT32, Section


@dataclass(frozen=True)
class MasterKey:
    """One master key: its id (written in every object's header), its 32 bytes, and the key service
    that unwrapped it (``"AWS KMS"``), None for a plain key file."""

    id: int
    path: str
    key: bytes = field(repr=False)
    unwrapped_by: str | None = None


def load_master_key(path: str) -> bytes:
    """Reads a key file: base64 of exactly 32 bytes, whitespace ignored, or a wrapped key (``aws-kms:``
    + ciphertext) unwrapped through its key service. Messages name the file, never the key."""
    return read_master_key(path)[0]


def read_master_key(path: str) -> tuple[bytes, str | None]:
    """(the key, the service that unwrapped it or None); see load_master_key."""
    try:
        with open(path, "rb") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the key file {path!r}: {exc.strerror}") from None
    if wrapped.wrapping(text):
        try:
            service, key = wrapped.unwrap(text)
        except wrapped.WrapError as exc:
            raise ConfigError(f"cannot unwrap the key file {path!r}: {exc}") from None
        return key, service
    compact = b"".join(text.split())
    try:
        key = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"the key file {path!r} is not valid base64 "
                          "(create one with: orthanc-objstore keygen FILE; a key wrapped by AWS KMS is "
                          "written aws-kms:CIPHERTEXT)") from None
    if len(key) != MASTER_KEY_SIZE:
        raise ConfigError(f"the key file {path!r} holds {len(key)} bytes; a master key is base64 of exactly "
                          f"{MASTER_KEY_SIZE} bytes (create one with: orthanc-objstore keygen FILE)")
    return key, None


def master_key(section: Section, option: str, value) -> MasterKey | None:
    """``[id, "/path/to/key"]`` → the loaded key, or None with the problem recorded."""
    if (not isinstance(value, list) or len(value) != 2 or isinstance(value[0], bool)
            or not isinstance(value[0], int) or not 0 <= value[0] <= MAX_UINT32 or not isinstance(value[1], str)):
        section.problem(option, f"{value!r} is invalid; allowed: [id, \"/path/to/key\"] with id an "
                                f"integer from 0 to {MAX_UINT32}")
        return None
    try:
        key, service = read_master_key(value[1])
        return MasterKey(value[0], value[1], key, service)
    except ConfigError as exc:
        section.problem(option, str(exc))
        return None


def distinct_key_ids(section: Section, current: MasterKey, previous: list[MasterKey]) -> None:
    """Objects only record the key id: one id naming two different keys would make some unreadable."""
    seen = {current.id: ("MasterKey", current)}
    for index, key in enumerate(previous):
        where = f"PreviousMasterKeys[{index}]"
        first = seen.setdefault(key.id, (where, key))
        if first[1].key != key.key:
            section.problem(where, f"id {key.id} is already used by {first[0]} with a different key "
                                   f"({first[1].path!r} and {key.path!r}); every key needs its own id, the id "
                                   "stored in each object selects the key that decrypts it")


def root_path_is_relative(section: Section, values: dict) -> None:
    if values["root_path"].startswith("/"):
        section.problem("RootPath", f"{values['root_path']!r} is invalid; it must not start with '/' "
                                    "(write \"folder/sub\", not \"/folder/sub\")")


def credentials_pair(section: Section, values: dict) -> None:
    """AccessKey and SecretKey: both, or neither (then the default AWS credential chain)."""
    if (values["access_key"] is None) != (values["secret_key"] is None):
        present, missing = ("AccessKey", "SecretKey") if values["secret_key"] is None else ("SecretKey", "AccessKey")
        section.problem(missing, f"missing while {present} is set; give both, "
                                 "or neither to use the default AWS credential chain")


def s3_server_side_encryption(section: Section, values: dict) -> None:
    """SseKmsKeyId names a KMS key: meaningful with ServerSideEncryption aws:kms (or aws:kms:dsse) only."""
    key_id, kind = values["sse_kms_key_id"], values["server_side_encryption"]
    if key_id is not None and not key_id.strip():
        section.problem("SseKmsKeyId", "empty; give a KMS key id, ARN or alias, or remove the option to use "
                                       "the bucket's default KMS key")
    elif key_id is not None and kind not in ("aws:kms", "aws:kms:dsse"):
        section.problem("SseKmsKeyId", f"set while ServerSideEncryption is {kind or 'absent'}; a KMS key is "
                                       "used with \"ServerSideEncryption\": \"aws:kms\" (or \"aws:kms:dsse\") only")


_S3_TAG_TEXT = re.compile(r"^[\w\s+\-=.:/@]*$")


def s3_tags(section: Section, values: dict) -> None:
    """S3's rules for tags (at most 10; key 1-128 and value 0-256 characters of letters, digits, spaces
    and + - = . _ : / @), so that a bad tag stops start-up instead of failing every write."""
    tags = values["tags"]
    if len(tags) > 10:
        section.problem("Tags", f"{len(tags)} tags; S3 allows at most 10 per object")
    for key, value in tags:
        if not (1 <= len(key) <= 128 and len(value) <= 256 and _S3_TAG_TEXT.match(key) and _S3_TAG_TEXT.match(value)):
            section.problem("Tags", f"{key!r}: {value!r} is invalid; allowed: a key of 1 to 128 and a value of at "
                                    "most 256 letters, digits, spaces and + - = . _ : / @")


def azure_connection_string(section: Section, values: dict) -> None:
    value = values["connection_string"] or ""
    pairs = [part for part in value.split(";") if part.strip()]
    names = {part.split("=", 1)[0].strip().lower() for part in pairs if "=" in part}
    if value and not (all("=" in part for part in pairs)
                      and names & {"accountname", "blobendpoint", "usedevelopmentstorage"}):
        section.problem("ConnectionString", "(value hidden) is invalid; allowed: an Azure storage connection "
                        "string of Name=value pairs separated by ';', e.g. DefaultEndpointsProtocol=https;"
                        "AccountName=...;AccountKey=...;EndpointSuffix=core.windows.net, or one with "
                        "BlobEndpoint=... and SharedAccessSignature=...")


_AZURE_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
AZURE_PUBLIC_BLOB_URL = "https://{}.blob.core.windows.net"


def azure_account(section: Section, values: dict) -> None:
    """Exactly one way to the account: ConnectionString (its key or SAS), or AccountUrl / AccountName (an
    identity from azure-identity's credential chain, whose bearer tokens Azure accepts over HTTPS only).
    AccountName becomes ``account_url``, the account's public blob URL."""
    given = [name for name, field in (("ConnectionString", "connection_string"), ("AccountUrl", "account_url"),
                                      ("AccountName", "account_name")) if values[field] is not None]
    if not given:
        section.problem("ConnectionString", "missing; give ConnectionString (with an account key or a SAS), or "
                                            "AccountUrl or AccountName to authenticate with an Azure identity "
                                            "(managed identity, workload identity, service principal, Azure CLI)")
    elif len(given) > 1:
        section.problem(given[1], f"set together with {given[0]}; give exactly one of ConnectionString, "
                                  "AccountUrl and AccountName")
    url, name = values["account_url"], values["account_name"]
    if url is not None and not re.fullmatch(r"https://[^/\s?#]+(/[^\s?#]*)?", url):
        section.bad("AccountUrl", url, "the account's blob endpoint over HTTPS, e.g. "
                                       "https://ACCOUNT.blob.core.windows.net (Azure accepts identity tokens over "
                                       "HTTPS only; no query string: a SAS goes in ConnectionString)")
    if name is not None:
        if _AZURE_ACCOUNT_NAME.fullmatch(name):
            values["account_url"] = AZURE_PUBLIC_BLOB_URL.format(name)
        else:
            section.bad("AccountName", name, "3 to 24 lowercase letters and digits (Azure's storage account "
                                             "names); for another cloud or endpoint, use AccountUrl")


_AZURE_CONTAINER_NAME = re.compile(r"(?=.{3,63}$)[a-z0-9](?:-?[a-z0-9])*")
_GCS_BUCKET_NAME = re.compile(r"(?=.{3,222}$)[a-z0-9][a-z0-9._-]*[a-z0-9]")


def azure_container_name(section: Section, values: dict) -> None:
    name = values["container_name"]
    if name and not _AZURE_CONTAINER_NAME.fullmatch(name):
        section.bad("ContainerName", name, "3 to 63 lowercase letters, digits and single hyphens, starting and "
                                           "ending with a letter or digit (Azure's container naming rules)")


def gcs_bucket_name(section: Section, values: dict) -> None:
    name = values["bucket_name"]
    if name and not _GCS_BUCKET_NAME.fullmatch(name):
        section.bad("BucketName", name, "3 to 63 lowercase letters, digits, '-', '_' and '.' (up to 222 with "
                                        "dots), starting and ending with a letter or digit (Google's bucket "
                                        "naming rules)")


def service_account_file(section: Section, values: dict) -> None:
    """A service-account key file that cannot serve stops start-up, named but never quoted."""
    path = values["service_account_file"]
    if path is None:
        return
    if not path:
        section.problem("ServiceAccountFile", "empty; give the path of a service-account key file, or remove "
                                              "the option to use the application-default credentials")
        return
    try:
        with open(path, "rb") as file:
            info = json.load(file)
    except OSError as exc:
        section.problem("ServiceAccountFile", f"cannot read {path!r}: {exc.strerror}")
        return
    except ValueError:
        section.problem("ServiceAccountFile", f"{path!r} is not a JSON file")
        return
    if not isinstance(info, dict) or info.get("type") != "service_account" or not all(
            isinstance(info.get(name), str) and info.get(name) for name in ("client_email", "private_key")):
        section.problem("ServiceAccountFile", f"{path!r} is not a service-account key file (a JSON object with "
                        "\"type\": \"service_account\", client_email and private_key, downloaded from the Google "
                        "Cloud console)")


def gcs_environment(environ: Mapping[str, str]) -> dict:
    """GCS fields from the environment: the emulator (STORAGE_EMULATOR_HOST) and GOOGLE_CLOUD_PROJECT."""
    emulator_host = environ.get("STORAGE_EMULATOR_HOST") or None
    if emulator_host and "://" not in emulator_host:
        emulator_host = "http://" + emulator_host
    return {"emulator_host": emulator_host, "project": environ.get("GOOGLE_CLOUD_PROJECT") or None}


def no_environment(environ: Mapping[str, str]) -> dict:
    return {}
