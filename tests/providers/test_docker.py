"""docker/: the compose files parse, and the image's start-up path gives the plugin the configuration meant.

Docker cannot run on the build machines. Instead: Debian's docker-compose validates and resolves the
compose files (``docker-compose config``), and the resolved environment of each replica goes, together
with the Dockerfile's ENV lines and the JSON file its RUN line writes, through the image's documented
conversion (support/docker_env.py), then through this plugin's own ``config.parse``.
"""

import base64
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import tempfile

import pytest
from support import docker_env
from support.servers import require

from orthanc_objstore.config import sections as config
from orthanc_objstore.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER = os.path.join(ROOT, "docker")
# Where pip puts the package in the image (Ubuntu's layout for root pip installs, docker-image.md §2).
IMAGE_PLUGIN_PATH = "/usr/local/lib/python3.14/dist-packages/orthanc_objstore/plugin.py"
SECTIONS = (config.S3_SECTION, config.AZURE_SECTION, config.GCS_SECTION)


# --- the Dockerfile, read as the build reads it --------------------------------------------------------

def dockerfile_instructions():
    with open(os.path.join(DOCKER, "Dockerfile")) as file:
        text = re.sub(r"\\\n", " ", file.read())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            yield keyword.upper(), rest.strip()


def dockerfile_env() -> dict[str, str]:
    environment = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                environment[name] = value
    return environment


def image_etc_files(tmp_path) -> dict[str, str]:
    """Runs the Dockerfile's RUN line that writes /etc/orthanc/*.json, with /bin/sh as the build does.

    Only two things differ from the build: /etc/orthanc is a temporary folder, and ``orthanc-objstore
    plugin-path`` answers the path the package has in the image.
    """
    work = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))
    fake_bin, etc = work / "bin", work / "etc-orthanc"
    fake_bin.mkdir()
    (fake_bin / "orthanc-objstore").write_text(f"#!/bin/sh\necho {IMAGE_PLUGIN_PATH}\n")
    (fake_bin / "orthanc-objstore").chmod(0o755)
    commands = [rest for keyword, rest in dockerfile_instructions()
                if keyword == "RUN" and "/etc/orthanc/" in rest]
    assert len(commands) == 1, commands
    command = commands[0].replace("/etc/orthanc", str(etc))
    subprocess.run(["/bin/sh", "-c", command], check=True, capture_output=True,
                   env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"})
    return {path.name: path.read_text() for path in etc.glob("*.json")}


# --- docker-compose --------------------------------------------------------------------------------------

def compose_config(*files, environment=None) -> dict:
    import yaml

    executable = shutil.which("docker-compose")
    require(executable is not None, "Debian's docker-compose is not installed (apt-get install docker-compose)")
    arguments = [executable]
    for name in files:
        arguments += ["-f", os.path.join(DOCKER, name)]
    result = subprocess.run(arguments + ["config"], cwd=DOCKER, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(environment or {})})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


REPLICAS = ("orthanc-a", "orthanc-b")


def container_secrets(tmp_path, master_key: bytes) -> dict[str, str]:
    """The content of /run/secrets in a replica, as the walk-through in docs/docker.md creates it."""
    return {"postgres-password": "Pg7secretValue\n", "orthanc-users": '{"admin": "Adm1nPassw0rd"}\n',
            "master-key": base64.b64encode(master_key).decode() + "\n"}


def mounted(configuration, secrets_dir):
    """Paths under /run/secrets/ are where the secrets are mounted; here, a temporary folder."""
    if isinstance(configuration, dict):
        return {key: mounted(value, secrets_dir) for key, value in configuration.items()}
    if isinstance(configuration, list):
        return [mounted(value, secrets_dir) for value in configuration]
    if isinstance(configuration, str) and configuration.startswith("/run/secrets/"):
        return os.path.join(secrets_dir, configuration[len("/run/secrets/"):])
    return configuration


