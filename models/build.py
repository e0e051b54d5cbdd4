"""Train, export and store every model Ballast serves: ``python -m models.build`` (``make models``).

For each model: train on seeded data, export to ONNX with skl2onnx (probabilities as a plain
tensor, no ZipMap), check the ONNX outputs against scikit-learn's on held-out data, and save it in
BentoML's model store with metadata: the training data's hash, held-out metrics, the input schema,
per-feature reference statistics and the ONNX/scikit-learn maximum absolute difference.

Running it twice is harmless: a model whose recipe (training data, estimator and parameters,
library versions) is already in the store is neither trained nor stored again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import skl2onnx
import sklearn
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from runtime import RecordSchema, Validator, columns_of
from runtime.engine.validation import record_values

from . import candidates, fraud
from .store import reference_files, store_onnx

OPSET = 17
FRAUD_ROWS = 60_000


@dataclass
class Built:
    name: str
    onnx: bytes
    metadata: dict[str, Any]
    reference: dict[str, str | bytes]
    """``reference.json`` and ``reference_sample.npy`` of the training data (models/store.py)."""
    unchanged: str | None = None
    """The tag of an identical build already in the store (then nothing was trained)."""


EDITION = 2
"""What a build keeps beside its model (metadata, files): raised when that changes, so that a store's
older builds are made again (2: held-out accuracy and the score calibration, for performance drift)."""


def recipe(common: dict[str, Any], model: Any) -> str:
    """What determines a build: its training data, the estimator and its parameters, the libraries,
    what the build keeps (:data:`EDITION`)."""
    text = json.dumps(
        [common["training_data_sha256"], repr(model), sklearn.__version__, skl2onnx.__version__, OPSET, EDITION]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stored(name: str, key: str) -> Built | None:
    """The store's build of ``name`` with recipe ``key``, if there is one."""
    import bentoml

    try:
        candidates = bentoml.models.list(name)
    except bentoml.exceptions.NotFound:
        return None
    for model in candidates:
        if model.info.metadata.get("recipe") == key:
            return Built(name, b"", dict(model.info.metadata), {}, unchanged=str(model.tag))
    return None


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def export(model: Any, features: int) -> bytes:
    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, features]))],
        options={id(model): {"zipmap": False}},
        target_opset=OPSET,
    )
    return bytes(onx.SerializeToString())


