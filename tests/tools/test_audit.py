"""The audit's bookkeeping, on canned pip-audit reports and PyPI answers (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.audit import merge, pins, render


def test_pins_are_read_and_names_normalized(tmp_path: Path) -> None:
    constraints = tmp_path / "c.txt"
    constraints.write_text("# lock\nFoo_Bar.baz==1.2\nuvicorn==0.54.0  # comment\n-e .\n")
    assert pins(constraints) == {"foo-bar-baz": "1.2", "uvicorn": "0.54.0"}


def test_skipped_packages_are_audited_only_when_pinned_at_the_latest_release() -> None:
    locked = {"a": "1.0", "b": "2.0", "c": "3.0", "d": "4.0", "e": "5.0"}
    report = {
        "dependencies": [
            {"name": "a", "version": "1.0", "vulns": []},
            {"name": "B", "version": "2.0", "vulns": [{"id": "GHSA-1"}]},
            *({"name": n, "skip_reason": "Dependency not found on PyPI"} for n in ("c", "d", "e")),
        ]
    }
    answers: dict[str, Any] = {
        "c": {"version": "3.0", "vulnerabilities": []},
        "d": {"version": "4.0", "vulnerabilities": [{"id": "PYSEC-9"}]},
        "e": {"version": "6.0", "vulnerabilities": []},
    }
    result = merge(locked, report, answers.__getitem__)
    assert sorted(result.audited) == ["a==1.0", "c==3.0"]
    assert result.vulnerable == {"b==2.0": ["GHSA-1"], "d==4.0": ["PYSEC-9"]}
    assert list(result.unaudited) == ["e==5.0"]
    text = "\n".join(render(result))
    assert "known vulnerabilities: 2" in text
    assert "NOT AUDITED e==5.0" in text


def test_an_unreachable_index_leaves_a_package_unaudited_not_clean() -> None:
    def down(name: str) -> dict[str, Any]:
        raise OSError("no route to host")

    result = merge({"a": "1"}, {"dependencies": [{"name": "a", "skip_reason": "x"}]}, down)
    assert result.audited == []
    assert "no route to host" in result.unaudited["a==1"]
