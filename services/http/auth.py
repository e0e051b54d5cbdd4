"""Who may call what: optional API keys for prediction endpoints, each naming the caller (the
principal the audit trail records); bearer tokens for the admin endpoints, each token naming a
principal and the roles it holds.

Roles: ``operator`` (reload, faults, breakers; start, pause, resume, abort and roll back rollouts) and
``approver`` (approve a rollout's promotion; roll back). The admin token (``BALLAST_ADMIN_TOKEN``) is
the principal ``admin`` with both roles; ``BALLAST_TOKENS`` names others. Who called is recorded with
every change a call makes.

Secrets are compared in constant time, as SHA-256 digests (so that neither the content nor the
length of a wrong guess shows in the timing), every known token each time, and never logged or
echoed. Missing credentials get 401 with ``WWW-Authenticate``; wrong ones 403, as does a principal
without the route's role; admin endpoints of a server without any token 403 whatever is sent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr

from .codecs import Headers, header
from .envelope import HTTPError, HttpErrorType
from .routes import Route

MIN_SECRET_CHARS = 16
ROLES = frozenset({"operator", "approver", "auditor"})
ADMIN = "admin"
API = "api"
"""The principal of the one shared API key (``BALLAST_API_KEY``)."""


class Unauthorized(HTTPError):
    def __init__(self, message: str, scheme: str) -> None:
        super().__init__(401, HttpErrorType.UNAUTHORIZED, message, headers=((b"www-authenticate", scheme.encode()),))


class Forbidden(HTTPError):
    def __init__(self, message: str) -> None:
        super().__init__(403, HttpErrorType.FORBIDDEN, message)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str]


def _digest(secret: SecretStr | None, name: str) -> bytes | None:
    if secret is None:
        return None
    value = secret.get_secret_value()
    if len(value) < MIN_SECRET_CHARS:  # the message must not carry the secret
        raise ValueError(f"{name} must be at least {MIN_SECRET_CHARS} characters")
    return hashlib.sha256(value.encode()).digest()


def _matches(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hashlib.sha256(given).digest(), expected)


def _owner(given: bytes, known: Sequence[tuple[bytes, Principal]]) -> Principal | None:
    """Whose secret ``given`` is; every secret is compared, whatever matched: no timing of which."""
    found = None
    for digest, owner in known:
        if _matches(given, digest):
            found = owner
    return found


@dataclass(frozen=True, slots=True)
class Credentials:
    tokens: tuple[tuple[bytes, Principal], ...] = field(default=())
    """SHA-256 of each admin-route token, and whose it is; none: admin endpoints are off."""
    api_keys: tuple[tuple[bytes, Principal], ...] = field(default=())
    """SHA-256 of each API key, and whose it is; none: prediction endpoints are open."""

    @property
    def api_key(self) -> bool:
        """Whether prediction endpoints need an API key."""
        return bool(self.api_keys)

    @classmethod
    def from_secrets(
        cls,
        admin_token: SecretStr | None,
        api_key: SecretStr | None,
        tokens: Mapping[str, tuple[SecretStr, Sequence[str]]] | None = None,
        api_keys: Mapping[str, SecretStr] | None = None,
    ) -> Credentials:
        """``tokens``: principal name -> (token, roles); ``api_keys``: caller name -> API key (with
        ``api_key``, the caller ``api``)."""
        found: list[tuple[bytes, Principal]] = []
        admin = _digest(admin_token, "BALLAST_ADMIN_TOKEN")
        if admin is not None:
            found.append((admin, Principal(ADMIN, ROLES)))
        for name, (secret, roles) in (tokens or {}).items():
            unknown = set(roles) - ROLES
            if unknown or not roles:
                raise ValueError(f"BALLAST_TOKENS: {name}'s roles must be among {sorted(ROLES)}, got {list(roles)}")
            if name == ADMIN:
                raise ValueError(f"BALLAST_TOKENS: the name {ADMIN!r} is the admin token's")
            digest = _digest(secret, f"BALLAST_TOKENS: {name}'s token")
            assert digest is not None
            found.append((digest, Principal(name, frozenset(roles))))
        if len({d for d, _ in found}) != len(found):
            raise ValueError("two principals share a token")
        callers: list[tuple[bytes, Principal]] = []
        shared = _digest(api_key, "BALLAST_API_KEY")
        if shared is not None:
            callers.append((shared, Principal(API, frozenset())))
        for name, secret in (api_keys or {}).items():
            if name == API and shared is not None:
                raise ValueError(f"BALLAST_API_KEYS: the name {API!r} is BALLAST_API_KEY's")
            digest = _digest(secret, f"BALLAST_API_KEYS: {name}'s key")
            assert digest is not None
            callers.append((digest, Principal(name, frozenset())))
        if len({d for d, _ in callers}) != len(callers):
            raise ValueError("two callers share an API key")
        return cls(tuple(found), tuple(callers))

    def check(self, found: Route, headers: Headers) -> Principal | None:
        """Who calls ``found`` (for admin routes), or :class:`Unauthorized` / :class:`Forbidden`."""
        if found.admin:
            if not self.tokens:
                raise Forbidden("admin endpoints are disabled on this server (no admin token is set)")
            authorization = header(headers, b"authorization")
            scheme, _, token = (authorization or b"").partition(b" ")
            if authorization is None or scheme.lower() != b"bearer" or not token.strip():
                raise Unauthorized("send Authorization: Bearer <token>", "Bearer")
            principal = _owner(token.strip(), self.tokens)
            if principal is None:
                raise Forbidden("the token is not valid")
            if not found.roles & principal.roles:
                raise Forbidden(
                    f"{principal.name} may not call {found.path} (it needs {' or '.join(sorted(found.roles))})"
                )
            return principal
        return self.caller(headers)

    def caller(self, headers: Headers) -> Principal | None:
        """Who calls a prediction route: the owner of the request's API key (``None`` when the
        server has no keys), or :class:`Unauthorized` / :class:`Forbidden`."""
        if self.api_keys:
            key = header(headers, b"x-api-key")
            if key is None:
                raise Unauthorized("send the API key in X-API-Key", 'ApiKey header="X-API-Key"')
            caller = _owner(key, self.api_keys)
            if caller is None:
                raise Forbidden("the API key is not valid")
            return caller
        return None
