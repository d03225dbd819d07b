"""Format A1 through Crypto++: the project's own small program (tests/crosscheck/a1_cryptopp.cpp), built by
``scripts/setup.sh test`` into build/a1_cryptopp, driven over stdin/stdout as the official plugin's library would
encrypt and decrypt."""

import base64
import os
import subprocess

from .servers import require

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(CHECKOUT, "tests", "crosscheck", "a1_cryptopp.cpp")
BINARY = os.path.join(CHECKOUT, "build", "a1_cryptopp")


class Refused(Exception):
    """The program refused an object (exit status 1); the message is its reason."""


def binary() -> str:
    """build/a1_cryptopp, checked to exist and to be built from the current source (skips on a developer's
    partial machine, fails in CI)."""
    require(os.path.exists(BINARY), f"{os.path.relpath(BINARY, CHECKOUT)} is missing: run bash scripts/setup.sh test "
            "(it installs g++ and libcrypto++-dev and builds tests/crosscheck/a1_cryptopp.cpp)")
    require(os.path.getmtime(BINARY) >= os.path.getmtime(SOURCE),
            f"{os.path.relpath(BINARY, CHECKOUT)} is older than its source: "
            "run bash scripts/setup.sh test to rebuild it")
    return BINARY


def write_key_file(path: str, key: bytes) -> str:
    """A key file as the official plugin's documentation makes one (openssl rand -base64 32)."""
    with open(path, "wb") as file:
        file.write(base64.b64encode(key) + b"\n")
    return path


def _run(arguments: list[str], data: bytes) -> bytes:
    result = subprocess.run([binary(), *arguments], input=data, capture_output=True, timeout=60)
    if result.returncode == 1:
        raise Refused(result.stderr.decode(errors="replace").strip())
    if result.returncode != 0:
        raise AssertionError(f"a1_cryptopp {arguments[0]} failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def encrypt(plaintext: bytes, key_id: int, key_file: str, iv: bytes | None = None, dek: bytes | None = None) -> bytes:
    """An A1 object written by Crypto++ under master key ``key_id``; random IV and DEK unless both are given."""
    arguments = ["encrypt", "--master", f"{key_id}:{key_file}"]
    if iv is not None or dek is not None:
        assert iv is not None and dek is not None, "give both iv and dek"
        arguments += ["--iv", iv.hex(), "--dek", dek.hex()]
    return _run(arguments, plaintext)


def decrypt(blob: bytes, key_id: int, key_file: str, previous: tuple[tuple[int, str], ...] = ()) -> bytes:
    """The plaintext as Crypto++ decrypts it with the current key and the previous ones; ``Refused`` otherwise."""
    arguments = ["decrypt", "--master", f"{key_id}:{key_file}"]
    for previous_id, previous_file in previous:
        arguments += ["--previous", f"{previous_id}:{previous_file}"]
    return _run(arguments, blob)
