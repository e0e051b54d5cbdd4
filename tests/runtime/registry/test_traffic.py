"""The rollout's side of the traffic: sticky routing, the shadow's bounded copies, the evidence."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np
import pytest

from runtime.registry.gates import latency_bucket
from runtime.registry.traffic import Comparison, Copy, Evidence, ShadowMirror, agrees, distance, place


def test_a_routing_key_has_one_place_and_keys_spread_evenly() -> None:
    assert place("caller-17") == place("caller-17")
    points = np.array([place(f"request-{i}") for i in range(20_000)])
    assert points.min() >= 0
    assert points.max() < 1
    for share in (0.01, 0.05, 0.2):
        assert abs((points < share).mean() - share) < 0.005  # the share the stage asks for
    assert ((points < 0.01) <= (points < 0.05)).all()  # a growing stage keeps its callers


def test_answers_agree_on_the_same_class_and_close_probabilities() -> None:
    ours = {"label": np.array([1, 0]), "probabilities": np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)}
    close = {"label": np.array([1, 0]), "probabilities": np.array([[0.25, 0.75], [0.88, 0.12]], np.float32)}
    assert agrees(ours, close, tolerance=0.1)
    assert not agrees(ours, close, tolerance=0.01)
    other_class = {**close, "label": np.array([0, 0])}
    assert not agrees(ours, other_class, tolerance=0.1)
    flipped = {**close, "probabilities": np.array([[0.55, 0.45], [0.9, 0.1]], np.float32)}
    assert not agrees({"probabilities": ours["probabilities"]}, {"probabilities": flipped["probabilities"]}, 0.5)
    assert not agrees(ours, {"label": ours["label"]}, tolerance=1.0)  # an output missing


def test_evidence_counts_each_side_and_starts_again_once_taken() -> None:
    evidence = Evidence()
    evidence.answered("production", failed=False, seconds=0.01)
    evidence.answered("production", failed=True, seconds=0.01)
    evidence.answered("candidate", failed=False, seconds=0.02)
    evidence.shadowed(Comparison(agreed=True, failed=False, distance=0.02, inference_s=0.004))
    evidence.shadowed(Comparison(agreed=False, failed=True))
    taken = evidence.take()
    assert taken["production_trials"] == 2
    assert taken["production_failures"] == 1
    assert taken["candidate_trials"] == 1
    assert taken[f"production_latency_{latency_bucket(0.01)}"] == 2
    assert (taken["shadow_compared"], taken["shadow_agreed"], taken["shadow_failures"]) == (2, 1, 1)
    assert (taken["shadow_answered"], taken["shadow_distance_sum"], taken["shadow_inference_sum"]) == (
        1,
        0.02,
        0.004,
    )  # a failed shadow has no distance nor latency to compare
    assert evidence.take() == {}


def copy_of(value: float, rows: int = 1) -> Copy:
    x = np.full((rows, 2), value, np.float32)
    return Copy({"x": x}, {"y": x * 2}, degraded=False, rows=rows)


def judge(copy: Copy, theirs: Mapping[str, np.ndarray] | None, seconds: float) -> Comparison:
    if theirs is None:
        return Comparison(agreed=False, failed=True)
    return Comparison(agrees(copy.outputs, theirs, 0.01), False, distance(copy.outputs, theirs), seconds)


async def test_the_shadow_runs_waiting_copies_together_and_counts_what_it_drops() -> None:
    evidence = Evidence()
    mirror = ShadowMirror(max_in_flight=4, evidence=evidence)
    gate, calls = asyncio.Event(), []

    async def doubling(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        await gate.wait()
        return {"y": inputs["x"] * 2}

    assert mirror.mirror(copy_of(1.0), doubling, judge)  # starts running alone
    await asyncio.sleep(0)
    for value in (2.0, 3.0, 4.0):  # wait meanwhile: 4 held in all
        assert mirror.mirror(copy_of(value, rows=2), doubling, judge)
    assert not mirror.mirror(copy_of(5.0), doubling, judge)  # full: dropped, counted
    gate.set()
    await mirror.wait()
    assert calls == [1, 6]  # the three that waited ran as one batch of their six rows
    assert mirror.in_flight == 0
    taken = evidence.take()
    assert (taken["shadow_compared"], taken["shadow_agreed"], taken["shadow_failures"]) == (4, 4, 0)
    assert taken["shadow_dropped"] == 1
    assert taken["shadow_distance_sum"] == 0.0
    with pytest.raises(ValueError, match="max_in_flight must be an integer >= 1, got 0"):
        ShadowMirror(0, evidence)
    await mirror.close()


async def test_a_batch_that_raises_is_run_again_copy_by_copy() -> None:
    evidence = Evidence()
    mirror = ShadowMirror(max_in_flight=8, evidence=evidence)
    gate = asyncio.Event()

    async def picky(inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        await gate.wait()
        if (inputs["x"] == 3.0).any():
            raise RuntimeError("the candidate cannot take a 3")
        return {"y": inputs["x"] * 2}

    for value in (1.0, 2.0, 3.0, 4.0):
        mirror.mirror(copy_of(value), picky, judge)
    gate.set()
    await mirror.wait()
    taken = evidence.take()
    assert (taken["shadow_compared"], taken["shadow_agreed"], taken["shadow_failures"]) == (4, 3, 1)
    await mirror.close()


def test_distance_is_zero_for_the_same_answer_and_grows_with_the_difference() -> None:
    ours = {"label": np.array([0, 1]), "probabilities": np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)}
    assert distance(ours, ours) == 0.0
    shifted = {**ours, "probabilities": ours["probabilities"] + np.float32(0.05)}
    assert distance(ours, shifted) == pytest.approx(0.05, abs=1e-6)
    relabelled = {**ours, "label": np.array([1, 1])}
    assert distance(ours, relabelled) == 0.5  # one label in two differs
    assert distance(ours, {"label": ours["label"]}) == 1.0  # an output missing