def write_secrets(tmp_path, secrets):
    folder = pathlib.Path(tempfile.mkdtemp(dir=tmp_path, prefix="run-secrets-"))
    for name, content in secrets.items():
        (folder / name).write_text(content)
    return str(folder)


def test_compose_files_parse_and_describe_the_topology():
    resolved = compose_config("docker-compose.yml")
    services = resolved["services"]
    assert set(services) == {"minio", "create-bucket", "postgres", "orthanc-a", "orthanc-b", "nginx"}
    for name, service in services.items():
        if name in REPLICAS:
            assert service["build"]["dockerfile"] == "docker/Dockerfile"
            continue
        repository, _, tag = service["image"].partition(":")
        assert tag and tag != "latest", f"{name}: the image {service['image']!r} is not pinned"

    first, second = (services[name]["environment"] for name in REPLICAS)
    shared = {key: value for key, value in first.items() if key != "ORTHANC__DATABASE_SERVER_IDENTIFIER"}
    assert shared == {key: value for key, value in second.items() if key != "ORTHANC__DATABASE_SERVER_IDENTIFIER"}
    assert first["ORTHANC__DATABASE_SERVER_IDENTIFIER"] != second["ORTHANC__DATABASE_SERVER_IDENTIFIER"]
    for replica in REPLICAS:
        depends = services[replica]["depends_on"]
        assert depends["create-bucket"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        # Every variable is one of the image's current names: a legacy name stops the image (§1.6).
        assert all(name.startswith("ORTHANC__") for name in services[replica]["environment"])
    assert "mb --ignore-existing local/orthanc" in " ".join(services["create-bucket"]["entrypoint"])
    assert first["ORTHANC__AWS_S3_STORAGE__BUCKET_NAME"] == "orthanc"
    assert [port["published"] for port in services["nginx"]["ports"]] == [8042]

    with open(os.path.join(DOCKER, "nginx.conf")) as file:
        upstreams = re.findall(r"^\s*server\s+([\w.-]+):8042", file.read(), flags=re.M)
    assert sorted(upstreams) == sorted(REPLICAS)

    encrypted = compose_config("docker-compose.yml", "docker-compose.encryption.yml")["services"]
    for replica in REPLICAS:
        assert "master-key" in [secret["source"] if isinstance(secret, dict) else secret
                                for secret in encrypted[replica]["secrets"]]
        assert encrypted[replica]["environment"]["ORTHANC__AWS_S3_STORAGE__STORAGE_ENCRYPTION__MASTER_KEY"]


@pytest.mark.parametrize("replica", REPLICAS)
def test_the_replicas_start_with_the_configuration_meant(replica, tmp_path):
    """Compose environment -> the image's conversion -> Orthanc's configuration -> this plugin's config."""
    services = compose_config("docker-compose.yml", "docker-compose.encryption.yml")["services"]
    environment = {**dockerfile_env(), **services[replica]["environment"]}
    key = os.urandom(32)
    secrets = container_secrets(tmp_path, key)
    configuration, enabled = docker_env.generate(environment, image_etc_files(tmp_path), secrets)

    # Orthanc's side: this plugin through Python, PostgreSQL for the index, the C++ storage plugins off.
    assert configuration["PythonScript"] == IMAGE_PLUGIN_PATH
    assert configuration["Python"] == {"AllowThreads": True}
    assert "Python" in enabled and "PostgreSQL" in enabled
    assert not set(enabled) & {"AwsS3Storage", "AzureBlobStorage", "GoogleCloudStorage"}
    assert "MUST BE DEFINED" not in json.dumps(configuration)
    assert configuration["PostgreSQL"] == {
        "Host": "postgres", "Database": "orthanc", "Username": "orthanc", "Password": "Pg7secretValue",
        "EnableIndex": True, "EnableStorage": False, "Lock": False, "Port": 5432, "EnableSsl": False}
    assert configuration["RegisteredUsers"] == {"admin": "Adm1nPassw0rd"}
    assert configuration["DatabaseServerIdentifier"] == replica

    # The plugin's side.
    secrets_dir = write_secrets(tmp_path, secrets)
    parsed, warnings = config.parse(mounted(configuration, secrets_dir))
    assert warnings == []
    assert parsed.section == "AwsS3Storage"
    s3 = parsed.provider
    assert (s3.bucket_name, s3.region, s3.endpoint, s3.virtual_addressing) == (
        "orthanc", "us-east-1", "http://minio:9000", False)
    assert (s3.access_key, s3.secret_key) == ("orthanc-minio", "change-me-minio-password")
    assert parsed.common.encryption.master_key.id == 1
    assert parsed.common.encryption.master_key.key == key
    assert parsed.common.storage_directory == "/var/lib/orthanc/db"  # the image's default
    assert s3.https_ca_certificates == "/etc/ssl/certs/ca-certificates.crt"


def test_without_the_dockerfile_switch_the_images_own_s3_plugin_would_start_too(tmp_path):
    services = compose_config("docker-compose.yml")["services"]
    environment = dict(services["orthanc-a"]["environment"])
    _, enabled = docker_env.generate(environment, image_etc_files(tmp_path), container_secrets(tmp_path, b"k"))
    assert "AwsS3Storage" in enabled
    for wrong in ("False", "0", "no"):  # only the exact lower-case "false" turns it off (§1.5)
        _, enabled = docker_env.generate({**environment, "AWS_S3_STORAGE_PLUGIN_ENABLED": wrong},
                                         image_etc_files(tmp_path), container_secrets(tmp_path, b"k"))
        assert "AwsS3Storage" in enabled


# --- every option has a variable -------------------------------------------------------------------------

def known_options(section: str) -> list[str]:
    """The option names (aliases included) config.parse knows in a section, from its option table."""
    return [name for spec in config.options(section) for name in spec.names]


def natural_variable(path: list[str]) -> str:
    """The name an administrator writes: each capitalised word (or run of capitals) becomes one word."""
    pieces = ["_".join(re.findall(r"[A-Z]+[0-9]*(?![a-z])|[A-Z][a-z0-9]*|[a-z0-9]+", key)).upper() for key in path]
    return "ORTHANC__" + "__".join(pieces)


# Options the naming rule cannot spell, with what docs/docker.md tells administrators to use instead.
NEEDS_ANOTHER_NAME = {("HttpsCACertificates",): "ORTHANC__HTTPS_CA_CERTIFICATES"}  # the image's own alias


def every_option_path():
    for section in SECTIONS:
        for option in known_options(section):
            yield (section, option)
        for option in known_options(config.ENCRYPTION_SECTION):
            yield (section, "StorageEncryption", option)
    for option in known_options(config.GLOBAL_SECTION):
        yield (option,)


def test_every_option_has_an_environment_variable():
    unspellable = {}
    for path in every_option_path():
        variable = natural_variable(list(path))
        if docker_env.rule_path(variable) != list(path):
            unspellable[path] = variable
        assert not variable.endswith("_SECRET"), f"{variable}: read as an indirect secret by the image (§1.4)"
    assert set(unspellable) == set(NEEDS_ANOTHER_NAME), unspellable
    for path, variable in NEEDS_ANOTHER_NAME.items():
        assert docker_env.json_path(variable) == list(path)
    with open(os.path.join(ROOT, "docs", "docker.md")) as file:
        page = file.read()
    # The Docker page's tables name a variable for every option (shared options once, under AwsS3Storage).
    s3_options = set(known_options(config.S3_SECTION))
    for path in every_option_path():
        if path[0] in (config.AZURE_SECTION, config.GCS_SECTION) and (
                path[1] in s3_options or path[1] == "StorageEncryption"):
            continue
        variable = NEEDS_ANOTHER_NAME.get(path, natural_variable(list(path)))
        assert f"`{variable}" in page, f"docs/docker.md does not document {variable} ({'.'.join(path)})"


S3_VARIABLES = {
    "ORTHANC__AWS_S3_STORAGE__BUCKET_NAME": '"2024"',  # all digits: quoted, or it becomes a number
    "ORTHANC__AWS_S3_STORAGE__REGION": "eu-west-3",
    "ORTHANC__AWS_S3_STORAGE__ACCESS_KEY": "AKIAEXAMPLE",
    "ORTHANC__AWS_S3_STORAGE__ENDPOINT": "https://s3.example.com",
    "ORTHANC__AWS_S3_STORAGE__VIRTUAL_ADDRESSING": "false",
    "ORTHANC__AWS_S3_STORAGE__CONNECT_TIMEOUT": "7",
    "ORTHANC__AWS_S3_STORAGE__REQUEST_TIMEOUT": "600",
    "ORTHANC__AWS_S3_STORAGE__MAX_CONNECTIONS": "50",
    "ORTHANC__AWS_S3_STORAGE__MAX_RETRIES": "3",
    "ORTHANC__AWS_S3_STORAGE__ENABLE_AWS_SDK_LOGS": "true",
    "ORTHANC__AWS_S3_STORAGE__USE_TRANSFER_MANAGER": "true",
    "ORTHANC__AWS_S3_STORAGE__TRANSFER_POOL_SIZE": "4",
    "ORTHANC__AWS_S3_STORAGE__TRANSFER_BUFFER_SIZE": "16",
    "ORTHANC__AWS_S3_STORAGE__STORAGE_CLASS": "STANDARD_IA",
    "ORTHANC__AWS_S3_STORAGE__TAGS": '{"project": "pacs", "cost-center": "42"}',
    "ORTHANC__AWS_S3_STORAGE__STORAGE_STRUCTURE": "legacy",
    "ORTHANC__AWS_S3_STORAGE__ROOT_PATH": "orthanc/prod",
    "ORTHANC__AWS_S3_STORAGE__ENABLE_LEGACY_UNKNOWN_FILES": "true",
    "ORTHANC__AWS_S3_STORAGE__HYBRID_MODE": "WriteToObjectStorage",
    "ORTHANC__AWS_S3_STORAGE__MIGRATION_FROM_FILE_SYSTEM_ENABLED": "false",
    "ORTHANC__AWS_S3_STORAGE__STORAGE_ENCRYPTION__ENABLE": "true",
    "ORTHANC__AWS_S3_STORAGE__STORAGE_ENCRYPTION__MASTER_KEY": '[2, "/run/secrets/key-2"]',
    "ORTHANC__AWS_S3_STORAGE__STORAGE_ENCRYPTION__PREVIOUS_MASTER_KEYS": '[[1, "/run/secrets/key-1"]]',
    "ORTHANC__AWS_S3_STORAGE__STORAGE_ENCRYPTION__MAX_CONCURRENT_INPUT_SIZE": "256",
    "ORTHANC__AWS_S3_STORAGE__STORAGE_ENCRYPTION__FORMAT": "A2",
    "ORTHANC__HTTPS_CA_CERTIFICATES": "/etc/ssl/certs/corporate.pem",
    "ORTHANC__STORAGE_DIRECTORY": "/var/lib/orthanc/files",
    "ORTHANC__SYNC_STORAGE_AREA": "false",
    "ORTHANC__CONNECTION_TIMEOUT_IS_NOT_AN_OPTION": "1",  # lands at the root, where the plugin ignores it
}


def startup(tmp_path, environment, secrets=None):
    """The image's conversion, then config.parse, with /run/secrets mounted from a temporary folder."""
    secrets = secrets or {}
    configuration, enabled = docker_env.generate({**dockerfile_env(), **environment}, image_etc_files(tmp_path),
                                                 secrets)
    secrets_dir = write_secrets(tmp_path, secrets)
    return configuration, enabled, config.parse(mounted(configuration, secrets_dir))


def test_every_s3_option_through_environment_variables_and_secrets(tmp_path):
    keys = {1: os.urandom(32), 2: os.urandom(32)}
    secrets = {f"key-{number}": base64.b64encode(key).decode() + "\n" for number, key in keys.items()}
    secrets["ORTHANC__AWS_S3_STORAGE__SECRET_KEY"] = "wJalrXUtnFEMI/K7MDENG\n"  # direct form (§1.4)
    configuration, enabled, (parsed, warnings) = startup(tmp_path, S3_VARIABLES, secrets)

    assert warnings == []
    assert "AwsS3Storage" not in enabled
    s3, common = parsed.provider, parsed.common
    assert (s3.bucket_name, s3.region, s3.access_key, s3.secret_key, s3.endpoint) == (
        "2024", "eu-west-3", "AKIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "https://s3.example.com")
    assert s3.virtual_addressing is False and s3.enable_aws_sdk_logs is True and s3.use_transfer_manager is True
    assert (s3.connect_timeout, s3.request_timeout, s3.max_connections, s3.max_retries) == (7, 600, 50, 3)
    assert (s3.transfer_pool_size, s3.transfer_buffer_size_mb, s3.storage_class) == (4, 16, "STANDARD_IA")
    assert dict(s3.tags) == {"project": "pacs", "cost-center": "42"}
    assert s3.https_ca_certificates == "/etc/ssl/certs/corporate.pem"
    assert (common.storage_structure, common.root_path, common.enable_legacy_unknown_files) == (
        "legacy", "orthanc/prod", True)
    assert common.hybrid_mode == config.HYBRID_WRITE_TO_OBJECT_STORAGE
    assert (common.storage_directory, common.sync_storage_area) == ("/var/lib/orthanc/files", False)
    encryption = common.encryption
    assert (encryption.master_key.id, encryption.master_key.key) == (2, keys[2])
    assert [(old.id, old.key) for old in encryption.previous_master_keys] == [(1, keys[1])]
    assert (encryption.max_concurrent_input_size_mb, encryption.format) == (256, "A2")
    assert configuration["ConnectionTimeoutIsNotAnOption"] == 1


def test_connection_timeout_synonym_and_indirect_secret(tmp_path):
    environment = {"ORTHANC__AWS_S3_STORAGE__BUCKET_NAME": "b", "ORTHANC__AWS_S3_STORAGE__REGION": "r",
                   "ORTHANC__AWS_S3_STORAGE__ACCESS_KEY": "a",
                   "ORTHANC__AWS_S3_STORAGE__SECRET_KEY_SECRET": "s3-secret-key",  # indirect form (§1.4)
                   "ORTHANC__AWS_S3_STORAGE__CONNECTION_TIMEOUT": "9"}
    _, _, (parsed, _) = startup(tmp_path, environment, {"s3-secret-key": "from-a-file\n"})
    assert parsed.provider.secret_key == "from-a-file"
    assert parsed.provider.connect_timeout == 9


def test_azure_and_gcs_options_through_environment_variables(tmp_path):
    azure = {"ORTHANC__AZURE_BLOB_STORAGE__CONNECTION_STRING":
             "DefaultEndpointsProtocol=https;AccountName=pacs;AccountKey=a2V5Cg==;EndpointSuffix=core.windows.net",
             "ORTHANC__AZURE_BLOB_STORAGE__CONTAINER_NAME": "orthanc",
             "ORTHANC__AZURE_BLOB_STORAGE__CREATE_CONTAINER_IF_NOT_EXISTS": "false",
             "ORTHANC__AZURE_BLOB_STORAGE__ACCESS_TIER": "Cool",
             "ORTHANC__AZURE_BLOB_STORAGE__ROOT_PATH": "studies"}
    _, enabled, (parsed, warnings) = startup(tmp_path, azure)
    assert warnings == [] and "AzureBlobStorage" not in enabled
    assert parsed.provider.connection_string.startswith("DefaultEndpointsProtocol=https;AccountName=pacs;")
    assert (parsed.provider.container_name, parsed.provider.create_container_if_not_exists,
            parsed.provider.access_tier, parsed.common.root_path) == ("orthanc", False, "Cool", "studies")

    gcs = {"ORTHANC__GOOGLE_CLOUD_STORAGE__BUCKET_NAME": "pacs-archive",
           "ORTHANC__GOOGLE_CLOUD_STORAGE__SERVICE_ACCOUNT_FILE": "/run/secrets/gcs-service-account"}
    key_file = json.dumps({"type": "service_account", "client_email": "orthanc@pacs.iam.gserviceaccount.com",
                           "private_key": "-----BEGIN PRIVATE KEY-----\n..."})  # checked for shape at start-up
    _, enabled, (parsed, warnings) = startup(tmp_path, gcs, {"gcs-service-account": key_file})
    assert warnings == [] and "GoogleCloudStorage" not in enabled
    assert parsed.provider.bucket_name == "pacs-archive"
    assert parsed.provider.service_account_file.endswith("/gcs-service-account")


def test_a_whole_section_as_one_json_variable(tmp_path):
    environment = {
        "ORTHANC__AWS_S3_STORAGE": '{"BucketName": "b", "Region": "eu-west-1", "Tags": {"project": "pacs"}}',
        "ORTHANC__AWS_S3_STORAGE__ENDPOINT": "http://minio:9000",  # merged with the JSON form
    }
    _, _, (parsed, warnings) = startup(tmp_path, environment)
    assert warnings == []
    assert (parsed.provider.bucket_name, parsed.provider.region, parsed.provider.endpoint) == (
        "b", "eu-west-1", "http://minio:9000")
    assert dict(parsed.provider.tags) == {"project": "pacs"}

    json_document = {"ORTHANC_JSON": '{"AwsS3Storage": {"BucketName": "b", "Region": "r"} /* comment */}'}
    _, _, (parsed, _) = startup(tmp_path, json_document)
    assert parsed.provider.bucket_name == "b"


def test_what_the_naming_and_value_rules_do_to_careless_variables(tmp_path):
    # Tag keys by path are capitalised by the rule: the JSON form is the way to write them.
    configuration, _, _ = startup(tmp_path, {"ORTHANC__AWS_S3_STORAGE__BUCKET_NAME": "b",
                                             "ORTHANC__AWS_S3_STORAGE__REGION": "r",
                                             "ORTHANC__AWS_S3_STORAGE__TAGS__PROJECT": "pacs"})
    assert configuration["AwsS3Storage"]["Tags"] == {"Project": "pacs"}

    # All digits become a number, "False" stays a string: the plugin refuses both, naming the option.
    with pytest.raises(ConfigError) as refused:
        startup(tmp_path, {"ORTHANC__AWS_S3_STORAGE__BUCKET_NAME": "2024",
                                      "ORTHANC__AWS_S3_STORAGE__REGION": "r",
                                      "ORTHANC__AWS_S3_STORAGE__ACCESS_KEY": "a",
                                      "ORTHANC__AWS_S3_STORAGE__SECRET_KEY": "12345678",
                                      "ORTHANC__AWS_S3_STORAGE__VIRTUAL_ADDRESSING": "False"})
    message = str(refused.value)
    assert "AwsS3Storage.BucketName: 2024 (number)" in message
    assert "AwsS3Storage.SecretKey: (value hidden)" in message and "12345678" not in message
    assert "AwsS3Storage.VirtualAddressing: 'False' (string)" in message

    # A trailing or doubled underscore crashes the image's script before Orthanc starts.
    with pytest.raises(docker_env.StartupError):
        docker_env.generate({"ORTHANC__AWS_S3_STORAGE__BUCKET_NAME_": "b"})


def test_a_json_file_in_run_secrets_is_merged_into_the_configuration(tmp_path):
    """Why docs/docker.md says to mount the GCS key without a .json extension (§1.1)."""
    key_file = '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}'
    configuration, _ = docker_env.generate({}, {}, {"gcs-service-account.json": key_file})
    assert configuration["private_key"].startswith("-----BEGIN")
