"""A bento holds its service's code and nothing more."""

from __future__ import annotations

import json
from pathlib import Path

from services.package import bentofile, included

ROOT = Path(__file__).resolve().parents[2]


def test_a_service_includes_what_it_imports_and_not_the_other_services() -> None:
    fraud = included("services.fraud:Fraud")
    assert {"services/fraud.py", "models/fraud.py", "runtime/pipeline.py", "services/http/frontdoor.py"} <= set(fraud)
    assert not {"services/digits.py", "services/tensor.py", "services/package.py", "models/build.py"} & set(fraud)
    digits = included("services.digits:Digits")
    assert "services/digits.py" in digits
    assert not {"services/fraud.py", "models/fraud.py"} & set(digits)


def test_the_top_level_bentofile_is_what_the_packager_writes_for_fraud() -> None:
    written = bentofile("services.fraud:Fraud", "fraud", included("services.fraud:Fraud"))
    assert (ROOT / "bentofile.yaml").read_text() == written, (
        'bentofile.yaml is stale: write it with python -c "from services.package import bentofile, included; '
        "print(bentofile('services.fraud:Fraud', 'fraud', included('services.fraud:Fraud')), end='')\" > bentofile.yaml"
    )
    assert json.loads(written.split("\n", 2)[2])["name"] == "ballast-fraud"
