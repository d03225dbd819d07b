"""Fakes of Azure Key Vault and Google Cloud KMS for the ``azure-keyvault:`` and ``gcp-kms:`` key files (no
emulator exists for either): answers recorded from the services' REST references, played at the SDKs' own
seams. Key Vault: an azure-core ``HttpTransport`` (the challenge, the key read, unwrapKey). Cloud KMS: an HTTP
server on 127.0.0.1 that google-cloud-kms's REST transport is pointed at (``api_endpoint``).

Each fake "wraps" with a reversible toy transform (XOR with a per-fake pad) so that a ciphertext it did not
produce, or that was damaged, is refused the way the service refuses it."""

import base64
import io
import json
import os
import ssl
import time
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

from .local_server import LocalHttpServer

VAULT_HOST = "pacs-vault.vault.azure.net"
VAULT = f"https://{VAULT_HOST}"
KEY_ID = f"{VAULT}/keys/orthanc-master/0123456789abcdef0123456789abcdef"
KMS_KEY = "projects/pacs/locations/europe-west1/keyRings/orthanc/cryptoKeys/master"
TENANT = "72f988bf-0000-4000-8000-000000000001"


class _ToyWrap:
    """The fake services' wrapping: a 4-byte tag, then the key XORed with a random pad."""

    def __init__(self):
        self.pad = os.urandom(64)
        self.tag = os.urandom(4)

    def wrap(self, key: bytes) -> bytes:
        return self.tag + bytes(a ^ b for a, b in zip(key, self.pad, strict=False))

    def unwrap(self, blob: bytes) -> bytes | None:
        if not blob.startswith(self.tag) or not 0 < len(blob) - 4 <= len(self.pad):
            return None
        return bytes(a ^ b for a, b in zip(blob[4:], self.pad, strict=False))


def damaged(text: bytes) -> bytes:
    """A key file's text with the first byte of its ciphertext (the last field) changed."""
    fields = text.split()
    blob = bytearray(base64.b64decode(fields[-1]))
    blob[0] ^= 0xFF
    return b" ".join([*fields[:-1], base64.b64encode(bytes(blob))]) + b"\n"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeToken:
    """A TokenCredential that always has a token (the vault fake accepts any bearer)."""

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        return AccessToken("vault-token", int(time.time()) + 3600)


class FakeKeyVault:
    """A Key Vault at the SDK's transport. ``state`` "enabled", "disabled" or "unreachable"; ``operations``
    lists (method, path) of what was asked with a token."""

    def __init__(self):
        self.toy = _ToyWrap()
        self.state = "enabled"
        self.operations: list[tuple[str, str]] = []

    def wrapped_file_text(self, key: bytes, algorithm: str | None = None) -> bytes:
        middle = f" {algorithm}" if algorithm else ""
        return f"azure-keyvault:{KEY_ID}{middle} {base64.b64encode(self.toy.wrap(key)).decode()}\n".encode()

    def transport(self):
        """azure-core's own RequestsTransport over a requests session whose HTTPS adapter is this fake."""
        import requests
        import urllib3
        from azure.core.pipeline.transport import RequestsTransport
        vault = self

        class Adapter(requests.adapters.BaseAdapter):
            def send(self, request, **kwargs):
                if vault.state == "unreachable":
                    raise requests.exceptions.ConnectionError("connection refused (fake)")
                status, headers, body = vault.answer(request)
                data = json.dumps(body).encode()
                headers = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(data)),
                           **headers}
                response = requests.Response()
                response.raw = urllib3.HTTPResponse(body=io.BytesIO(data), headers=headers, status=status,
                                                    preload_content=False)
                response.status_code, response.url, response.request = status, request.url, request
                response.headers.update(headers)
                return response

            def close(self):
                pass

        session = requests.Session()
        session.mount("https://", Adapter())
        return RequestsTransport(session=session, session_owner=False)

    def answer(self, request) -> tuple[int, dict, dict]:
        path = request.url.split("?", 1)[0][len(VAULT):]
        if "Authorization" not in request.headers:  # the challenge Key Vault answers to an anonymous request
            return 401, {"WWW-Authenticate": f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                                             'resource="https://vault.azure.net"'}, {
                "error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}
        self.operations.append((request.method, path))
        key_path = KEY_ID[len(VAULT):]
        if not path.startswith(key_path):
            return 404, {}, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) was not found."}}
        if request.method == "GET":  # the key's public part: this identity may only unwrap
            return 403, {}, {"error": {"code": "Forbidden", "message": "The user, group or application does not "
                                       "have keys get permission on key vault.", "innererror": {
                                           "code": "ForbiddenByPolicy"}}}
        if self.state == "disabled":
            return 403, {}, {"error": {"code": "Forbidden", "message": "Operation unwrapKey is not allowed on a "
                                       "disabled key.", "innererror": {"code": "KeyDisabled"}}}
        value = json.loads(request.body or b"{}").get("value", "")  # a requests.PreparedRequest
        key = self.toy.unwrap(_b64url_decode(value))
        if key is None:
            return 400, {}, {"error": {"code": "BadParameter", "message": "The parameter is incorrect.\r\n"}}
        return 200, {}, {"kid": KEY_ID, "value": _b64url(key)}


