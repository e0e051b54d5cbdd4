from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from runtime import Settings, StageSettings


def test_reads_ballast_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("BALLAST_SHED_POLICY", "degrade")
    settings = Settings()
    assert settings.max_batch_size == 32
    assert settings.shed_policy == "degrade"


def test_a_bad_value_fails_at_once_with_the_value_in_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALLAST_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="input_value='0'"):
        Settings()
    monkeypatch.delenv("BALLAST_MAX_BATCH_SIZE")
    monkeypatch.setenv("BALLAST_DEVICE", "tpu")
    with pytest.raises(ValidationError, match="tpu"):
        Settings()


def test_inconsistent_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="fallback_reserve_ms must be below request_timeout_ms, got 500"):
        Settings(request_timeout_ms=100, fallback_reserve_ms=500)
    with pytest.raises(ValidationError, match="max_queue_rows must be at least max_batch_size, got 8 < 64"):
        Settings(max_queue_rows=8)
    with pytest.raises(ValidationError, match=r"stage 'slow': .*max_queue_rows must be at least max_batch_size"):
        Settings(stages={"slow": {"max_batch_size": 4096}})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(max_batchsize=3)  # type: ignore[call-arg]


def test_every_field_is_documented() -> None:
    import ast
    import inspect

    import runtime.core.settings as module

    tree = ast.parse(inspect.getsource(module))
    for cls in (module.Settings, module.StageSettings, module.DrillSettings):
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__).body
        documented = {
            stmt.target.id
            for stmt, following in itertools.pairwise(body)
            if isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        }
        assert set(cls.model_fields) <= documented, cls.__name__


def test_a_stage_takes_the_defaults_then_the_declaration_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BALLAST_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("BALLAST_STAGES", '{"fallback": {"max_batches_in_flight": 2}}')
    settings = Settings()
    assert settings.stage("primary") == StageSettings(max_batch_size=32)
    declared = {"max_batch_size": 1, "max_batches_in_flight": 4}
    assert settings.stage("fallback", declared) == StageSettings(max_batch_size=1, max_batches_in_flight=2)
    assert settings.stage("other", declared) == StageSettings(max_batch_size=1, max_batches_in_flight=4)


def test_a_bad_stage_setting_names_the_stage() -> None:
    with pytest.raises(ValueError, match=r"stage 'm': .*max_batch_size"):
        Settings().stage("m", {"max_batch_size": 0})
