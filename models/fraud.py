"""Card-transaction fraud: the transaction type (the request of the fraud service and the columns of
its models), a seeded generator of realistic transactions, and the rules that answer when no model can.

The generator draws each transaction's context (merchant category, currency, hour, card age, recent
activity, travel) from plausible distributions, then decides fraud through a hidden, noisy logistic
process: risk rises with amount relative to the merchant's usual ticket, night hours, a new device,
a country mismatch, a young card, bursts of recent transactions and risky merchant categories, with
interactions (a new device abroad). About 3 % of transactions are fraud. The models never see the
hidden process, only its labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from runtime import BusinessRule, columns_of
from runtime.core.classification import Classified, Level

Currency = Literal["EUR", "USD", "GBP", "CHF", "JPY"]
Merchant = Literal["grocery", "fuel", "restaurant", "pharmacy", "travel", "electronics", "jewelry", "gaming"]
CURRENCIES: tuple[str, ...] = get_args(Currency)
MERCHANTS: tuple[str, ...] = get_args(Merchant)
# Typical ticket (median amount, EUR) and a base log-odds of fraud per merchant category.
_TICKET = {
    "grocery": 35,
    "fuel": 55,
    "restaurant": 40,
    "pharmacy": 25,
    "travel": 420,
    "electronics": 260,
    "jewelry": 600,
    "gaming": 30,
}
_MERCHANT_RISK = {
    "grocery": -0.6,
    "fuel": -0.2,
    "restaurant": -0.4,
    "pharmacy": -0.5,
    "travel": 0.3,
    "electronics": 0.7,
    "jewelry": 0.9,
    "gaming": 0.8,
}


class Transaction(BaseModel):
    """One card transaction. The fields, in this order, are the columns of the fraud models' input."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "amount": 249.9,
                    "currency": "EUR",
                    "merchant_category": "electronics",
                    "hour": 14,
                    "country_mismatch": False,
                    "card_age_days": 540,
                    "device_change": False,
                    "txn_count_1h": 1,
                    "txn_count_24h": 4,
                    "distance_km": 12.5,
                }
            ]
        }
    )

    amount: float = Field(ge=0.01, le=50_000, description="transaction amount")
    currency: Currency = Field(description="ISO 4217 currency")
    merchant_category: Merchant = Field(description="merchant category")
    hour: int = Field(ge=0, le=23, description="local hour of the transaction")
    country_mismatch: bool = Field(description="card country differs from merchant country")
    card_age_days: int = Field(ge=0, le=20_000, description="days since card issue")
    device_change: bool = Field(description="first use of this device for the card")
    txn_count_1h: int = Field(ge=0, le=1_000, description="card's transactions, last hour")
    txn_count_24h: int = Field(ge=0, le=10_000, description="card's transactions, last day")
    distance_km: float = Field(ge=0, le=20_100, description="distance from the home address")
    # context: validated and kept (as their classes allow) in the audit trail, never model columns
    card_number: Annotated[str | None, Classified(Level.RESTRICTED)] = Field(
        None, pattern=r"^[0-9]{12,19}$", description="the card's number (restricted: never stored)"
    )
    customer_email: Annotated[str | None, Classified(Level.CONFIDENTIAL)] = Field(
        None, max_length=254, description="the customer's e-mail address (confidential: stored as a keyed digest)"
    )
    note: str | None = Field(
        None,
        max_length=500,
        description="free text from the checkout (e-mail addresses, card and phone numbers in it are masked "
        "wherever it is kept)",
    )


FEATURES = tuple(column.name for column in columns_of(Transaction))
CATEGORICAL = tuple(i for i, name in enumerate(FEATURES) if name in ("currency", "merchant_category"))
NUMERIC = tuple(i for i in range(len(FEATURES)) if i not in CATEGORICAL)

RULES = (
    BusinessRule(
        "burst_exceeds_day",
        lambda t: t.txn_count_1h <= t.txn_count_24h,
        "transactions in the last hour cannot exceed those in the last day",
        field="txn_count_1h",
    ),
)
"""Consistency rules a valid request must satisfy (layer 3 of validation)."""


@dataclass(frozen=True)
class Context:
    """Where and when transactions happen: the mix the generator draws from. The models learn the
    usual one; the others are the traffic a deployed model meets later (drift drills)."""

    merchants: tuple[float, ...] = (0.3, 0.15, 0.2, 0.08, 0.05, 0.1, 0.02, 0.1)
    """Shares of :data:`MERCHANTS`."""
    currencies: tuple[float, ...] = (0.55, 0.2, 0.12, 0.08, 0.05)
    """Shares of :data:`CURRENCIES`."""
    amount_scale: float = 1.0
    """Every ticket times this."""
    hour_mean: float = 14.0
    abroad: float = 0.08
    """Share of transactions whose card country differs from the merchant's."""