class FakeCloudKms:
    """Cloud KMS's REST API (POST /v1/{name}:decrypt) on 127.0.0.1. ``state`` "enabled" or "disabled"."""

    def __init__(self):
        self.toy = _ToyWrap()
        self.state = "enabled"
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                status, answer = outer.answer(self.path.split("?", 1)[0], body)  # records the path
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = LocalHttpServer(Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.port}"

    def wrapped_file_text(self, key: bytes, name: str = KMS_KEY) -> bytes:
        return f"gcp-kms:{name}\n{base64.b64encode(self.toy.wrap(key)).decode()}\n".encode()

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        self.requests.append(path)
        if path != f"/v1/{KMS_KEY}:decrypt":
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message":
                                   f"{path[4:].split(':')[0]} not found."}}
        if self.state == "disabled":
            return 400, {"error": {"code": 400, "status": "FAILED_PRECONDITION", "message":
                                   f"{KMS_KEY}/cryptoKeyVersions/1 is not enabled, current state is: DISABLED."}}
        key = self.toy.unwrap(base64.b64decode(body.get("ciphertext", "")))
        if key is None:
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                   "message": "Decryption failed: the ciphertext is invalid."}}
        return 200, {"plaintext": base64.b64encode(key).decode(), "usedPrimary": True}

    def answer_request(self, request) -> tuple[int, dict, dict]:
        """The same answers for a request that came through ServicesBehindProxy."""
        path = request.url.split("?", 1)[0].split(GOOGLE_KMS_HOST, 1)[1]
        status, answer = self.answer(path, json.loads(request.body or b"{}"))
        return status, {}, answer

    def sdk_options(self, endpoint: str | None = None) -> dict:
        from google.auth.credentials import AnonymousCredentials
        return {"credentials": AnonymousCredentials(), "client_options": {"api_endpoint": endpoint or self.endpoint}}

    def close(self):
        self.server.close()


GOOGLE_KMS_HOST = "cloudkms.googleapis.com"
GOOGLE_TOKEN_HOST = "oauth2.googleapis.com"


def google_token(request) -> tuple[int, dict, dict]:
    """Google's OAuth token endpoint, should google-auth exchange the service account's assertion."""
    return 200, {}, {"access_token": "google-token", "expires_in": 3600, "token_type": "Bearer"}


class ServicesBehindProxy:
    """Fake cloud services reached the way a process in a private network reaches the real ones: through an
    HTTPS proxy (``HTTPS_PROXY``) on 127.0.0.1 that answers CONNECT to their host names itself, with TLS under
    a certificate for those names (trust it with REQUESTS_CA_BUNDLE). So the real host names, which the SDKs
    use (and Key Vault's SDK checks against its challenge), need no DNS. ``routes`` maps a host to a function
    of a request (method, url, headers, body) that returns (status, headers, JSON body); ``connects`` lists the
    CONNECT targets."""

    def __init__(self, routes: dict, certificate_file: str, key_file: str):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificate_file, key_file)
        self.connects: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_CONNECT(self):  # noqa: N802 - http.server's naming
                outer.connects.append(self.path)
                host, _, port = self.path.rpartition(":")
                if host not in routes or port != "443":
                    self.send_error(403, "this proxy only reaches the fake services")
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                tunnel = context.wrap_socket(self.connection, server_side=True)
                self.connection, self.rfile, self.wfile = tunnel, tunnel.makefile("rb"), tunnel.makefile("wb")
                self.host, self.close_connection = host, False
                while not self.close_connection:
                    self.handle_one_request()

            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = SimpleNamespace(method=self.command, url=f"https://{self.host}{self.path}",
                                          headers=self.headers, body=body)
                status, headers, answer = routes[self.host](request)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json; charset=utf-8", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = LocalHttpServer(Handler)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def environment(self, ca_file: str) -> dict:
        return {"HTTPS_PROXY": self.url, "https_proxy": self.url, "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost", "REQUESTS_CA_BUNDLE": ca_file}

    def close(self):
        self.server.close()


def service_account_file_text() -> bytes:
    """A Google service-account key file with a new RSA key (google-auth signs its own JWTs with it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "pacs", "private_key_id": "0" * 40,
                       "private_key": pem, "client_email": "orthanc@pacs.iam.gserviceaccount.com",
                       "client_id": "100000000000000000001", "token_uri": f"https://{GOOGLE_TOKEN_HOST}/token"}).encode()
