"""Fraud service load: mostly single transactions, some batches, 3 % invalid (expected 422)."""

from __future__ import annotations

import random

from locust import FastHttpUser, between, constant_throughput, task

from loadtests.payloads import fraud_invalid, fraud_transactions

TRANSACTIONS = fraud_transactions()


class FraudClient(FastHttpUser):
    wait_time = between(0.0, 0.02)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task(30)
    def score(self) -> None:
        self.client.post("/score", json=self.rng.choice(TRANSACTIONS), name="/score")

    @task(2)
    def score_batch(self) -> None:
        batch = self.rng.sample(TRANSACTIONS, 16)
        self.client.post("/score_batch", json={"transactions": batch}, name="/score_batch")

    @task(1)
    def invalid(self) -> None:
        body = fraud_invalid(self.rng, self.rng.choice(TRANSACTIONS))
        with self.client.post("/score", json=body, name="/score [invalid]", catch_response=True) as response:
            if response.status_code == 422:
                response.success()
            else:
                response.failure(f"expected 422 for an invalid transaction, got {response.status_code}")


class FraudFaultClient(FraudClient):
    """Single transactions only, for the fault scenario: with BALLAST_FAULT_ERROR_RATE=p the
    expected fallback share is then p (a batch of 16 rows fails if any row does)."""

    tasks = [*[FraudClient.score] * 30, FraudClient.invalid]  # noqa: RUF012 -- locust reads weights as repeats (30 : 1)


class RolloutDrillClient(FastHttpUser):
    """Valid single transactions at a steady rate, for the rollout drill (loadtests/rollout_drill.py):
    every answer must be a 200, whichever version gives it, so any other status is a failure."""

    wait_time = constant_throughput(10)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def score(self) -> None:
        with self.client.post("/score", json=self.rng.choice(TRANSACTIONS), name="/score", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
