"""The SLO gate against the real server: a short locust run in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import gate


def test_the_fraud_service_meets_its_slo_in_a_short_run(
    fraud_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = gate.main(
        ["--service", "fraud", "--url", fraud_url, "--users", "8", "--duration", "8s", "--reports", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "p95 latency" in out
    assert "FAIL" not in out
    assert (tmp_path / "fraud-normal_stats.csv").exists()
    assert (tmp_path / "fraud-normal.html").exists()


def test_the_gate_fails_a_run_that_misses_its_slo(
    fraud_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    impossible = tmp_path / "slo.toml"
    impossible.write_text("[fraud]\np95_ms = 0.001\nmin_rps = 1000000\nmax_error_rate = 0.0\n")
    code = gate.main(
        [
            "--service",
            "fraud",
            "--url",
            fraud_url,
            "--users",
            "2",
            "--duration",
            "3s",
            "--slo-file",
            str(impossible),
            "--reports",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert capsys.readouterr().out.count("FAIL") == 2


def test_the_gate_refuses_remote_targets() -> None:
    with pytest.raises(SystemExit):
        gate.main(["--url", "http://10.0.0.1:3000"])
