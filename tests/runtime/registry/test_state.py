"""The lifecycle state in SQLite: shared by workers, kept across restarts, every change recorded."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runtime.registry.state import LifecycleStore, RolloutActive


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "lifecycle.sqlite"


def test_aliases_survive_a_restart_and_every_move_is_recorded(path: Path) -> None:
    clock = Clock()
    store = LifecycleStore(path, clock)
    assert store.journal_mode == "wal"
    store.move_alias("fraud-gbt", "production", "v1", "operator:ana", "first deployment")
    clock.now += 60
    store.move_alias("fraud-gbt", "production", "v2", "approver:bo", "promoted")
    store.close()
    again = LifecycleStore(path, clock)
    assert again.aliases("fraud-gbt") == {"production": "v2"}
    assert again.aliases("other") == {}
    [second, first] = again.history("fraud-gbt")
    assert (second.principal, second.action, second.detail) == (
        "approver:bo",
        "alias",
        {"alias": "production", "from": "v1", "to": "v2", "reason": "promoted"},
    )
    assert second.at - first.at == 60
    again.move_alias("fraud-gbt", "candidate", None, "operator:ana", "nothing to remove")
    assert again.aliases("fraud-gbt") == {"production": "v2"}


def test_one_rollout_at_a_time_per_model(path: Path) -> None:
    store = LifecycleStore(path, Clock())
    rollout = store.start_rollout("m", "v2", "v1", "operator:ana", {"stages": [0.01, 1.0]}, state="shadow")
    assert (rollout.state, rollout.stage, rollout.previous, rollout.active) == ("shadow", 0, "v1", True)
    assert rollout.policy == {"stages": [0.01, 1.0]}
    with pytest.raises(RolloutActive, match="m already has a rollout in progress"):
        store.start_rollout("m", "v3", "v1", "operator:ana", {}, state="shadow")
    store.start_rollout("other", "v1", None, "operator:ana", {}, state="shadow")  # another model: fine
    ended = store.change(rollout.id, "approver:bo", "abort", "changed our mind", end=True)
    assert not ended.active
    assert store.active_rollout("m") is None
    assert store.start_rollout("m", "v3", "v1", "operator:ana", {}, state="shadow").id != rollout.id
    with pytest.raises(LookupError, match="no rollout"):
        store.change(rollout.id, "x", "resume", "too late")


def test_a_new_stage_starts_its_clock_and_forgets_that_the_last_was_inconclusive(path: Path) -> None:
    clock = Clock()
    store = LifecycleStore(path, clock)
    rollout = store.start_rollout("m", "v2", "v1", "operator:ana", {}, state="shadow")
    held = store.change(rollout.id, "gate", "hold", "not enough evidence", inconclusive=True)
    assert held.inconclusive
    clock.now += 600
    moved = store.change(rollout.id, "gate", "advance", "shadow passed", state="canary", stage=1)
    assert (moved.state, moved.stage, moved.stage_since, moved.inconclusive) == ("canary", 1, clock.now, False)
    actions = [t.action for t in store.history("m")]
    assert actions == ["advance", "hold", "start"]


def test_evidence_from_every_worker_adds_up(path: Path) -> None:
    workers = [LifecycleStore(path, Clock()) for _ in range(3)]
    rollout = workers[0].start_rollout("m", "v2", "v1", "operator:ana", {}, state="canary")

    def report(index: int) -> None:
        for _ in range(20):
            workers[index].add_evidence(rollout.id, 1, f"w{index}", {"trials": 5, "failures": 1})

    threads = [threading.Thread(target=report, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert workers[1].evidence(rollout.id, 1) == {"trials": 300, "failures": 60}
    assert workers[2].evidence(rollout.id, 2) == {}
    for store in workers:
        store.close()


def test_a_watch_keeps_its_evidence_in_time_slots_and_a_rollback_moves_production_in_one_change(path: Path) -> None:
    store = LifecycleStore(path, Clock())
    store.move_alias("m", "production", "v2", "approver:bo", "approved")
    record = store.start_rollout("m", "v3", "v2", "operator:ana", {}, "watching")
    store.add_watch_evidence(record.id, 100, "w1", {"production_trials": 10, "production_failures": 1})
    store.add_watch_evidence(record.id, 100, "w1", {"production_trials": 5})
    store.add_watch_evidence(record.id, 101, "w2", {"production_trials": 7})
    store.add_watch_evidence(record.id, 102, "w1", {"production_trials": 3, "production_failures": 2})
    assert store.watch_evidence(record.id, 100) == {"production_trials": 25, "production_failures": 3}
    assert store.watch_evidence(record.id, 101) == {"production_trials": 10, "production_failures": 2}
    assert store.watch_evidence(record.id + 1, 0) == {}
    with pytest.raises(LookupError):  # the alias does not move when the change is refused
        store.change(record.id + 1, "ballast", "rollback", "gone", end=True, production="v1")
    assert store.aliases("m") == {"production": "v2"}
    store.change(record.id, "ballast", "rollback", "failing", state="rolled_back", end=True, production="v1")
    assert store.aliases("m") == {"production": "v1"}
    assert [t.action for t in store.history("m")[:2]] == ["rollback", "alias"]