CONTEXTS = {
    "usual": Context(),
    "holidays": Context(merchants=(0.24, 0.12, 0.22, 0.06, 0.12, 0.12, 0.04, 0.08), amount_scale=1.3, hour_mean=16.0),
    "abroad": Context(currencies=(0.3, 0.4, 0.1, 0.1, 0.1), abroad=0.25),
}
"""``usual``: what the models were trained on. ``holidays``, another season: more travel and
jewellery, tickets 30 % larger, later hours. ``abroad``, another country mix: dollars before euros,
three times as many cards from another country (so longer distances)."""


def generate(n: int, seed: int = 7, context: Context = CONTEXTS["usual"]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` transactions as request records, and their fraud labels (0/1), drawn in ``context``
    (the usual one: the training data's)."""
    rng = np.random.default_rng(seed)
    merchant = rng.choice(MERCHANTS, size=n, p=list(context.merchants))
    currency = rng.choice(CURRENCIES, size=n, p=list(context.currencies))
    ticket = np.array([_TICKET[m] for m in merchant]) * context.amount_scale
    amount = np.round(ticket * rng.lognormal(0.0, 0.8, size=n), 2).clip(0.01, 50_000)
    hour = (rng.normal(context.hour_mean, 4.5, size=n).round().astype(int)) % 24
    country_mismatch = rng.random(n) < context.abroad
    card_age = rng.gamma(2.0, 400, size=n).astype(int).clip(0, 20_000)
    device_change = rng.random(n) < 0.06
    txn_24h = rng.poisson(3, size=n)
    txn_1h = np.minimum(rng.binomial(txn_24h, 0.15), txn_24h)
    distance = np.where(country_mismatch, rng.gamma(2, 900, size=n), rng.gamma(1.2, 12, size=n)).round(1)

    night = (hour <= 4) | (hour >= 23)
    logit = (
        -4.6
        + np.array([_MERCHANT_RISK[m] for m in merchant])
        + 1.1 * np.log(amount / ticket).clip(-2, 4)
        + 0.9 * night
        + 1.2 * device_change
        + 1.0 * country_mismatch
        + 1.3 * (device_change & country_mismatch)
        + 1.4 * (card_age < 30)
        + 0.45 * np.minimum(txn_1h, 6)
        + 0.25 * np.log1p(distance / 100)
        + rng.normal(0, 0.6, size=n)  # what no feature explains
    )
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    records = [
        {
            "amount": float(amount[i]),
            "currency": str(currency[i]),
            "merchant_category": str(merchant[i]),
            "hour": int(hour[i]),
            "country_mismatch": bool(country_mismatch[i]),
            "card_age_days": int(card_age[i]),
            "device_change": bool(device_change[i]),
            "txn_count_1h": int(txn_1h[i]),
            "txn_count_24h": int(txn_24h[i]),
            "distance_km": float(distance[i]),
        }
        for i in range(n)
    ]
    return records, label


RISK_SIGNALS: tuple[tuple[str, float, Callable[[Transaction], bool]], ...] = (
    ("new_device_abroad", 0.35, lambda t: t.device_change and t.country_mismatch),
    ("large_on_new_device_or_card", 0.3, lambda t: t.amount >= 1_000 and (t.device_change or t.card_age_days < 30)),
    ("burst", 0.2, lambda t: t.txn_count_1h >= 5),
    (
        "night_risky_merchant",
        0.15,
        lambda t: t.hour <= 4 and t.merchant_category in ("jewelry", "electronics", "gaming"),
    ),
)
"""The signals a fraud analyst checks first: name, added risk, predicate."""


def rule_reasons(t: Transaction) -> list[str]:
    """The risk signals that fire for ``t`` (what the rule stage's score is made of)."""
    return [name for name, _, fires in RISK_SIGNALS if fires(t)]


def rule_score(t: Transaction) -> float:
    """The last stage of the chain: a fraud score from domain sense, not fitted to the labels.

    Starts low and adds the risk of each signal that fires (:data:`RISK_SIGNALS`); capped at 0.95."""
    return min(0.02 + sum(risk for _, risk, fires in RISK_SIGNALS if fires(t)), 0.95)