def onnx_gap(onnx_bytes: bytes, model: Any, x: np.ndarray) -> float:
    """Largest absolute difference between ONNX and scikit-learn probabilities on ``x``."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], {"input": x})[0]
    return float(np.abs(probabilities - model.predict_proba(x)).max())


@dataclass
class Split:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    features: list[str]


def train(
    name: str, role: str, model: Any, common: dict[str, Any], data: Split, metrics: Callable[[Any], dict[str, float]]
) -> Built:
    """Fit, export and check one model, unless the store already holds the same recipe."""
    key = recipe(common, model)
    previous = stored(name, key)
    if previous is not None:
        return previous
    model.fit(data.x_train, data.y_train)
    onnx_bytes = export(model, data.x_train.shape[1])
    metadata = {
        **common,
        "recipe": key,
        "role": role,
        "algorithm": type(model).__name__,
        "metrics": metrics(model),
        "onnx_max_abs_diff": onnx_gap(onnx_bytes, model, data.x_test),
    }
    if len(np.unique(data.y_test)) == 2:
        metadata["calibration"] = calibration(data.y_test, model.predict_proba(data.x_test)[:, 1])
    return Built(name, onnx_bytes, metadata, reference_files(data.x_train, data.features))


# --- fraud ---------------------------------------------------------------------------------------


def fraud_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    records, labels = fraud.generate(FRAUD_ROWS)
    schema = RecordSchema(fraud.Transaction, input_name="input", max_rows=FRAUD_ROWS)
    x = Validator(schema, fraud.RULES).validate(records).inputs["input"]
    return tuple(train_test_split(x, labels, test_size=0.2, random_state=0, stratify=labels))


def calibration(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    """A binary classifier's held-out scores to the positive rate observed for them (isotonic): what
    its probabilities promise, for the accuracy estimate without labels (runtime/drift/performance.py)."""
    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return {
        "scores": [round(float(x), 6) for x in fit.X_thresholds_],
        "rates": [round(float(x), 6) for x in fit.y_thresholds_],
    }


def fraud_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "average_precision": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p)),
        "brier": float(brier_score_loss(y, p)),
    }


def fraud_gbt(seed: int = 0) -> GradientBoostingClassifier:
    # HistGradientBoosting would train faster, but skl2onnx 1.20 cannot convert it under scikit-learn 1.9.
    return GradientBoostingClassifier(
        n_estimators=150, learning_rate=0.1, max_depth=3, subsample=0.8, random_state=seed
    )


def fraud_common(x_train: np.ndarray, x_test: np.ndarray, y_train: np.ndarray) -> dict[str, Any]:
    return {
        "task": "fraud",
        "input": "input",
        "features": list(fraud.FEATURES),
        "training_data_sha256": digest(x_train, y_train),
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "fraud_rate": float(y_train.mean()),
    }


def build_fraud() -> list[Built]:
    x_train, x_test, y_train, y_test = fraud_data()
    columns = columns_of(fraud.Transaction)
    names = list(fraud.FEATURES)
    gbt = fraud_gbt()
    encoder = ColumnTransformer(
        [
            (
                "categories",
                OneHotEncoder(
                    categories=[np.arange(len(columns[i].categories), dtype=np.float32) for i in fraud.CATEGORICAL],
                    handle_unknown="ignore",
                ),
                list(fraud.CATEGORICAL),
            ),
            ("numbers", StandardScaler(), list(fraud.NUMERIC)),
        ]
    )
    logreg = Pipeline([("encode", encoder), ("model", LogisticRegression(max_iter=2000, C=0.5))])
    common = fraud_common(x_train, x_test, y_train)
    split = Split(x_train, x_test, y_train, y_test, names)
    built = [
        train(name, role, model, common, split, lambda m: fraud_metrics(y_test, m.predict_proba(x_test)[:, 1]))
        for name, model, role in (("fraud-gbt", gbt, "primary"), ("fraud-logreg", logreg, "fallback"))
    ]
    if built[0].unchanged is None:
        records = [fraud.Transaction(**record_values(columns, row)) for row in x_test]
        rule_scores = np.array([fraud.rule_score(t) for t in records])
        built[0].metadata["rules_stage_metrics"] = fraud_metrics(y_test, rule_scores)
    return built


# --- fraud-gbt candidates, for rollout drills ----------------------------------------------------------

CANDIDATES = ("good", "wrong", "failing", "slow")
FAILING_QUANTILE = 0.95
"""The failing candidate fails on transactions whose amount is above this quantile of the training
data's (about 5 % of them)."""
SLOW_WIDTH = 1408
"""Of the slow candidate's two dense layers per row: its inference takes 306 us at batch 1 against
the good candidate's 16 us, 2.3 ms at 32 rows against 73 us, on the 2-core machine: enough for the
latency gate to see through everything else a request costs (docs/operations/rollouts.md)."""


def build_fraud_candidates() -> list[Built]:
    """New versions of fraud-gbt: ``good`` (the same recipe, another seed), ``wrong`` (trained on
    shuffled labels: no error ever, only other answers), ``failing`` (the good one, failing on large
    amounts) and ``slow`` (the good one, slower). Each is stored with ``candidate`` in its metadata."""
    x_train, x_test, y_train, y_test = fraud_data()
    names = list(fraud.FEATURES)
    shuffled = np.random.default_rng(0).permutation(y_train)

    def metrics(m: Any) -> dict[str, float]:
        return fraud_metrics(y_test, m.predict_proba(x_test)[:, 1])

    good = train(
        "fraud-gbt",
        "candidate",
        fraud_gbt(seed=1),
        fraud_common(x_train, x_test, y_train),
        Split(x_train, x_test, y_train, y_test, names),
        metrics,
    )
    wrong = train(
        "fraud-gbt",
        "candidate",
        fraud_gbt(),
        fraud_common(x_train, x_test, shuffled),
        Split(x_train, x_test, shuffled, y_test, names),
        metrics,
    )
    good.metadata["candidate"], wrong.metadata["candidate"] = "good", "wrong"
    built = [good, wrong]
    if good.unchanged is not None:
        import bentoml

        good_onnx = bentoml.models.get(good.unchanged).path_of("model.onnx")
        with open(good_onnx, "rb") as f:
            base = f.read()
    else:
        base = good.onnx
    amount = names.index("amount")
    threshold = float(np.quantile(x_train[:, amount], FAILING_QUANTILE))
    for kind, onnx_bytes, detail in (
        ("failing", candidates.failing_on_large(base, amount, threshold), {"fails_above": {"amount": threshold}}),
        ("slow", candidates.slowed(base, SLOW_WIDTH), {"slow_width": SLOW_WIDTH}),
    ):
        key = hashlib.sha256(f"{good.metadata['recipe']}:{kind}:{json.dumps(detail)}".encode()).hexdigest()[:16]
        previous = stored("fraud-gbt", key)
        if previous is not None:
            built.append(previous)
            continue
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        probabilities = session.run(["probabilities"], {"input": x_test})[0][:, 1]
        finite = np.isfinite(probabilities)
        inherited = {k: v for k, v in good.metadata.items() if k not in ("onnx_sha256", "onnx_max_abs_diff")}
        metadata = {
            **inherited,
            "recipe": key,
            "candidate": kind,
            **detail,
            "metrics": fraud_metrics(y_test[finite], probabilities[finite]),
            "failing_share": float(1 - finite.mean()),
        }
        built.append(Built("fraud-gbt", onnx_bytes, metadata, reference_files(x_train, names)))
    return built


