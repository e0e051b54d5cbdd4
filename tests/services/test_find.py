"""Which service a name means: built-ins, modules, files, module:Service; never a silent default."""

from __future__ import annotations

import pytest

from services.find import find, main


@pytest.mark.parametrize(
    ("spec", "target", "name"),
    [
        ("fraud", "services.fraud:Fraud", "fraud"),
        ("digits", "services.digits:Digits", "digits"),
        ("services/digits.py", "services.digits:Digits", "digits"),
        ("services.fraud", "services.fraud:Fraud", "fraud"),
        ("services.fraud:Fraud", "services.fraud:Fraud", "fraud"),
        ("examples/wine/service.py", "examples.wine.service:WineService", "wine"),
    ],
)
def test_a_name_finds_its_service(spec: str, target: str, name: str) -> None:
    found = find(spec)
    assert (found.target, found.name) == (target, name)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("wine", "unknown service 'wine': the built-in ones are fraud, digits, tensor"),
        ("services.nothing", "no module 'services.nothing'"),
        ("services.fraud:Nope", "has no Ballast service named 'Nope'"),
        ("models.fraud", "declares 0 Ballast services"),
    ],
)
def test_anything_else_is_an_error_that_says_why(spec: str, reason: str) -> None:
    with pytest.raises(LookupError, match=reason):
        find(spec)


def test_the_command_exits_2_on_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wine"]) == 2
    assert "the built-in ones are fraud, digits, tensor" in capsys.readouterr().err
    assert main(["examples/wine/service.py", "--name"]) == 0
    assert capsys.readouterr().out.strip() == "wine"
