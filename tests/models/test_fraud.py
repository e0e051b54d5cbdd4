from __future__ import annotations

import numpy as np

from models import fraud
from runtime import RecordSchema, Validator


def test_the_generator_is_seeded_and_realistic() -> None:
    records, labels = fraud.generate(20_000, seed=3)
    again, labels_again = fraud.generate(20_000, seed=3)
    assert records[:50] == again[:50]
    assert np.array_equal(labels, labels_again)
    assert 0.015 < labels.mean() < 0.06
    amounts = np.array([r["amount"] for r in records])
    assert amounts.min() > 0
    assert np.median(amounts) < 200 < amounts.max()


def test_generated_records_pass_the_request_validation() -> None:
    records, _ = fraud.generate(500, seed=4)
    schema = RecordSchema(fraud.Transaction, input_name="input", max_rows=500)
    request = Validator(schema, fraud.RULES).validate(records)
    assert request.rows == 500


def test_fraud_is_more_likely_with_the_risk_signals() -> None:
    records, labels = fraud.generate(40_000, seed=5)
    risky = np.array([r["device_change"] and r["country_mismatch"] for r in records])
    assert labels[risky].mean() > 3 * labels[~risky].mean()


def test_rule_scores_rise_with_risk_and_stay_probabilities() -> None:
    base = fraud.generate(1, seed=6)[0][0] | {
        "device_change": False,
        "country_mismatch": False,
        "amount": 20.0,
        "txn_count_1h": 0,
        "hour": 12,
        "card_age_days": 500,
    }
    risky = base | {"device_change": True, "country_mismatch": True, "amount": 2000.0, "txn_count_1h": 6}
    scores = [fraud.rule_score(fraud.Transaction(**r)) for r in (base, risky)]
    assert 0 <= scores[0] < scores[1] <= 0.95