# --- digits --------------------------------------------------------------------------------------


def build_digits() -> list[Built]:
    digits = load_digits()
    x = digits.data.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    common = {
        "task": "digits",
        "input": "input",
        "input_shape": ["N", 64],
        "pixel_range": [0, 16],
        "training_data_sha256": digest(x_train, y_train),
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "dataset": "sklearn.datasets.load_digits (UCI handwritten digits)",
    }
    split = Split(x_train, x_test, y_train, y_test, names)

    def metrics(model: Any) -> dict[str, float]:
        return {
            "accuracy": float(accuracy_score(y_test, model.predict(x_test))),
            "log_loss": float(log_loss(y_test, model.predict_proba(x_test))),
        }

    return [
        train(
            name,
            role,
            make_pipeline(StandardScaler(), MLPClassifier(hidden, max_iter=600, random_state=0)),
            {**common, "hidden_layers": list(hidden)},
            split,
            metrics,
        )
        for name, hidden, role in (("digits-mlp", (128,), "primary"), ("digits-mlp-small", (16,), "fallback"))
    ]


# --- the store -----------------------------------------------------------------------------------


def save(built: Built) -> str:
    """Store ``built`` (unless it is an unchanged build already there); return its tag."""
    if built.unchanged is not None:
        return f"{built.unchanged} (unchanged)"
    metadata = {**built.metadata, "sklearn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx_opset": OPSET}
    return store_onnx(
        built.name,
        built.onnx,
        labels={"task": built.metadata["task"], "role": built.metadata["role"]},
        metadata=metadata,
        files=built.reference,
    )


BUILDERS: dict[str, Callable[[], list[Built]]] = {"fraud": build_fraud, "digits": build_digits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="*", metavar="TASK", help=f"any of {list(BUILDERS)} (default: all)")
    parser.add_argument(
        "--candidates",
        action="store_true",
        help=f"only store new versions of fraud-gbt for rollout drills ({', '.join(CANDIDATES)}); they become "
        "fraud-gbt's newest versions, so use a store of their own (make rollout-drill does)",
    )
    args = parser.parse_args()
    unknown = set(args.tasks) - set(BUILDERS)
    if unknown:
        parser.error(f"unknown task(s) {sorted(unknown)}; choose from {list(BUILDERS)}")
    if args.candidates:
        for built in build_fraud_candidates():
            meta = built.metadata
            print(f"{save(built)}: candidate {meta['candidate']}, held-out {json.dumps(meta['metrics'])}")
        return
    for task in args.tasks or list(BUILDERS):
        for built in BUILDERS[task]():
            meta = built.metadata
            print(
                f"{save(built)}: {meta['role']}, held-out {json.dumps(meta['metrics'])}, "
                f"onnx max |diff| {meta['onnx_max_abs_diff']:.2e}"
            )
            if "rules_stage_metrics" in meta:
                print(f"  rules stage on the same held-out data: {json.dumps(meta['rules_stage_metrics'])}")


if __name__ == "__main__":
    main()
