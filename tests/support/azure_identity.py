"""Azure without an account key, locally: a self-signed TLS certificate, a fake managed-identity token endpoint
(App Service style, the one azure-identity's DefaultAzureCredential asks when IDENTITY_ENDPOINT and
IDENTITY_HEADER are set) and Azurite in HTTPS with ``--oauth basic``.

Azurite's basic OAuth mode (3.35.0, BlobTokenAuthenticator) checks a bearer token's shape, lifetime
(iat/nbf/exp), issuer (https://sts.windows.net/... and the other clouds' STS) and audience
(https://storage.azure.com, or the account's blob URL), never its signature; it refuses bearer tokens over
plain HTTP. The fake endpoint mints such tokens, unsigned, and counts the requests it answers.
"""

import base64
import datetime
import ipaddress
import json
import os
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from .local_server import LocalHttpServer
from .servers import AZURITE_ACCOUNT

TENANT = "72f988bf-0000-4000-8000-000000000001"
VALID_ISSUER = f"https://sts.windows.net/{TENANT}/"
STORAGE_AUDIENCE = "https://storage.azure.com"


def self_signed_certificate(*names: str) -> tuple[bytes, bytes]:
    """(certificate, key) in PEM for 127.0.0.1, localhost and ``names``, valid for a day; its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orthanc-objstore test CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    *(x509.DNSName(name) for name in ("localhost", *names))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(issuer: str = VALID_ISSUER, audience: str = STORAGE_AUDIENCE, lifetime: int = 3600) -> str:
    """An access token shaped like Entra ID's (header.claims.signature), with a dummy signature."""
    now = int(time.time())
    claims = {"aud": audience, "iss": issuer, "iat": now - 60, "nbf": now - 60, "exp": now + lifetime,
              "tid": TENANT, "oid": "00000000-0000-4000-8000-00000000000a", "ver": "1.0"}
    header = {"typ": "JWT", "alg": "RS256"}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(b'not-signed')}"


class FakeIdentityEndpoint:
    """App Service's managed-identity endpoint on 127.0.0.1 (plain HTTP, as on App Service): GET
    ?api-version=2019-08-01&resource=... with the X-IDENTITY-HEADER secret answers a token for ``resource``.

    ``issuer`` is put in the tokens (a wrong one makes Azurite refuse them); ``refuse`` answers 400
    with Entra's error body instead of a token. ``requests`` lists the resources asked for."""

    header_secret = "identity-header-for-tests"

    def __init__(self, issuer: str = VALID_ISSUER):
        self.issuer = issuer
        self.refuse = False
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                query = parse_qs(urlparse(self.path).query)
                resource = (query.get("resource") or [""])[0]
                if self.headers.get("X-IDENTITY-HEADER") != outer.header_secret:
                    self._answer(401, {"error": "invalid_request", "error_description": "no identity header"})
                    return
                outer.requests.append(resource)
                if outer.refuse:
                    self._answer(400, {"error": "invalid_resource", "error_description":
                                       "AADSTS500011: no identity is assigned to this resource"})
                    return
                audience = resource[:-len("/.default")] if resource.endswith("/.default") else resource
                self._answer(200, {"access_token": unsigned_jwt(outer.issuer, audience.rstrip("/") or audience),
                                   "expires_on": str(int(time.time()) + 3600), "resource": resource,
                                   "token_type": "Bearer"})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = LocalHttpServer(Handler)
        self.port = self.server.port
        self.url = f"http://127.0.0.1:{self.port}/msi/token"

    def environment(self) -> dict:
        """What makes DefaultAzureCredential ask this endpoint (its managed-identity credential, App Service)."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header_secret}

    def close(self):
        self.server.close()


def https_account_url(azurite) -> str:
    return f"https://127.0.0.1:{azurite.port}/{AZURITE_ACCOUNT}"


def identity_environment(endpoint: FakeIdentityEndpoint, ca_file: str) -> dict:
    """The process environment of a client that reaches Azurite with a token: the fake endpoint, the CA that
    signed Azurite's certificate (requests reads REQUESTS_CA_BUNDLE), and an empty Azure CLI folder (so that a
    developer's own ``az login`` is never used). Remove FOREIGN_VARIABLES from the parent's environment."""
    return {**endpoint.environment(), "REQUESTS_CA_BUNDLE": ca_file, "SSL_CERT_FILE": ca_file,
            "AZURE_CONFIG_DIR": os.path.join(os.path.dirname(ca_file), "no-azure-cli")}


# Variables through which the credential chain would find another identity than the fake endpoint's.
FOREIGN_VARIABLES = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
                     "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME", "MSI_ENDPOINT", "IMDS_ENDPOINT",
                     "IDENTITY_SERVER_THUMBPRINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST")
