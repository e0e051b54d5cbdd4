"""Train the wine example's two models on scikit-learn's wine data and export them to ONNX::

    python examples/wine/train.py OUT_DIR

writes ``OUT_DIR/wine-gbt.onnx`` (gradient boosting), ``OUT_DIR/wine-logreg.onnx`` (scaled logistic
regression) and ``OUT_DIR/train.csv`` (the 75 % training split, a column per feature named as the
service's fields, and the ``cultivar`` label), and prints each model's held-out accuracy. Then store
them with ``python -m models.store`` (README.md shows the commands).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_wine
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = [name.replace("/", "_") for name in load_wine().feature_names]  # od280/od315_... is not a Python name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    wine = load_wine()
    data_train, data_test, y_train, y_test = train_test_split(
        wine.data, wine.target, test_size=0.25, random_state=0, stratify=wine.target
    )
    x_train, x_test = data_train.astype(np.float32), data_test.astype(np.float32)  # what ONNX models take
    models = {
        "wine-gbt": GradientBoostingClassifier(n_estimators=100, max_depth=2, random_state=0),
        "wine-logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    }
    for name, model in models.items():
        model.fit(x_train, y_train)
        onnx = to_onnx(
            model,
            initial_types=[("wine", FloatTensorType([None, x_train.shape[1]]))],
            options={id(model): {"zipmap": False}},
            target_opset=17,
        )
        (out / f"{name}.onnx").write_bytes(onnx.SerializeToString())
        print(f"{name}: held-out accuracy {model.score(x_test, y_test):.3f}")
    with (out / "train.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*FEATURES, "cultivar"])
        writer.writerows([*map(float, row), int(label)] for row, label in zip(data_train, y_train, strict=True))


if __name__ == "__main__":
    main()
