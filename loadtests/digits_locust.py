"""Digits service load: mostly single images, some batches of 8, 3 % invalid (expected 422)."""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from loadtests.payloads import digit_images, digits_invalid

IMAGES = digit_images()


class DigitsClient(FastHttpUser):
    wait_time = between(0.0, 0.02)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task(30)
    def classify(self) -> None:
        self.client.post("/classify", json={"images": [self.rng.choice(IMAGES)]}, name="/classify")

    @task(2)
    def classify_batch(self) -> None:
        self.client.post("/classify", json={"images": self.rng.sample(IMAGES, 8)}, name="/classify [8]")

    @task(1)
    def invalid(self) -> None:
        body = digits_invalid(self.rng, self.rng.choice(IMAGES))
        with self.client.post("/classify", json=body, name="/classify [invalid]", catch_response=True) as response:
            if response.status_code == 422:
                response.success()
            else:
                response.failure(f"expected 422 for an invalid request, got {response.status_code}")


class DigitsFaultClient(DigitsClient):
    """Single images only, for the fault scenario (see FraudFaultClient)."""

    tasks = [*[DigitsClient.classify] * 30, DigitsClient.invalid]  # noqa: RUF012 -- locust reads weights as repeats (30 : 1)
