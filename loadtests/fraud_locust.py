"""Fraud service load: mostly single transactions, some batches, 3 % invalid (expected 422)."""

from __future__ import annotations

import os
import random
from typing import Any, ClassVar, TextIO

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


class DriftDrillClient(FastHttpUser):
    """Valid single transactions at a steady rate, drawn in the context that
    ``BALLAST_DRIFT_DRILL_CONTEXT`` names (a key of ``models.fraud.CONTEXTS``; default ``usual``),
    for the drift drill (loadtests/drift_drill.py). Any status but 200 is a failure."""

    wait_time = constant_throughput(10)
    drawn_in = os.environ.get("BALLAST_DRIFT_DRILL_CONTEXT", "usual")
    transactions = fraud_transactions(seed=4321, context=drawn_in)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def score(self) -> None:
        body = self.rng.choice(self.transactions)
        with self.client.post("/score", json=body, name=f"/score [{self.drawn_in}]", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")


class AuditDrillClient(FastHttpUser):
    """Single transactions, batches of 16 and a few invalid transactions at a steady rate, for the
    audit drill (loadtests/audit_drill.py): every answer is written down, one line each (status, path,
    route, request id; tab-separated), to the file ``BALLAST_AUDIT_DRILL_ANSWERS`` names, for the drill
    to match with the audit trail's rows. A valid request must get a 200 and an invalid one a 422."""

    wait_time = constant_throughput(10)
    answers: ClassVar[TextIO | None] = None
    """The file the users share (each line written at once: greenlets do not interleave a write)."""

    def on_start(self) -> None:
        self.rng = random.Random()
        if AuditDrillClient.answers is None:
            path = os.environ.get("BALLAST_AUDIT_DRILL_ANSWERS")
            if not path:
                raise RuntimeError("AuditDrillClient writes its answers to BALLAST_AUDIT_DRILL_ANSWERS: set it")
            AuditDrillClient.answers = open(path, "a", buffering=1)  # noqa: SIM115 -- open while locust runs

    @task(20)
    def score(self) -> None:
        self._answer("/score", self.rng.choice(TRANSACTIONS), 200)

    @task(2)
    def score_batch(self) -> None:
        self._answer("/score_batch", {"transactions": self.rng.sample(TRANSACTIONS, 16)}, 200)

    @task(1)
    def invalid(self) -> None:
        self._answer("/score", fraud_invalid(self.rng, self.rng.choice(TRANSACTIONS)), 422, " [invalid]")

    def _answer(self, path: str, body: dict[str, Any], expected: int, kind: str = "") -> None:
        assert self.answers is not None
        with self.client.post(path, json=body, name=f"{path}{kind}", catch_response=True) as r:
            route = request_id = "-"
            if r.status_code == 200:
                answer = r.json()
                route, request_id = answer["route"], answer["request_id"]
            self.answers.write(f"{r.status_code}\t{path}{kind}\t{route}\t{request_id}\n")
            if r.status_code != expected:
                r.failure(f"expected {expected}, got {r.status_code}: {r.text[:200]}")
