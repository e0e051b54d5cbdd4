"""Who may call what: an optional API key for prediction endpoints, a bearer token for the admin
endpoints that change state.

Secrets are compared in constant time, as SHA-256 digests (so that neither the content nor the
length of a wrong guess shows in the timing), and never logged or echoed. Missing credentials get
401 with ``WWW-Authenticate``; wrong ones 403; admin endpoints of a server without an admin token
403 whatever is sent.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from pydantic import SecretStr

from .codecs import Headers, header
from .envelope import HTTPError, HttpErrorType
from .routes import Route

MIN_SECRET_CHARS = 16


class Unauthorized(HTTPError):
    def __init__(self, message: str, scheme: str) -> None:
        super().__init__(401, HttpErrorType.UNAUTHORIZED, message, headers=((b"www-authenticate", scheme.encode()),))


class Forbidden(HTTPError):
    def __init__(self, message: str) -> None:
        super().__init__(403, HttpErrorType.FORBIDDEN, message)


def _digest(secret: SecretStr | None, name: str) -> bytes | None:
    if secret is None:
        return None
    value = secret.get_secret_value()
    if len(value) < MIN_SECRET_CHARS:  # the message must not carry the secret
        raise ValueError(f"BALLAST_{name.upper()} must be at least {MIN_SECRET_CHARS} characters")
    return hashlib.sha256(value.encode()).digest()


def _matches(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hashlib.sha256(given).digest(), expected)


@dataclass(frozen=True, slots=True)
class Credentials:
    admin_token: bytes | None = None
    """SHA-256 of the admin token; ``None``: admin endpoints are off."""
    api_key: bytes | None = None
    """SHA-256 of the API key; ``None``: prediction endpoints are open."""

    @classmethod
    def from_secrets(cls, admin_token: SecretStr | None, api_key: SecretStr | None) -> Credentials:
        return cls(_digest(admin_token, "admin_token"), _digest(api_key, "api_key"))

    def check(self, found: Route, headers: Headers) -> None:
        """Raise :class:`Unauthorized` or :class:`Forbidden` unless the request may call ``found``."""
        if found.admin:
            if self.admin_token is None:
                raise Forbidden("admin endpoints are disabled on this server (BALLAST_ADMIN_TOKEN is not set)")
            authorization = header(headers, b"authorization")
            scheme, _, token = (authorization or b"").partition(b" ")
            if authorization is None or scheme.lower() != b"bearer" or not token.strip():
                raise Unauthorized("send Authorization: Bearer <admin token>", "Bearer")
            if not _matches(token.strip(), self.admin_token):
                raise Forbidden("the admin token is not valid")
        elif self.api_key is not None:
            key = header(headers, b"x-api-key")
            if key is None:
                raise Unauthorized("send the API key in X-API-Key", 'ApiKey header="X-API-Key"')
            if not _matches(key, self.api_key):
                raise Forbidden("the API key is not valid")
