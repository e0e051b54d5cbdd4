"""Credentials: the API key and the admin token, checked before anything else."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import SecretStr

from services.http.auth import Credentials, Forbidden, Unauthorized
from services.http.routes import RequestInfo, Route

TOKEN = "admin-token-0123456789"
KEY = "api-key-abcdefghijkl"


async def _handler(payload: object, info: RequestInfo) -> dict[str, object]:
    return {}


def _route(admin: bool) -> Route:
    return Route("POST", "/x", _handler, admin=admin)


ADMIN, PREDICT = _route(True), _route(False)


@pytest.fixture
def credentials() -> Credentials:
    return Credentials.from_secrets(SecretStr(TOKEN), SecretStr(KEY))


def test_secrets_are_kept_only_as_digests(credentials: Credentials) -> None:
    assert credentials.tokens[0][0] == hashlib.sha256(TOKEN.encode()).digest()
    assert TOKEN not in repr(credentials)
    assert KEY not in repr(credentials)


def test_the_right_token_and_key_pass_and_say_who_called(credentials: Credentials) -> None:
    admin = credentials.check(ADMIN, [(b"authorization", f"Bearer {TOKEN}".encode())])
    assert admin is not None
    assert (admin.name, admin.roles) == ("admin", frozenset({"operator", "approver", "auditor"}))
    credentials.check(ADMIN, [(b"authorization", f"bearer  {TOKEN}".encode())])
    caller = credentials.check(PREDICT, [(b"x-api-key", KEY.encode())])
    assert caller is not None
    assert (caller.name, caller.roles) == ("api", frozenset())


def test_each_principal_may_call_only_what_its_roles_allow() -> None:
    ana, bo = "ana-token-0123456789", "bo-token-0123456789x"
    credentials = Credentials.from_secrets(
        None, None, {"ana": (SecretStr(ana), ["operator"]), "bo": (SecretStr(bo), ["approver"])}
    )
    approve = Route("POST", "/admin/rollouts/approve", _handler, admin=True, roles=frozenset({"approver"}))
    start = Route("POST", "/admin/rollouts", _handler, admin=True)
    assert credentials.check(start, [(b"authorization", f"Bearer {ana}".encode())]) == credentials.tokens[0][1]
    with pytest.raises(Forbidden, match=r"ana may not call /admin/rollouts/approve \(it needs approver\)"):
        credentials.check(approve, [(b"authorization", f"Bearer {ana}".encode())])
    found = credentials.check(approve, [(b"authorization", f"Bearer {bo}".encode())])
    assert found is not None
    assert found.name == "bo"
    with pytest.raises(ValueError, match="roles must be among"):
        Credentials.from_secrets(None, None, {"cy": (SecretStr("c" * 20), ["root"])})
    with pytest.raises(ValueError, match="two principals share a token"):
        Credentials.from_secrets(SecretStr(ana), None, {"ana2": (SecretStr(ana), ["operator"])})


@pytest.mark.parametrize(
    "headers",
    [[], [(b"authorization", b"Basic abc")], [(b"authorization", b"Bearer ")], [(b"x-api-key", KEY.encode())]],
    ids=["none", "basic", "empty", "api-key-instead"],
)
def test_a_missing_admin_token_is_401_with_the_scheme(
    credentials: Credentials, headers: list[tuple[bytes, bytes]]
) -> None:
    with pytest.raises(Unauthorized) as raised:
        credentials.check(ADMIN, headers)
    assert raised.value.status == 401
    assert raised.value.headers == ((b"www-authenticate", b"Bearer"),)


@pytest.mark.parametrize("token", [TOKEN[:-1], TOKEN + "x", TOKEN.upper(), KEY])
def test_a_wrong_admin_token_is_403(credentials: Credentials, token: str) -> None:
    with pytest.raises(Forbidden) as raised:
        credentials.check(ADMIN, [(b"authorization", f"Bearer {token}".encode())])
    assert raised.value.status == 403
    assert token not in str(raised.value)


def test_the_api_key_is_required_when_set(credentials: Credentials) -> None:
    with pytest.raises(Unauthorized):
        credentials.check(PREDICT, [])
    with pytest.raises(Forbidden):
        credentials.check(PREDICT, [(b"x-api-key", b"nope")])


def test_without_settings_predictions_are_open_and_admin_is_off() -> None:
    credentials = Credentials.from_secrets(None, None)
    credentials.check(PREDICT, [])
    with pytest.raises(Forbidden, match="disabled"):
        credentials.check(ADMIN, [(b"authorization", f"Bearer {TOKEN}".encode())])


def test_a_short_secret_fails_at_start_without_showing_it() -> None:
    with pytest.raises(ValueError, match="at least 16") as raised:
        Credentials.from_secrets(SecretStr("short-secret"), None)
    assert "short-secret" not in str(raised.value)


def test_each_api_key_names_its_caller() -> None:
    checkout, batch = "checkout-key-0123456789", "batch-key-0123456789ab"
    credentials = Credentials.from_secrets(
        None, SecretStr(KEY), api_keys={"checkout": SecretStr(checkout), "batch": SecretStr(batch)}
    )
    assert credentials.api_key
    found = {key: credentials.check(PREDICT, [(b"x-api-key", key.encode())]) for key in (KEY, checkout, batch)}
    assert {key: p.name for key, p in found.items() if p is not None} == {
        KEY: "api",
        checkout: "checkout",
        batch: "batch",
    }
    assert all(not p.roles for p in found.values() if p is not None)  # a caller holds no admin role
    with pytest.raises(Forbidden):
        credentials.check(PREDICT, [(b"x-api-key", (checkout + "x").encode())])


def test_two_callers_may_not_share_a_key() -> None:
    with pytest.raises(ValueError, match="share an API key"):
        Credentials.from_secrets(None, SecretStr(KEY), api_keys={"checkout": SecretStr(KEY)})
